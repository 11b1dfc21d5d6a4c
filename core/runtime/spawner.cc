#include "relay/runtime/spawner.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <utility>

#include "relay/errors.h"
#include "relay/internal/process.h"
#include "relay/runtime/signals.h"

namespace relay::internal {

namespace {

// Caller -> spawner.
enum class RequestKind : std::uint32_t { spawn = 1, stop = 2 };
struct Request {
  RequestKind kind;
  std::uint32_t id;
  std::uint32_t incarnation;
  std::uint32_t pad;
  std::uint64_t seq;
};

// Spawner -> caller. A reply carries the child's pidfd (SCM_RIGHTS) when
// `value` is 0, else `value` is fork's or pidfd_open's errno. An exit report
// carries the exit code in `value` and seq 0. The kind tells them apart; one
// message per datagram (SOCK_SEQPACKET keeps the boundaries).
enum class MessageKind : std::uint32_t { reply = 1, exit = 2 };
struct Message {
  MessageKind kind;
  std::uint32_t id;
  std::uint32_t incarnation;
  std::int32_t pid;
  std::int32_t value;
  std::uint32_t pad;
  std::uint64_t seq;
};

constexpr int kStopWaitMs = 5000;

// Every handler back to SIG_DFL and nothing blocked: what a fresh process has.
// SIGKILL, SIGSTOP and glibc's internal signals refuse, harmlessly.
void default_signals() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Sends `m`, with `fd` attached unless it is -1. Returns false if the caller's
// end is gone.
bool send_message(int sock, const Message& m, int fd) {
  iovec iov{const_cast<Message*>(&m), sizeof m};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof m)) return true;
    if (errno != EINTR) return false;
  }
}

// The spawner process: single-threaded, never returns.
class SpawnerProcess {
 public:
  SpawnerProcess(int sock, std::function<void(std::uint32_t, std::uint32_t)>& child)
      : sock_(sock), child_(child) {}

  [[noreturn]] void run() {
    // Ctrl-C reaches the whole process group: the driver decides what stops,
    // as for its actors. A report to a caller that is gone fails as EPIPE.
    default_signals();
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    signals_after_fork_in_child();
    // SIGCHLD only through the signalfd; polled with the socket.
    sigset_t chld;
    ::sigemptyset(&chld);
    ::sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);
    sfd_ = ::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd_ < 0) ::_exit(1);  // the caller sees EOF: the spawner has ended
    for (;;) {
      pollfd fds[2] = {{sock_, POLLIN, 0}, {sfd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        finish();
      }
      if (fds[1].revents != 0) {
        signalfd_siginfo info;
        while (::read(sfd_, &info, sizeof info) > 0) {
        }
      }
      // Reap on every wake: a SIGCHLD may have merged with another.
      reap();
      if (fds[0].revents != 0) serve_one();
    }
  }

 private:
  void serve_one() {
    Request req{};
    const ssize_t n = ::recv(sock_, &req, sizeof req, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n != static_cast<ssize_t>(sizeof req) || req.kind != RequestKind::spawn) finish();
    spawn(req);
  }

  void spawn(const Request& req) {
    Message reply{MessageKind::reply, req.id, req.incarnation, 0, 0, 0, req.seq};
    std::fflush(nullptr);
    const pid_t spawner = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) run_child(spawner, req.id, req.incarnation);
    int pidfd = -1;
    if (pid < 0) {
      reply.value = errno;
    } else {
      // Only this process reaps its children: the pid is still this child's.
      pidfd = pidfd_open(pid);
      if (pidfd < 0) {
        reply.value = errno;
        ::kill(pid, SIGKILL);
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      } else {
        reply.pid = pid;
        children_.emplace(pid, std::make_pair(req.id, req.incarnation));
      }
    }
    // The reply goes out before this loop can reap the child: the caller
    // always reads a child's reply before its exit report.
    const bool sent = send_message(sock_, reply, pidfd);
    if (pidfd >= 0) ::close(pidfd);
    if (!sent) finish();
  }

  [[noreturn]] void run_child(pid_t spawner, std::uint32_t id, std::uint32_t incarnation) {
    ::close(sock_);
    ::close(sfd_);
    // Die with the spawner; it may have died before the line above.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != spawner) ::_exit(1);
    default_signals();
    child_(id, incarnation);
    ::_exit(Spawner::kReturnedStatus);
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      const auto it = children_.find(pid);
      if (it == children_.end()) continue;
      const int exitcode = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      const Message m{MessageKind::exit, it->second.first, it->second.second, pid, exitcode, 0, 0};
      children_.erase(it);
      if (!send_message(sock_, m, -1)) finish();
    }
  }

  // The caller has gone or asked to stop: no child outlives this process.
  [[noreturn]] void finish() {
    // Not yet reaped, so each pid is still its child's.
    for (const auto& [pid, who] : children_) ::kill(pid, SIGKILL);
    for (const auto& [pid, who] : children_) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    ::_exit(0);
  }

  int sock_;
  int sfd_ = -1;
  std::function<void(std::uint32_t, std::uint32_t)>& child_;
  std::map<pid_t, std::pair<std::uint32_t, std::uint32_t>> children_;  // pid -> id, incarnation
};

}  // namespace

