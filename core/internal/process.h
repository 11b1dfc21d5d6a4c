// relay/internal/process.h: child processes: pidfds, exit status, signal names.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <memory>
#include <string>
#include <vector>

namespace relay::internal {

// The main process's handle on one actor process. The broker thread records
// the exit; the user's thread may wait for it.
//
// Signals go through the pidfd only, never to a raw pid: once a process is
// reaped its pid may belong to another, and the pid of an actor on another
// host (reported by its worker) is not a process of this host at all.
struct ProcessHandle {
  std::mutex mu;
  std::condition_variable ended;
  pid_t pid = 0;   // on a worker: its pid there, once reported (0 before)
  int pidfd = -1;  // this process's child only; closed with the handle
  // Whether this process forked it (set before any thread runs, then fixed).
  bool local = false;
  // Forked by the spawner (a restart), not by this process: signalled through
  // its pidfd as any local one, but the spawner reaps it and reports its
  // exit, so try_reap() and reap() leave it alone.
  bool spawned = false;
  std::vector<int> retired;  // earlier incarnations' pidfds, closed with the handle
  bool closed = false;          // Actor::close(): sentinel() is -1 from then on
  std::optional<int> exitcode;  // negative: killed by that signal
  std::string authkey;          // the run's key

  ProcessHandle() = default;
  ProcessHandle(const ProcessHandle&) = delete;
  ProcessHandle& operator=(const ProcessHandle&) = delete;
  ~ProcessHandle();
  // Takes over `pid`, a child just forked by this process: opens its pidfd.
  // Throws relay::Error if that fails (the child is then killed and reaped).
  void adopt(pid_t child);
  // Sends `sig` unless the process has been reaped or is not local.
  void signal(int sig);
  // Reaps the process if it has ended. Returns whether it has.
  bool try_reap();
  // Blocks until the process has ended, and reaps it (local ones only).
  void reap();
  // Marks the handle closed for sentinel(); the descriptor itself stays open
  // until the handle is destroyed, so that no thread ever polls or signals a
  // number that has been reused.
  void close();
  // A restarted actor's new process (from the spawner): takes over `child`
  // and its pidfd; the exit code is unknown again.
  void respawned(pid_t child, int child_pidfd);
  // Records the exit the spawner reported for `child`; false if it is not
  // this handle's current process.
  bool spawned_exit(pid_t child, int code);
};

// SIGKILLs every local process of `handles` that has not been reaped, then
// reaps them all (blocking).
void kill_and_reap(const std::vector<std::shared_ptr<ProcessHandle>>& handles) noexcept;

// pidfd_open(2) and pidfd_send_signal(2), as glibc 2.36 has no wrappers.
int pidfd_open(pid_t pid);
int pidfd_send_signal(int pidfd, int sig);

// Returns "SIGSEGV" for SIGSEGV, "signal 99" for an unknown one.
std::string signal_name(int sig);

// Describes an exit code as Python's exitcode: "exited with status 3",
// "killed by SIGKILL".
std::string describe_exit(int exitcode);

}  // namespace relay::internal
