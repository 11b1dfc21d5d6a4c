#include "relay/internal/process.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

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

ProcessHandle::~ProcessHandle() { close_fd(); }

void ProcessHandle::close_fd() {
  std::lock_guard lock(mu);
  if (pidfd >= 0) ::close(pidfd);
  pidfd = -1;
}

void ProcessHandle::signal(int sig) {
  std::lock_guard lock(mu);
  if (pidfd >= 0 && !exitcode) pidfd_send_signal(pidfd, sig);
}

bool ProcessHandle::try_reap() {
  std::unique_lock lock(mu);
  if (exitcode) return true;
  if (pidfd < 0) return false;
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
