// relay/runtime/signals.h: SIGINT and SIGTERM in the main process during a run.
//
// While a SignalGuard lives, the first SIGINT or SIGTERM is written to a pipe
// that the broker watches: the run is stopped in order and Relay::start()
// throws relay::Interrupted. A second SIGINT kills every actor at once with
// SIGKILL and ends the process as SIGINT would. An uncaught relay::Interrupted
// ends the process by its signal (status 130 or 143 in a shell).
#pragma once

#include <vector>

namespace relay::internal {

class SignalGuard {
 public:
  SignalGuard();
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

  // Readable when a signal arrived.
  int fd() const noexcept;
  // Returns the signal that arrived, or 0.
  int take();
  // The actor processes that a second SIGINT kills.
  void set_pidfds(const std::vector<int>& pidfds);
};

// In a freshly forked actor: forget the parent's signal pipe.
void signals_after_fork_in_child();

}  // namespace relay::internal
