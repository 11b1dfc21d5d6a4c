// relay-monitor sees a running relay's logs and counters, filters them by
// level and group, and exits when the run ends (issue "Across hosts", point 5).
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
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
  // There from the start, it heard the plan at the start barrier, and each
  // actor's end; only its group's actors with --group.
  EXPECT_THAT(sink, HasSubstr(" plan src[1] -> sink[1]\n"));
  EXPECT_THAT(sink, HasSubstr(" plan group [sink] size=1\n"));
  EXPECT_THAT(sink, HasSubstr(" plan edge 'src' -> 'sink' grouping=round_robin window=4096\n"));
  EXPECT_THAT(sink, HasSubstr(" actor [sink] (Listener-0) running host="));
  EXPECT_THAT(sink, HasSubstr(" actor [sink] (Listener-0) ended host="));
  EXPECT_THAT(sink, Not(HasSubstr("actor [src]")));
  EXPECT_THAT(warn, Not(HasSubstr(" actor ")));  // --no-stats: logs only
}

std::string HostName() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// A slow source: sends every 20 ms until cell 1 is set (at most 20 s).
class Trickle : public relay::Actor {
 public:
  explicit Trickle(SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int i = 0; shm_.at(1).load() == 0 && std::chrono::steady_clock::now() < until; ++i) {
      send(i);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  SharedBlock& shm_;
};

class Pass : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m.get<int>(0)); }
};

// Sets cell 2 once its first message is in: the run is well past its start.
class Drain : public relay::Actor {
 public:
  explicit Drain(SharedBlock& shm) : shm_(shm) {}
  void recv(const relay::Message&) override { shm_.at(2).store(1); }

 private:
  SharedBlock& shm_;
};

// Waits until `path` holds `needle`, at most `limit`.
bool WaitForText(const std::string& path, const std::string& needle,
                 std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (Slurp(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Slurp(path).find(needle) != std::string::npos;
}

// Starts a monitor once data flows (cell 2), waits until it has printed the
// sink's actor line, and then lets the source end (cell 1).
class LateWatch : public relay::Handler {
 public:
  LateWatch(relay::Relay& relay, SharedBlock& shm, std::string out,
            std::vector<relay::Actor*> actors)
      : relay_(relay), shm_(shm), out_(std::move(out)), actors_(std::move(actors)) {}
  void run() override {
    for (int i = 0; i < 1000 && shm_.at(2).load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    started = shm_.at(2).load() != 0;
    for (relay::Actor* a : actors_) pids.push_back(a->pid().value_or(0));
    monitor = SpawnMonitor({"--timeout", "20", relay_.monitor_endpoint()}, out_);
    heard = monitor > 0 &&
            WaitForText(out_, "actor [sink] (Drain-0) running", std::chrono::seconds(10));
    // A second one subscribes to topics the first already has: the XPUB
    // must pass its subscription on all the same.
    second = SpawnMonitor({"--timeout", "20", relay_.monitor_endpoint()}, out_ + ".2");
    heard_second = second > 0 && WaitForText(out_ + ".2", "actor [sink] (Drain-0) running",
                                             std::chrono::seconds(10));
    shm_.at(1).store(1);
  }
  bool started = false;
  bool heard = false;
  bool heard_second = false;
  pid_t monitor = -1;
  pid_t second = -1;
  std::vector<int> pids;

 private:
  relay::Relay& relay_;
  SharedBlock& shm_;
  std::string out_;
  std::vector<relay::Actor*> actors_;
};

// A monitor that connects after the start barrier still learns the graph
// and every actor with its host and pid: the broker sends the plan to each
// new subscriber. Then it sees each actor end.
TEST_F(MonitorTest, LateMonitorLearnsThePlan) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string out = std::string(tmp ? tmp : "/tmp") + "/late.txt";
  SharedBlock shm;
  Trickle src(shm);
  Pass mid0, mid1;
  Drain sink(shm);
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", src), relay::group("mid", mid0, mid1),
                relay::group("sink", sink));
  LateWatch watch(relay, shm, out, {&src, &mid0, &mid1, &sink});
  relay.start(&watch);
  ASSERT_TRUE(watch.started) << "no message reached the sink within 10 s";
  ASSERT_GT(watch.monitor, 0);
  ASSERT_GT(watch.second, 0);
  EXPECT_EQ(Reap(watch.monitor), 0);
  EXPECT_EQ(Reap(watch.second), 0);
  ASSERT_TRUE(watch.heard) << Slurp(out);
  EXPECT_TRUE(watch.heard_second) << Slurp(out + ".2");
  EXPECT_THAT(Slurp(out + ".2"), HasSubstr(" plan edge 'mid' -> 'sink' grouping=round_robin"));

  const std::string text = Slurp(out);
  EXPECT_THAT(text, HasSubstr(" plan src[1] -> mid[2] -> sink[1]\n"));
  EXPECT_THAT(text, HasSubstr(" plan group [src] size=1\n"));
  EXPECT_THAT(text, HasSubstr(" plan group [mid] size=2\n"));
  EXPECT_THAT(text, HasSubstr(" plan group [sink] size=1\n"));
  EXPECT_THAT(text, HasSubstr(" plan edge 'src' -> 'mid' grouping=round_robin window=4096\n"));
  EXPECT_THAT(text, HasSubstr(" plan edge 'mid' -> 'sink' grouping=round_robin window=4096\n"));
  const std::string host = HostName();
  const std::vector<std::string> names{"[src] (Trickle-0)", "[mid] (Pass-0)", "[mid] (Pass-1)",
                                       "[sink] (Drain-0)"};
  ASSERT_EQ(watch.pids.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    ASSERT_GT(watch.pids[i], 0);
    const std::string tail =
        " host=" + host + " pid=" + std::to_string(watch.pids[i]) + " restarts=0\n";
    EXPECT_THAT(text, HasSubstr(" actor " + names[i] + " running" + tail));
    EXPECT_THAT(text, HasSubstr(" actor " + names[i] + " ended" + tail));
  }
  // The plan came again for the second monitor, but is printed once.
  EXPECT_EQ(text.find(" plan src[1]"), text.rfind(" plan src[1]"));
  EXPECT_THAT(text, HasSubstr("end: the run ended well\n"));
}

// Throws on its third message.
class Breaks : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    if (m.get<int>(0) == 2) throw std::runtime_error("broke on 2");
  }
};

