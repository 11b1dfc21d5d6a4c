// Spawner (issue 11, supervision): a process forked before any thread forks
// actor processes on request, passes their pidfds, reaps them and reports each
// exit exactly; nothing it forked outlives it, and it does not outlive its
// caller.
#include "relay/runtime/spawner.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "relay/errors.h"
#include "relay/internal/process.h"

namespace {

using relay::internal::Spawner;
using namespace std::chrono_literals;

constexpr auto kTimeout = 5000ms;

// What a child does, by its id's thousands.
constexpr std::uint32_t kExitIncarnation = 0;  // _exit(incarnation)
constexpr std::uint32_t kAbort = 1000;
constexpr std::uint32_t kSleep = 2000;    // until killed
constexpr std::uint32_t kReturn = 3000;   // returns from child()
constexpr std::uint32_t kThreads = 4000;  // _exit(its number of threads)

int thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return 0;
}

void child(std::uint32_t id, std::uint32_t incarnation) {
  switch (id / 1000 * 1000) {
    case kExitIncarnation:
      ::_exit(static_cast<int>(incarnation));
    case kAbort:
      ::prctl(PR_SET_DUMPABLE, 0);  // no core file
      std::abort();
    case kSleep:
      for (;;) ::pause();
    case kReturn:
      return;
    case kThreads:
      ::_exit(thread_count());
  }
  ::_exit(99);
}

std::unique_ptr<Spawner> start() { return Spawner::start(child); }

// Closes the pidfds a test received.
struct Pidfds {
  std::vector<int> fds;
  ~Pidfds() {
    for (int fd : fds) ::close(fd);
  }
  Spawner::Spawned add(Spawner::Spawned s) {
    fds.push_back(s.pidfd);
    return s;
  }
};

using ExitTuple = std::tuple<std::uint32_t, std::uint32_t, pid_t, int>;

std::vector<ExitTuple> sorted(const std::vector<Spawner::Exit>& exits) {
  std::vector<ExitTuple> out;
  for (const auto& e : exits) out.emplace_back(e.id, e.incarnation, e.pid, e.exitcode);
  std::sort(out.begin(), out.end());
  return out;
}

// Waits on fd() until `n` exits were reported, or kTimeout.
std::vector<Spawner::Exit> collect(Spawner& s, std::size_t n) {
  std::vector<Spawner::Exit> all;
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (all.size() < n && std::chrono::steady_clock::now() < deadline) {
    pollfd p{s.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    for (const auto& e : s.take_exits()) all.push_back(e);
  }
  return all;
}

// Whether `pidfd`'s process ends within kTimeout.
bool ends(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(kTimeout.count())) == 1;
}

bool in_proc(pid_t pid) { return ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0; }

// Every process whose parent is `parent`, from /proc.
std::set<pid_t> children_of(pid_t parent) {
  std::set<pid_t> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) {
      out.insert(pid);
    }
  }
  ::closedir(dir);
  return out;
}

// Waits up to kTimeout for `pid` to end and be reaped, by this process (an
// orphan it reaps as subreaper: `status` is set) or by its own parent (`status`
// stays -1). Returns false if it is still there.
bool gone_within(pid_t pid, int& status) {
  status = -1;
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    if (errno == ECHILD && !in_proc(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(SpawnerTest, ReportsEachChildsExitStatus) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(1, 3, kTimeout));
  const auto b = fds.add(s->spawn(2, 0, kTimeout));
  EXPECT_GT(a.pid, 0);
  EXPECT_NE(a.pid, b.pid);
  EXPECT_THAT(sorted(collect(*s, 2)),
              testing::ElementsAre(ExitTuple{1, 3, a.pid, 3}, ExitTuple{2, 0, b.pid, 0}));
}

TEST(SpawnerTest, ReportsAnAbortAsSigabrt) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(kAbort, 1, kTimeout));
  EXPECT_THAT(sorted(collect(*s, 1)), testing::ElementsAre(ExitTuple{kAbort, 1, a.pid, -SIGABRT}));
}

