// relay::Progress and relay::group_stats(): a real run's per-group counts, as
// the handler draws them to a stream that is not a terminal.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::Counter;
using relay::testing::Forward;
using relay::testing::Many;
using relay::testing::ProcessTest;
using relay::testing::Tally;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

class ProgressTest : public ProcessTest {};

// Passes each number on, slowly enough that the run lasts a few draws.
class SlowForward : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    send(m.get<long long>(0));
  }
};

// Passes numbers on and throws at `fail_at`.
class FailAt : public relay::Actor {
 public:
  explicit FailAt(long long fail_at) : fail_at_(fail_at) {}
  void recv(const relay::Message& m) override {
    if (m.get<long long>(0) == fail_at_) throw std::runtime_error("fails on purpose");
    send(m.get<long long>(0));
  }

 private:
  long long fail_at_;
};

// Passes numbers on; aborts on 700 and on 1400 the first time any process of
// the group sees each (shared cells 0 and 1), before sending it on.
class AbortOnce : public relay::Actor {
 public:
  explicit AbortOnce(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    if ((v == 700 && shm_.at(0).exchange(1) == 0) || (v == 1400 && shm_.at(1).exchange(1) == 0)) {
      std::abort();
    }
    send(v);
  }

 private:
  relay::testing::SharedBlock& shm_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Two sources of 1500 numbers, three forwarders, one sink: the last line
// holds every group's exact count, "/total" where one was set, and "done";
// last() and group_stats() hold the exact sent and received counts.
TEST_F(ProgressTest, FinalLineHoldsExactCounts) {
  relay::Queue results;
  std::vector<std::unique_ptr<Counter>> sources;
  sources.push_back(std::make_unique<Counter>(0, 1500));
  sources.push_back(std::make_unique<Counter>(1500, 1500));
  auto work = Many<SlowForward>(3);
  Tally sink(results);

  std::ostringstream out;
  relay::Progress progress(out);
  progress.total("work", 3000).total("sink", 3000).period(std::chrono::milliseconds(100));
  relay::Relay relay(/*maxsize=*/50, "progress");
  relay.connect(relay::group("src", sources), relay::group("work", work),
                relay::group("sink", sink));
  relay.start(progress);

  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_GE(lines.size(), 2u) << out.str();  // at least one draw during the run
  EXPECT_THAT(lines.back(), MatchesRegex(R"(\[ *[0-9.]+s\] src 3000 \([0-9.kM]+ msg/s\); )"
                                         R"(work 3000/3000 \([0-9.kM]+ msg/s\); )"
                                         R"(sink 3000/3000 \([0-9.kM]+ msg/s\) done)"))
      << out.str();
  EXPECT_THAT(out.str(), Not(HasSubstr("\x1b"))) << "escape codes on a non-terminal";
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_THAT(lines[i], Not(EndsWith("done"))) << "only the last line is final";
  }

  const std::vector<relay::GroupStats>& last = progress.last();
  ASSERT_EQ(last.size(), 3u);
  EXPECT_EQ(last[0].name, "src");
  EXPECT_FALSE(last[0].receiver);
  EXPECT_EQ(last[0].actors, 2u);
  EXPECT_EQ(last[0].sent, 3000u);
  EXPECT_EQ(last[0].received, 0u);
  EXPECT_EQ(last[1].name, "work");
  EXPECT_TRUE(last[1].receiver);
  EXPECT_EQ(last[1].actors, 3u);
  EXPECT_EQ(last[1].sent, 3000u);
  EXPECT_EQ(last[1].received, 3000u);
  EXPECT_EQ(last[2].name, "sink");
  EXPECT_EQ(last[2].sent, 0u);
  EXPECT_EQ(last[2].received, 3000u);
  for (const relay::GroupStats& g : last) {
    EXPECT_EQ(g.ended, g.actors) << g.name;
    EXPECT_EQ(g.failed, 0u) << g.name;
    EXPECT_EQ(g.waiting, 0u) << g.name;
  }
  // The same counts stay readable after start() has returned.
  const std::vector<relay::GroupStats> after = relay::group_stats();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[2].received, 3000u);
  EXPECT_EQ(relay::testing::Collect(results),
            std::make_pair(3000LL, relay::testing::SumRange(0, 3000)));
}

// A supervised group's restarts: counted in GroupStats::restarts, from the
// run's supervisor, and shown on its line; the run ends "done".
TEST_F(ProgressTest, RestartsAreCounted) {
  relay::testing::SharedBlock shm;
  relay::Queue results;
  Counter source(0, 2000);
  AbortOnce a(shm), b(shm);
  std::vector<relay::Actor*> work{&a, &b};
  Tally sink(results);

  std::ostringstream out;
  relay::Progress progress(out);
  progress.total("sink", 2000).period(std::chrono::milliseconds(100));
  relay::Relay relay(/*maxsize=*/50, "progress");
  relay.connect(relay::group("src", source), relay::group("work", work),
                relay::group("sink", sink));
  relay.restart("work", relay::Restart{.max_restarts = 5});
  relay.start(progress);

  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.back(), MatchesRegex(R"(\[ *[0-9.]+s\] src 2000 \([0-9.kM]+ msg/s\); )"
                                         R"(work [0-9]+ \([0-9.kM]+ msg/s, 2 restarts\); )"
                                         R"(sink [0-9]+/2000 \([0-9.kM]+ msg/s\) done)"))
      << out.str();
  const std::vector<relay::GroupStats>& last = progress.last();
  ASSERT_EQ(last.size(), 3u);
  EXPECT_EQ(last[0].restarts, 0u);
  EXPECT_EQ(last[1].restarts, 2u);
  EXPECT_EQ(last[2].restarts, 0u);
  EXPECT_GT(last[1].received, 0u);
  // Not checked: last[2].received. The sink's final report leaves out what
  // came from the restarted senders' earlier processes (ActorRuntime::say_bye
  // counts it apart), so it falls short; the sink's own count is exact:
  // Died before sending: nothing was sent twice.
  EXPECT_EQ(relay::testing::Collect(results),
            std::make_pair(2000LL, relay::testing::SumRange(0, 2000)));
}

// A failed actor: start() throws, and the last line says "stopped".
TEST_F(ProgressTest, FailedRunEndsStopped) {
  relay::Queue results;
  Counter source(0, 2000);
  FailAt work(700);
  Tally sink(results);

  std::ostringstream out;
  relay::Progress progress(out);
  relay::Relay relay(/*maxsize=*/50, "progress");
  relay.connect(relay::group("src", source), relay::group("work", work),
                relay::group("sink", sink));
  EXPECT_THAT(relay::testing::StartError<relay::ActorError>(relay, &progress),
              HasSubstr("fails on purpose"));
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.back(), EndsWith(" stopped")) << out.str();
  ASSERT_EQ(progress.last().size(), 3u);
  EXPECT_EQ(progress.last()[1].failed, 1u);
}

}  // namespace