// Starts one relay-monitor that follows everything (exits after `timeout`
// seconds), waits with `ready` until it is following, then sets cell 0 of
// `shm` to let the run go on.
class WatchThenRelease : public relay::Handler {
 public:
  WatchThenRelease(relay::Relay& relay, SharedBlock& shm, std::string out, std::string timeout,
                   std::function<void(const std::string& out)> ready)
      : relay_(relay),
        shm_(shm),
        out_(std::move(out)),
        timeout_(std::move(timeout)),
        ready_(std::move(ready)) {}
  void run() override {
    monitor = SpawnMonitor({"--timeout", timeout_, relay_.monitor_endpoint()}, out_);
    ready_(out_);
    shm_.at(0).store(1);
  }
  pid_t monitor = -1;

 private:
  relay::Relay& relay_;
  SharedBlock& shm_;
  std::string out_;
  std::string timeout_;
  std::function<void(const std::string& out)> ready_;
};

// An actor that fails shows as failed, with its host and pid, and the run's
// end says it stopped.
TEST_F(MonitorTest, FailedActorShowsAsFailed) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string out = std::string(tmp ? tmp : "/tmp") + "/failed.txt";
  SharedBlock shm;
  Talker talker(shm);
  Breaks sink;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", talker), relay::group("sink", sink));
  WatchThenRelease watch(relay, shm, out, "20", [](const std::string& file) {
    WaitForText(file, "actor [sink] (Breaks-0) running", std::chrono::seconds(10));
  });
  EXPECT_THROW(relay.start(&watch), relay::ActorError);
  ASSERT_GT(watch.monitor, 0);
  EXPECT_EQ(Reap(watch.monitor), 1);
  const std::string text = Slurp(out);
  EXPECT_THAT(text, HasSubstr(" actor [sink] (Breaks-0) failed host=" + HostName() + " pid="));
  EXPECT_THAT(text, HasSubstr("end: the run stopped: "));
  EXPECT_LT(text.find(" actor [sink] (Breaks-0) failed"), text.find("end: the run stopped"));
}

// Sends 0..n-1 once cell 0 is set (the monitor is subscribed).
class Counter : public relay::Actor {
 public:
  Counter(SharedBlock& shm, int n) : shm_(shm), n_(n) {}
  void loop() override {
    for (int i = 0; i < 1000 && shm_.at(0).load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < n_; ++i) send(i);
  }

 private:
  SharedBlock& shm_;
  int n_;
};

// Forwards each number; the first time any actor of its kind sees a
// number in `victims`, it aborts (cell `cell` counts the crashes).
class Crashy : public relay::Actor {
 public:
  Crashy(SharedBlock& shm, int cell, std::vector<int> victims)
      : shm_(shm), cell_(cell), victims_(std::move(victims)) {}
  void recv(const relay::Message& m) override {
    const int v = m.get<int>(0);
    for (std::size_t k = 0; k < victims_.size(); ++k) {
      long long seen = static_cast<long long>(k);
      if (v == victims_[k] && shm_.at(cell_).compare_exchange_strong(seen, seen + 1)) {
        std::abort();
      }
    }
    send(v);
  }

 private:
  SharedBlock& shm_;
  int cell_;
  std::vector<int> victims_;
};

class Swallow : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// The last line of `text` that holds `needle`, from it on, or "".
std::string LastLine(const std::string& text, const std::string& needle) {
  const std::size_t at = text.rfind(needle);
  if (at == std::string::npos) return "";
  return text.substr(at, text.find('\n', at) - at);
}