TEST(SpawnerTest, AChildThatReturnsExitsWithReturnedStatus) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(kReturn, 0, kTimeout));
  EXPECT_THAT(sorted(collect(*s, 1)),
              testing::ElementsAre(ExitTuple{kReturn, 0, a.pid, Spawner::kReturnedStatus}));
}

// The caller is not the child's parent: it signals through the pidfd it got.
TEST(SpawnerTest, KillsAChildThroughItsPidfd) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(kSleep, 2, kTimeout));
  EXPECT_TRUE(children_of(s->pid()).count(a.pid));
  ASSERT_EQ(relay::internal::pidfd_send_signal(a.pidfd, SIGKILL), 0);
  EXPECT_TRUE(ends(a.pidfd));
  EXPECT_THAT(sorted(collect(*s, 1)), testing::ElementsAre(ExitTuple{kSleep, 2, a.pid, -SIGKILL}));
  // Reaped: a signal through the pidfd now reaches nothing.
  EXPECT_EQ(relay::internal::pidfd_send_signal(a.pidfd, SIGKILL), -1);
  EXPECT_EQ(errno, ESRCH);
}

// An exit that arrives while spawn() waits for its reply is kept for
// take_exits().
TEST(SpawnerTest, KeepsExitsThatArriveDuringSpawn) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(7, 0, kTimeout));
  ASSERT_TRUE(ends(a.pidfd));
  pollfd p{s->fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, static_cast<int>(kTimeout.count())), 1);
  const auto b = fds.add(s->spawn(kSleep, 0, kTimeout));
  EXPECT_THAT(sorted(s->take_exits()), testing::ElementsAre(ExitTuple{7, 0, a.pid, 0}));
  ASSERT_EQ(relay::internal::pidfd_send_signal(b.pidfd, SIGKILL), 0);
  EXPECT_THAT(sorted(collect(*s, 1)), testing::ElementsAre(ExitTuple{kSleep, 0, b.pid, -SIGKILL}));
}

