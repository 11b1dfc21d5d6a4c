#include "relay/internal/process.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "relay/errors.h"

namespace relay::internal {

// glibc 2.36 knows waitid(P_PIDFD) but <sys/wait.h> does not name it yet.
constexpr int kPidfd = 3;  // P_PIDFD, Linux 5.4

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string signal_name(int sig) {
  if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

std::string describe_exit(int exitcode) {
  if (exitcode < 0) return "killed by " + signal_name(-exitcode);
  return "exited with status " + std::to_string(exitcode);
}

ProcessHandle::~ProcessHandle() {
  if (pidfd >= 0) ::close(pidfd);
  for (int fd : retired) ::close(fd);
}

void ProcessHandle::adopt(pid_t child) {
  // Nothing else reaps this process's children, so the pid cannot have been
  // reused between fork() and here.
  const int fd = pidfd_open(child);
  if (fd < 0) {
    const int err = errno;
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    throw Error(std::string("pidfd_open failed: ") + ::strerror(err));
  }
  std::lock_guard lock(mu);
  pid = child;
  pidfd = fd;
  local = true;
}

void ProcessHandle::respawned(pid_t child, int child_pidfd) {
  {
    std::lock_guard lock(mu);
    if (pidfd >= 0) retired.push_back(pidfd);
    pid = child;
    pidfd = child_pidfd;
    spawned = true;
    local = true;  // of this host: signalled through its pidfd
    exitcode.reset();
  }
  ended.notify_all();
}

bool ProcessHandle::spawned_exit(pid_t child, int code) {
  {
    std::lock_guard lock(mu);
    if (!spawned || child != pid || exitcode) return false;
    exitcode = code;
  }
  ended.notify_all();
  return true;
}

void ProcessHandle::close() {
  std::lock_guard lock(mu);
  closed = true;
}

void ProcessHandle::signal(int sig) {
  std::lock_guard lock(mu);
  if (local && pidfd >= 0 && !exitcode) pidfd_send_signal(pidfd, sig);
}

void ProcessHandle::reap() {
  std::unique_lock lock(mu);
  if (exitcode || !local || pidfd < 0 || spawned) return;
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(kPidfd), static_cast<id_t>(pidfd), &info, WEXITED) != 0) {
    if (errno != EINTR) return;
  }
  exitcode = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
  lock.unlock();
  ended.notify_all();
}

void kill_and_reap(const std::vector<std::shared_ptr<ProcessHandle>>& handles) noexcept {
  for (const auto& h : handles) h->signal(SIGKILL);
  for (const auto& h : handles) h->reap();
}

bool ProcessHandle::try_reap() {
  std::unique_lock lock(mu);
  if (exitcode) return true;
  if (pidfd < 0 || spawned) return false;
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(kPidfd), static_cast<id_t>(pidfd), &info,
               WEXITED | WNOHANG) != 0 ||
      info.si_pid == 0) {
    return false;
  }
  exitcode = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
  lock.unlock();
  ended.notify_all();
  return true;
}

}  // namespace relay::internal