// The number after `key=` in `line`, or -1.
long long Field(const std::string& line, const std::string& key) {
  const std::size_t at = line.find(" " + key + "=");
  if (at == std::string::npos) return -1;
  return std::atoll(line.c_str() + at + key.size() + 2);
}

// Every "stats" and "edge" line of `text` whose counts went back from the
// one before for the same actor or edge, as "line after line".
std::vector<std::string> CountsThatWentBack(const std::string& text) {
  std::map<std::string, std::pair<long long, long long>> last;
  std::vector<std::string> back;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const std::size_t stats = line.find(" stats ");
    const std::size_t edge = line.find(" edge ");
    const std::size_t begin = stats != std::string::npos ? stats : edge;
    const std::size_t end = line.find(" sent=");
    if (begin == std::string::npos || end == std::string::npos) continue;
    const std::string key = line.substr(begin, end - begin);
    const std::pair<long long, long long> now{Field(line, "sent"), Field(line, "received")};
    const auto it = last.find(key);
    if (it != last.end() && (now.first < it->second.first || now.second < it->second.second)) {
      back.push_back(key + ": " + std::to_string(it->second.first) + "/" +
                     std::to_string(it->second.second) + " then " + line);
    }
    last[key] = now;
  }
  return back;
}


// Supervision: the monitor's counts go over every incarnation of a
// restarted actor. Through two supervised groups whose actors crash (each
// group once, on different messages), every edge ends with sent and
// received equal to the number of messages and nothing waiting, the
// actors' counts add up to it, and no count ever goes back.
TEST_F(MonitorTest, CountsAddUpOverRestarts) {
  SetWatchdog(std::chrono::seconds(120));
  constexpr int kMessages = 4000;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp ? tmp : "/tmp";
  SharedBlock shm;
  Counter src(shm, kMessages);
  Crashy work0(shm, 1, {1000}), work1(shm, 1, {1000});
  Crashy more0(shm, 2, {2500}), more1(shm, 2, {2500});
  Swallow sink;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", src), relay::group("work", work0, work1),
                relay::group("more", more0, more1), relay::group("sink", sink));
  relay.restart("work").restart("more");
  WatchThenRelease follow(relay, shm, dir + "/restarts.txt", "30", [](const std::string&) {
    // Subscriptions take a moment to reach the publisher.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  });
  relay.start(&follow);
  ASSERT_GT(follow.monitor, 0);
  EXPECT_EQ(Reap(follow.monitor), 0);
  ASSERT_EQ(shm.at(1).load(), 1) << "a work actor should have crashed once";
  ASSERT_EQ(shm.at(2).load(), 1) << "a more actor should have crashed once";

  const std::string text = Slurp(dir + "/restarts.txt");
  const std::string n = std::to_string(kMessages);
  for (const char* edge : {"'src' -> 'work'", "'work' -> 'more'", "'more' -> 'sink'"}) {
    const std::string line = "edge " + std::string(edge) + " ";
    EXPECT_EQ(LastLine(text, line), line + "sent=" + n + " received=" + n + " waiting=0");
  }
  EXPECT_EQ(LastLine(text, "stats [src] (Counter-0) "),
            "stats [src] (Counter-0) sent=" + n + " received=0 waiting=0");
  EXPECT_EQ(LastLine(text, "stats [sink] (Swallow-0) "),
            "stats [sink] (Swallow-0) sent=0 received=" + n + " waiting=0");
  // Each supervised group's actors, in all and over all their processes,
  // took every message once and sent it on once; one of each was restarted.
  for (const char* group : {"work", "more"}) {
    long long sent = 0, received = 0, restarts = 0;
    for (int k = 0; k < 2; ++k) {
      const std::string actor = "[" + std::string(group) + "] (Crashy-" + std::to_string(k) + ")";
      const std::string stats = LastLine(text, "stats " + actor + " ");
      sent += Field(stats, "sent");
      received += Field(stats, "received");
      EXPECT_EQ(Field(stats, "waiting"), 0) << stats;
      const std::string ended = LastLine(text, "actor " + actor + " ");
      EXPECT_THAT(ended, HasSubstr(" ended host=")) << ended;
      restarts += Field(ended, "restarts");
    }
    EXPECT_EQ(sent, kMessages) << group;
    EXPECT_EQ(received, kMessages) << group;
    EXPECT_EQ(restarts, 1) << group;
  }
  EXPECT_THAT(CountsThatWentBack(text), ::testing::IsEmpty());
  EXPECT_THAT(text, HasSubstr("end: the run ended well\n"));
}

// Without a relay behind the endpoint, --timeout ends the wait with status 3.
TEST_F(MonitorTest, TimesOutWhenNothingIsThere) {
  const pid_t pid = SpawnMonitor({"--timeout", "0.3", "tcp://127.0.0.1:1"}, "/dev/null");
  ASSERT_GT(pid, 0);
  EXPECT_EQ(Reap(pid), 3);
}

}  // namespace
