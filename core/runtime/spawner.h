// relay/runtime/spawner.h: a process that forks actor processes on request,
// at any time of a run (supervision's restarts). Private to relay.
//
// Forking from a process that has threads is unsafe (a ZeroMQ context, the
// broker thread, spdlog's pool, a lock held by another thread). Spawner::start()
// forks, before any thread exists, a small single-threaded process: the
// spawner. It forks a child on each spawn() for the rest of the run; the child
// runs `child(id, incarnation)` in the spawner's copy of the caller's memory as
// it was at start() (a restarted actor starts from its state at start()).
//
// The spawner uses no ZeroMQ: it talks to the caller over a SOCK_SEQPACKET
// socketpair in small fixed structs. It opens a pidfd for each child right
// after fork and passes it with the reply (SCM_RIGHTS): the caller is not the
// child's parent, so it signals the child through that pidfd only, and learns
// of its end from the spawner, which reaps it and reports its exit.
//
// Lifetimes: the spawner dies with the caller (PR_SET_PDEATHSIG, relative to
// the thread that called start(): keep that thread alive for the run), and
// each child dies with the spawner. When the caller's end closes (stop(), the
// destructor, or the caller's death) the spawner SIGKILLs the children it
// still has, reaps them and exits.
//
// Threads: one Spawner is used by one thread at a time (no locks inside).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace relay::internal {

class Spawner {
 public:
  // A child that ended: its exit code as Python's (negative: the signal that
  // killed it).
  struct Exit {
    std::uint32_t id;
    std::uint32_t incarnation;
    pid_t pid;
    int exitcode;
  };
  // A child just forked. `pidfd` is the caller's own descriptor (close-on-exec)
  // and the caller closes it; it stays valid after the child's end (a signal
  // sent through it then fails with ESRCH, never reaches another process).
  struct Spawned {
    pid_t pid;
    int pidfd;
  };

  // Forks the spawner now: call it before any thread exists. In each process
  // the spawner forks for spawn(id, incarnation), `child(id, incarnation)`
  // runs with default signal handlers, an empty signal mask, the spawner's
  // socket closed and PR_SET_PDEATHSIG(SIGKILL) set (its getppid() is the
  // spawner's pid, checked). It must not return (end with _exit()); if it
  // does, the child _exit()s with kReturnedStatus. Flushes stdio first.
  // Throws relay::Error if the socketpair or fork fails.
  static std::unique_ptr<Spawner> start(std::function<void(std::uint32_t, std::uint32_t)> child);

  // The status of a child whose child() returned.
  static constexpr int kReturnedStatus = 127;

  ~Spawner();  // stop()
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Blocks until the spawner has forked a child for (id, incarnation), for at
  // most `timeout`. Exit reports that arrive meanwhile are kept for
  // take_exits(). Throws relay::Error if the spawner could not fork (its
  // errno's text), has ended, or did not answer in time (the child it may
  // still fork for this request is then SIGKILLed when its reply comes; its
  // exit is reported as any other).
  Spawned spawn(std::uint32_t id, std::uint32_t incarnation, std::chrono::milliseconds timeout);

  // Readable when take_exits() has something to say: exit reports, or the
  // spawner's end.
  int fd() const noexcept;

  // Returns the exit reports received so far, in the order the spawner reaped
  // the children; never blocks. Throws relay::Error once the spawner has ended
  // (killed, or stop()ped) and every report before its end has been returned.
  std::vector<Exit> take_exits();

  // SIGKILLs the spawner's remaining children, and stops and reaps the
  // spawner (it waits up to 5 s for the spawner to reap them, then SIGKILLs
  // the spawner, whose children die with it). Safe twice.
  void stop() noexcept;

  // The spawner's pid (0 after stop()).
  pid_t pid() const noexcept;

 private:
  Spawner(pid_t pid, int sock);
  // Receives one message without blocking; false when there is none. Keeps
  // exit reports, returns a reply in `reply`, notes the end in ended_.
  struct Reply;
  bool receive(Reply* reply);

  pid_t pid_;
  int sock_;
  int pidfd_;  // the spawner's, for stop()'s timeout
  bool ended_ = false;
  std::uint64_t seq_ = 0;
  std::vector<Exit> exits_;
};

}  // namespace relay::internal