TEST(SpawnerTest, ReapsManyChildren) {
  auto s = start();
  Pidfds fds;
  std::vector<ExitTuple> expected;
  for (std::uint32_t i = 0; i < 50; ++i) {
    const auto c = fds.add(s->spawn(i, i, kTimeout));
    expected.emplace_back(i, i, c.pid, static_cast<int>(i));
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(sorted(collect(*s, 50)), expected);
  EXPECT_THAT(children_of(s->pid()), testing::IsEmpty());
}

// The point of the spawner: the caller has threads now, the children are
// forked from a process that has none (none but a sanitizer's own: a child
// forked before any thread existed is the measure).
TEST(SpawnerTest, SpawnsAfterTheCallerStartedThreads) {
  auto s = start();
  Pidfds fds;
  const auto before = fds.add(s->spawn(kThreads, 0, kTimeout));
  const auto baseline = collect(*s, 1);
  ASSERT_EQ(baseline.size(), 1u);
  const int threads = baseline[0].exitcode;
  ASSERT_GE(threads, 1);
  EXPECT_EQ(baseline[0].pid, before.pid);
  std::atomic<bool> done{false};
  std::thread busy([&] {
    while (!done.load()) std::this_thread::sleep_for(1ms);
  });
  Spawner::Spawned a{};
  int caller_threads = 0;
  std::thread spawning([&] {
    caller_threads = thread_count();
    a = fds.add(s->spawn(kThreads, 1, kTimeout));
  });
  spawning.join();
  done = true;
  busy.join();
  EXPECT_GE(caller_threads, threads + 2);
  EXPECT_THAT(sorted(collect(*s, 1)), testing::ElementsAre(ExitTuple{kThreads, 1, a.pid, threads}));
}

TEST(SpawnerTest, StopLeavesNoChildBehind) {
  auto s = start();
  Pidfds fds;
  std::set<pid_t> pids;
  for (std::uint32_t i = 0; i < 3; ++i) pids.insert(fds.add(s->spawn(kSleep + i, 0, kTimeout)).pid);
  const pid_t spawner = s->pid();
  EXPECT_EQ(children_of(spawner), pids);
  s->stop();
  EXPECT_EQ(s->pid(), 0);
  EXPECT_FALSE(in_proc(spawner)) << "the spawner was not reaped";
  for (int fd : fds.fds) EXPECT_TRUE(ends(fd));
  for (pid_t pid : pids) EXPECT_FALSE(in_proc(pid)) << "child " << pid << " is left";
  EXPECT_THROW(s->take_exits(), relay::Error);
  s->stop();  // twice: nothing
}

// A spawner killed from outside takes its children with it; the caller hears
// of its end.
TEST(SpawnerTest, ASpawnersDeathEndsItsChildrenAndIsReported) {
  auto s = start();
  Pidfds fds;
  const auto a = fds.add(s->spawn(kSleep, 0, kTimeout));
  ASSERT_EQ(::kill(s->pid(), SIGKILL), 0);
  EXPECT_TRUE(ends(a.pidfd));
  bool ended = false;
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (!ended && std::chrono::steady_clock::now() < deadline) {
    pollfd p{s->fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    try {
      EXPECT_THAT(s->take_exits(), testing::IsEmpty());
    } catch (const relay::Error& e) {
      EXPECT_THAT(e.what(), testing::HasSubstr("spawner process has ended"));
      ended = true;
    }
  }
  EXPECT_TRUE(ended);
  try {
    s->spawn(1, 1, kTimeout);
    ADD_FAILURE() << "spawn() after the spawner's end did not throw";
  } catch (const relay::Error& e) {
    EXPECT_THAT(e.what(),
                testing::HasSubstr("actor 1 incarnation 1: the spawner process has ended"));
  }
}

// A caller killed with SIGKILL: its spawner and the spawner's child end too.
TEST(SpawnerTest, DiesWithItsCaller) {
  // Orphans come to this process, which can then reap them and tell.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t caller = ::fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {
    ::close(pipefd[0]);
    auto s = start();
    const auto a = s->spawn(kSleep, 0, kTimeout);
    const pid_t pids[2] = {s->pid(), a.pid};
    if (::write(pipefd[1], pids, sizeof pids) != sizeof pids) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  pid_t pids[2] = {0, 0};
  pollfd p{pipefd[0], POLLIN, 0};
  const bool told = ::poll(&p, 1, static_cast<int>(kTimeout.count())) == 1 &&
                    ::read(pipefd[0], pids, sizeof pids) == sizeof pids;
  ::close(pipefd[0]);
  ::kill(caller, SIGKILL);
  int status = 0;
  ::waitpid(caller, &status, 0);
  ASSERT_TRUE(told) << "the helper did not start its spawner";
  // The caller's end closes before the spawner is reparented and gets its
  // PR_SET_PDEATHSIG: the spawner may SIGKILL and reap its child first (then
  // exit, or be killed before it could), or die at once and leave its child
  // to die of its own PR_SET_PDEATHSIG, an orphan that comes here.
  int spawner_status = -1;
  int child_status = -1;
  const bool spawner_gone = gone_within(pids[0], spawner_status);
  const bool child_gone = gone_within(pids[1], child_status);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  for (const auto& [pid, gone] : {std::pair{pids[0], spawner_gone}, {pids[1], child_gone}}) {
    if (!gone) {  // left behind: tear it down
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
  }
  ASSERT_TRUE(spawner_gone) << "the spawner outlived its caller";
  ASSERT_TRUE(child_gone) << "the spawner's child outlived it";
  ASSERT_NE(spawner_status, -1) << "the spawner was not reparented to this process";
  EXPECT_TRUE((WIFSIGNALED(spawner_status) && WTERMSIG(spawner_status) == SIGKILL) ||
              (WIFEXITED(spawner_status) && WEXITSTATUS(spawner_status) == 0))
      << spawner_status;
  if (child_status != -1) {
    // Killed, or it saw its parent gone before PR_SET_PDEATHSIG was set.
    EXPECT_TRUE((WIFSIGNALED(child_status) && WTERMSIG(child_status) == SIGKILL) ||
                (WIFEXITED(child_status) && WEXITSTATUS(child_status) == 1))
        << child_status;
  }
}

}  // namespace
