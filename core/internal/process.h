// relay/internal/process.h: child processes: pidfds, exit status, signal names.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

namespace relay::internal {

// The main process's handle on one actor process. The broker thread records
// the exit; the user's thread may wait for it.
struct ProcessHandle {
  std::mutex mu;
  std::condition_variable ended;
  pid_t pid = 0;
  int pidfd = -1;
  std::optional<int> exitcode;  // negative: killed by that signal
  std::string authkey;          // the run's key

  ~ProcessHandle();
  // Sends `sig` unless the process has been reaped (pidfd: never a reused pid).
  void signal(int sig);
  // Reaps the process if it has ended. Returns whether it has.
  bool try_reap();
  void close_fd();
};

// pidfd_open(2) and pidfd_send_signal(2), as glibc 2.36 has no wrappers.
int pidfd_open(pid_t pid);
int pidfd_send_signal(int pidfd, int sig);

// Returns "SIGSEGV" for SIGSEGV, "signal 99" for an unknown one.
std::string signal_name(int sig);

// Describes an exit code as Python's exitcode: "exited with status 3",
// "killed by SIGKILL".
std::string describe_exit(int exitcode);

}  // namespace relay::internal
