// relay-monitor sees a running relay's logs and counters, filters them by
// level and group, and exits when the run ends (issue "Across hosts", point 5).
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "relay/relay.h"
#include "tests/testing.h"

extern char** environ;

namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using relay::testing::ProcessTest;
using relay::testing::SharedBlock;

// Starts relay-monitor with `args`, its stdout going to `out_path`.
pid_t SpawnMonitor(const std::vector<std::string>& args, const std::string& out_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  std::vector<char*> argv{const_cast<char*>("broker/relay-monitor")};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, "broker/relay-monitor", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Waits at most 10 s for `pid`; returns its exit status or -1 (then kills it).
int Reap(pid_t pid) {
  for (int i = 0; i < 1000; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A source that waits until the monitors are subscribed (cell 0), then logs.
class Talker : public relay::Actor {
 public:
  explicit Talker(SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    for (int i = 0; i < 1000 && shm_.at(0).load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < 50; ++i) {
      log("item {}", i);
      log(relay::Level::warn, "warn {}", i);
      send(i);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  SharedBlock& shm_;
};

class Listener : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { log("got {}", m.get<int>(0)); }
};

class Watch : public relay::Handler {
 public:
  Watch(relay::Relay& relay, SharedBlock& shm, std::string dir)
      : relay_(relay), shm_(shm), dir_(std::move(dir)) {}
  void run() override {
    const std::string endpoint = relay_.monitor_endpoint();
    warn_only = SpawnMonitor({"--level", "warning", "--no-stats", "--timeout", "20", endpoint},
                             dir_ + "/warn.txt");
    sink_only = SpawnMonitor({"--group", "sink", "--timeout", "20", endpoint}, dir_ + "/sink.txt");
    // Subscriptions take a moment to reach the publisher.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    shm_.at(0).store(1);
  }
  pid_t warn_only = -1;
  pid_t sink_only = -1;

 private:
  relay::Relay& relay_;
  SharedBlock& shm_;
  std::string dir_;
};

using MonitorTest = ProcessTest;

TEST_F(MonitorTest, SeesLogsAndCountersFilteredAndExitsAtTheEnd) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp ? tmp : "/tmp";
  SharedBlock shm;
  Talker talker(shm);
  Listener listener;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", talker), relay::group("sink", listener));
  Watch watch(relay, shm, dir);
  relay.start(&watch);
  ASSERT_GT(watch.warn_only, 0);
  ASSERT_GT(watch.sink_only, 0);
  EXPECT_EQ(Reap(watch.warn_only), 0);
  EXPECT_EQ(Reap(watch.sink_only), 0);

  const std::string warn = Slurp(dir + "/warn.txt");
  EXPECT_THAT(warn, HasSubstr("warning [src] (Talker-0) warn 49\n"));
  EXPECT_THAT(warn, Not(HasSubstr("item 49")));     // below the level
  EXPECT_THAT(warn, Not(HasSubstr(" stats ")));     // --no-stats
  EXPECT_THAT(warn, Not(HasSubstr(" edge ")));
  EXPECT_THAT(warn, HasSubstr("end: the run ended well\n"));

  const std::string sink = Slurp(dir + "/sink.txt");
  EXPECT_THAT(sink, HasSubstr("info [sink] (Listener-0) got 49\n"));
  EXPECT_THAT(sink, Not(HasSubstr("[src]")));       // another group
  EXPECT_THAT(sink, HasSubstr("stats [sink] (Listener-0) sent=0 received=50 waiting=0\n"));
  // The edge into the sink, as its totals settle at the end.
  EXPECT_THAT(sink, HasSubstr("edge 'src' -> 'sink' sent=50 received=50 waiting="));
  EXPECT_THAT(sink, HasSubstr("end: the run ended well\n"));
}

// Without a relay behind the endpoint, --timeout ends the wait with status 3.
TEST_F(MonitorTest, TimesOutWhenNothingIsThere) {
  const pid_t pid = SpawnMonitor({"--timeout", "0.3", "tcp://127.0.0.1:1"}, "/dev/null");
  ASSERT_GT(pid, 0);
  EXPECT_EQ(Reap(pid), 3);
}

}  // namespace
