// broker/supervisor.h: the decisions of a run's supervision (Relay::restart()).
//
// The broker tells the supervisor of every failure of an actor of a
// supervised group, with the message the actor was inside recv() with, if
// any (core/runtime/inflight.h). The supervisor keeps every failure (a run
// that stops lists them all), counts each message's attempts, and answers:
// start the actor again (and, once a message's attempts are used up, make it
// a dead letter), or stop the run and why. It holds no sockets: the broker
// acts on its verdicts.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "relay/internal/frames.h"
#include "relay/internal/plan.h"

namespace relay::broker {

// What a dead actor was inside recv() with.
struct InRecv {
  std::uint32_t edge = 0;
  std::uint32_t sender = 0;
  std::uint32_t sender_incarnation = 0;
  std::uint64_t seq = 0;     // on the pair (edge, sender, this actor)
  std::uint32_t size = 0;    // of the message, in msgpack bytes
  std::string head;          // its first bytes (all of it when short)
};

class Supervisor {
 public:
  using Clock = std::chrono::steady_clock;

  struct Failure {
    std::uint32_t id = 0;
    std::uint32_t incarnation = 0;
    int pid = 0;
    std::string host;
    std::string reason;
    Clock::time_point at;
  };

  struct Verdict {
    bool restart = false;
    std::string stop;  // without a restart: why the run stops
    // A message whose attempts are used up, to put to the dead letters.
    std::optional<internal::DeadLetter> dead;
  };

  explicit Supervisor(const internal::Plan& plan) : plan_(plan) {}

  bool supervises(std::uint32_t id) const {
    return plan_.supervised_group(plan_.actors.at(id).group) != nullptr;
  }
  // Records a failure of a supervised actor and decides what follows.
  Verdict failed(Failure failure, const std::optional<InRecv>& in_recv);
  // Every failure recorded, oldest first.
  const std::vector<Failure>& failures() const noexcept { return failures_; }
  // How often actor `id` was restarted.
  std::uint32_t restarts(std::uint32_t id) const;
  // Messages that became dead letters, in all.
  std::uint64_t dead_letters() const noexcept { return dead_; }

  // "the message [3, "x"] (16 bytes)", or its size when only its head is known.
  static std::string describe_message(const InRecv& m);

 private:
  const internal::Plan& plan_;
  std::vector<Failure> failures_;
  std::map<std::uint32_t, std::uint32_t> restarts_;
  // (receiver, edge, sender, sender incarnation, seq) -> failed recv() calls.
  std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t, std::uint32_t, std::uint64_t>,
           std::uint32_t>
      attempts_;
  std::uint64_t dead_ = 0;
};

}  // namespace relay::broker
