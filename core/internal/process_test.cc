// ProcessHandle and kill_and_reap (issue "Hardening first", point 1): a kill
// reaches only this process's own, unreaped actors, through their pidfds. The
// code before used ::kill(pid) on every handle with a pid: an actor already
// reaped (whose pid another process may have taken) and a remote actor (whose
// pid is its worker's) were SIGKILLed by number.
#include "relay/internal/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

using relay::internal::ProcessHandle;

// A child that sleeps until killed; the test reaps it.
pid_t Sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (;;) ::pause();
  }
  return pid;
}

bool Alive(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == 0;
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

TEST(ProcessTest, KillsAndReapsALiveLocalActor) {
  auto h = std::make_shared<ProcessHandle>();
  h->adopt(Sleeper());
  EXPECT_TRUE(h->local);
  relay::internal::kill_and_reap({h});
  ASSERT_TRUE(h->exitcode.has_value());
  EXPECT_EQ(*h->exitcode, -SIGKILL);
}

TEST(ProcessTest, NeverSignalsTheReusedPidOfAReapedActor) {
  auto h = std::make_shared<ProcessHandle>();
  const pid_t first = ::fork();
  if (first == 0) ::_exit(0);
  h->adopt(first);
  for (int i = 0; i < 1000 && !h->try_reap(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(h->exitcode.has_value());
  // Another process now holds the number (simulated: the handle is told so).
  const pid_t other = Sleeper();
  h->pid = other;
  relay::internal::kill_and_reap({h});
  EXPECT_TRUE(Alive(other)) << "an unrelated process was killed";
  EXPECT_EQ(*h->exitcode, 0);
  KillAndReap(other);
}

TEST(ProcessTest, NeverSignalsARemoteActorsPid) {
  // A remote actor's handle carries the pid its worker reported; on this
  // host that number may be any process.
  auto remote = std::make_shared<ProcessHandle>();
  const pid_t other = Sleeper();
  remote->pid = other;
  relay::internal::kill_and_reap({remote});
  remote->signal(SIGKILL);
  EXPECT_TRUE(Alive(other)) << "an unrelated process was killed";
  EXPECT_FALSE(remote->exitcode.has_value());
  KillAndReap(other);
}

TEST(ProcessTest, CloseKeepsTheDescriptorUntilTheHandleGoes) {
  auto h = std::make_shared<ProcessHandle>();
  h->adopt(Sleeper());
  const int fd = h->pidfd;
  relay::internal::kill_and_reap({h});
  h->close();
  EXPECT_TRUE(h->closed);
  // Still open: a thread that polls or signals it cannot hit a reused number.
  EXPECT_EQ(h->pidfd, fd);
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);
}

}  // namespace