struct Spawner::Reply {
  std::uint64_t seq = 0;
  bool got = false;
  int error = 0;
  Spawned spawned{0, -1};
};

std::unique_ptr<Spawner> Spawner::start(std::function<void(std::uint32_t, std::uint32_t)> child) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    throw Error(std::string("spawner: socketpair failed: ") + std::strerror(errno));
  }
  // A child inherits unflushed stdio buffers and would print them again.
  std::fflush(nullptr);
  std::cout.flush();
  std::cerr.flush();
  const pid_t caller = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    // Die with the caller; it may have died before the line above.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != caller) ::_exit(1);
    SpawnerProcess(fds[1], child).run();
  }
  const int err = errno;
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    throw Error(std::string("spawner: fork failed: ") + std::strerror(err));
  }
  const int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    const int open_err = errno;
    ::close(fds[0]);
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw Error(std::string("spawner: pidfd_open failed: ") + std::strerror(open_err));
  }
  std::unique_ptr<Spawner> s(new Spawner(pid, fds[0]));
  s->pidfd_ = pidfd;
  return s;
}

Spawner::Spawner(pid_t pid, int sock) : pid_(pid), sock_(sock), pidfd_(-1) {}

Spawner::~Spawner() { stop(); }

int Spawner::fd() const noexcept { return sock_; }

pid_t Spawner::pid() const noexcept { return pid_; }

bool Spawner::receive(Reply* reply) {
  if (ended_ || sock_ < 0) return false;
  Message m{};
  iovec iov{&m, sizeof m};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(sock_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  int fd = -1;
  if (n > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len == CMSG_LEN(sizeof(int))) {
        std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      }
    }
  }
  if (n <= 0) {  // EOF, or the spawner's end reset
    ended_ = true;
    return false;
  }
  if (n != static_cast<ssize_t>(sizeof m) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    std::fprintf(stderr, "relay: spawner: malformed message (%zd bytes)\n", n);
    std::abort();
  }
  if (m.kind == MessageKind::exit) {
    if (fd >= 0) ::close(fd);
    exits_.push_back(Exit{m.id, m.incarnation, m.pid, m.value});
  } else if (reply != nullptr && m.seq == reply->seq) {
    reply->got = true;
    reply->error = m.value;
    reply->spawned = Spawned{m.pid, fd};
  } else if (fd >= 0) {
    // The reply to a request whose spawn() timed out: nobody owns that child.
    pidfd_send_signal(fd, SIGKILL);
    ::close(fd);
  }
  return true;
}

Spawner::Spawned Spawner::spawn(std::uint32_t id, std::uint32_t incarnation,
                                std::chrono::milliseconds timeout) {
  const std::string who =
      "spawner: actor " + std::to_string(id) + " incarnation " + std::to_string(incarnation) + ": ";
  if (ended_ || sock_ < 0) throw Error(who + "the spawner process has ended");
  Reply reply;
  reply.seq = ++seq_;
  const Request req{RequestKind::spawn, id, incarnation, 0, reply.seq};
  for (;;) {
    if (::send(sock_, &req, sizeof req, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req)) break;
    if (errno == EINTR) continue;
    ended_ = true;
    throw Error(who + "the spawner process has ended");
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    while (!reply.got && receive(&reply)) {
    }
    if (reply.got) break;
    if (ended_) throw Error(who + "the spawner process has ended");
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw Error(who + "no answer from the spawner in " + std::to_string(timeout.count()) + " ms");
    }
    pollfd p{sock_, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  if (reply.error != 0) {
    if (reply.spawned.pidfd >= 0) ::close(reply.spawned.pidfd);
    throw Error(who + "fork failed: " + std::strerror(reply.error));
  }
  if (reply.spawned.pidfd < 0) {
    std::fprintf(stderr, "relay: spawner: a reply without its pidfd\n");
    std::abort();
  }
  return reply.spawned;
}

std::vector<Spawner::Exit> Spawner::take_exits() {
  while (receive(nullptr)) {
  }
  if (exits_.empty() && ended_) throw Error("spawner: the spawner process has ended");
  return std::exchange(exits_, {});
}

void Spawner::stop() noexcept {
  if (pid_ == 0) return;
  // A stop request, not only EOF: processes forked from the caller after
  // start() may hold copies of the caller's end.
  const Request req{RequestKind::stop, 0, 0, 0, 0};
  (void)::send(sock_, &req, sizeof req, MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(sock_);
  sock_ = -1;
  ended_ = true;
  pollfd p{pidfd_, POLLIN, 0};
  int ready = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStopWaitMs);
  do {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    ready = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
  } while (ready < 0 && errno == EINTR);
  // Stuck: its children die with it (PR_SET_PDEATHSIG).
  if (ready == 0) pidfd_send_signal(pidfd_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(pidfd_);
  pidfd_ = -1;
  pid_ = 0;
}

}  // namespace relay::internal
