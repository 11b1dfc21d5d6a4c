// relay::Inlet: the main process as a source (API.md "Inlet"), with real
// processes: exact counts through every grouping, backpressure, end of
// stream, and the errors of sending at the wrong time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::Collect;
using relay::testing::Forward;
using relay::testing::ProcessTest;
using relay::testing::PutEach;
using relay::testing::SumRange;
using relay::testing::Tally;
using ::testing::HasSubstr;

class InletTest : public ProcessTest {};

// Sends 0..n-1 through `inlet`, then closes it (or leaves that to run()'s
// return).
class Feed : public relay::Handler {
 public:
  Feed(relay::Inlet& inlet, long long n, bool close = true)
      : inlet_(inlet), n_(n), close_(close) {}
  void run() override {
    for (long long i = 0; i < n_; ++i) inlet_.send(i);
    if (close_) inlet_.close();
  }

 private:
  relay::Inlet& inlet_;
  long long n_;
  bool close_;
};

TEST_F(InletTest, FeedsAGroupWithExactCounts) {
  relay::Queue results;
  relay::Inlet jobs;
  std::vector<std::unique_ptr<Forward>> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(std::make_unique<Forward>());
  Tally sink(results);
  relay::Relay relay(8);
  relay.connect(relay::group("jobs", jobs), relay::group("work", workers),
                relay::group("sink", sink));
  constexpr long long kN = 20000;
  Feed feed(jobs, kN);
  relay.start(feed);
  EXPECT_EQ(Collect(results), std::make_pair(kN, SumRange(0, kN)));
  EXPECT_EQ(jobs.exitcode(), 0);
}

// run() returning closes the stream; the Inlet may be unnamed and alone.
TEST_F(InletTest, ReturningFromRunClosesTheStream) {
  relay::Queue results;
  relay::Inlet jobs;
  Tally sink(results);
  relay::Relay relay;
  relay.connect(jobs, sink);
  Feed feed(jobs, 1000, /*close=*/false);
  relay.start(feed);
  EXPECT_EQ(Collect(results), std::make_pair(1000LL, SumRange(0, 1000)));
}

// Without a Handler nobody sends: the stream is empty and the run ends.
TEST_F(InletTest, WithoutAHandlerTheStreamIsEmpty) {
  relay::Queue results;
  relay::Inlet jobs;
  Tally sink(results);
  relay::Relay relay;
  relay.connect(jobs, sink);
  relay.start();
  EXPECT_EQ(Collect(results), std::make_pair(0LL, 0LL));
}

// Each key reaches one counter; a named output and a broadcast edge work from
// the main process too.
class KeyedTally : public relay::Actor {
 public:
  explicit KeyedTally(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    ++count_;
    sum_ += m.get<long long>(0);
    keys_ |= 1u << (m.get<long long>(0) % 8);
  }
  void shutdown() override { q_.put(name(), count_, sum_, static_cast<long long>(keys_)); }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
  unsigned keys_ = 0;
};

TEST_F(InletTest, WorksWithEveryGrouping) {
  relay::Queue keyed, everyone, bad;
  relay::Inlet jobs;
  std::vector<std::unique_ptr<KeyedTally>> counters, mirrors;
  for (int i = 0; i < 3; ++i) counters.push_back(std::make_unique<KeyedTally>(keyed));
  for (int i = 0; i < 2; ++i) mirrors.push_back(std::make_unique<KeyedTally>(everyone));
  Tally errors(bad);
  relay::Relay relay(16);
  relay.connect(relay::group("jobs", jobs), relay::by_key(relay::group("count", counters)));
  relay.connect("jobs", relay::broadcast(relay::group("mirror", mirrors)));
  relay.connect(relay::output("jobs", "bad"), relay::group("errors", errors));
  class Mixed : public relay::Handler {
   public:
    explicit Mixed(relay::Inlet& jobs) : jobs_(jobs) {}
    void run() override {
      for (long long i = 0; i < 800; ++i) {
        jobs_.send(i % 8);  // eight keys
        if (i % 4 == 0) jobs_.send_to("bad", i);
      }
    }

   private:
    relay::Inlet& jobs_;
  } mixed(jobs);
  relay.start(mixed);
  long long count = 0;
  unsigned seen = 0;
  while (auto m = keyed.get_nowait()) {
    auto [name, c, s, keys] = m->as<std::string, long long, long long, long long>();
    count += c;
    // No key reached two counters.
    EXPECT_EQ(seen & static_cast<unsigned>(keys), 0u) << name;
    seen |= static_cast<unsigned>(keys);
  }
  EXPECT_EQ(count, 800);
  EXPECT_EQ(seen, 0xffu);
  int mirrored = 0;
  while (auto m = everyone.get_nowait()) {
    auto [name, c, s, keys] = m->as<std::string, long long, long long, long long>();
    EXPECT_EQ(c, 800) << name;
    EXPECT_EQ(s, 100 * SumRange(0, 8)) << name;
    ++mirrored;
  }
  EXPECT_EQ(mirrored, 2);
  EXPECT_EQ(Collect(bad), std::make_pair(200LL, 4 * SumRange(0, 200)));
}

// Sending before start(), after close(), and once the run has stopped (while
// blocked on credit) throws relay::Error; start() reports the real failure.
class Refuses : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    if (m.get<long long>(0) == 5) throw std::runtime_error("no more");
  }
};

TEST_F(InletTest, SendingAtTheWrongTimeThrows) {
  relay::Inlet jobs;
  Refuses sink;
  relay::Relay relay(1);
  relay.connect(relay::group("jobs", jobs), relay::group("sink", sink));
  EXPECT_THROW(jobs.send(1LL), relay::Error);
  class Flood : public relay::Handler {
   public:
    explicit Flood(relay::Inlet& jobs) : jobs_(jobs) {}
    void run() override {
      try {
        for (long long i = 0;; ++i) jobs_.send(i);
      } catch (const relay::Error& e) {
        what = e.what();
      }
    }
    std::string what;

   private:
    relay::Inlet& jobs_;
  } flood(jobs);
  const std::string error = relay::testing::StartError<relay::ActorError>(relay, &flood);
  EXPECT_THAT(error, HasSubstr("no more"));
  EXPECT_THAT(flood.what, HasSubstr("the run has stopped"));
  EXPECT_THROW(jobs.send(1LL), relay::Error);
}

TEST_F(InletTest, SendAfterCloseThrows) {
  relay::Queue results;
  relay::Inlet jobs;
  Tally sink(results);
  relay::Relay relay;
  relay.connect(jobs, sink);
  class CloseTwice : public relay::Handler {
   public:
    explicit CloseTwice(relay::Inlet& jobs) : jobs_(jobs) {}
    void run() override {
      jobs_.send(7LL);
      jobs_.close();
      jobs_.close();
      try {
        jobs_.send(8LL);
      } catch (const relay::Error& e) {
        what = e.what();
      }
    }
    std::string what;

   private:
    relay::Inlet& jobs_;
  } handler(jobs);
  relay.start(handler);
  EXPECT_THAT(handler.what, HasSubstr("send() after close()"));
  EXPECT_EQ(Collect(results), std::make_pair(1LL, 7LL));
}

TEST_F(InletTest, AnInletNeitherReceivesNorSharesItsGroup) {
  {
    relay::Queue results;
    relay::Inlet jobs;
    Tally sink(results);
    relay::testing::Counter source(0, 1);
    relay::Relay relay;
    relay.connect(source, relay::group("jobs", jobs), sink);
    EXPECT_THAT(relay::testing::StartError<std::invalid_argument>(relay),
                HasSubstr("no edge may enter that group"));
  }
  {
    relay::Queue results;
    relay::Inlet a, b;
    Tally sink(results);
    relay::Relay relay;
    relay.connect(relay::group("jobs", a, b), sink);
    EXPECT_THAT(relay::testing::StartError<std::invalid_argument>(relay),
                HasSubstr("alone in its group"));
  }
}

}  // namespace

namespace {

// Passes each number on, taking `pause` over each.
class SlowForward : public relay::Actor {
 public:
  explicit SlowForward(std::chrono::microseconds pause) : pause_(pause) {}
  void recv(const relay::Message& m) override {
    std::this_thread::sleep_for(pause_);
    send(m.get<long long>(0));
  }

 private:
  std::chrono::microseconds pause_;
};

// A handler that waits for the results of what it fed before it closes the
// inlet: the inlet's last messages, batched while the worker was busy, must
// not wait for a next hand-over that never comes (they did, for ever).
TEST_F(InletTest, AHandlerThatWaitsForEveryResultBeforeClosingGetsThem) {
  relay::Queue results;
  relay::Inlet jobs;
  SlowForward worker(std::chrono::microseconds(50));
  PutEach sink(results);
  relay::Relay relay;
  relay.connect(jobs, relay::group("work", worker), relay::group("sink", sink));
  constexpr long long kN = 3000;
  class FeedAndWait : public relay::Handler {
   public:
    FeedAndWait(relay::Inlet& jobs, relay::Queue& results) : jobs_(jobs), results_(results) {}
    void run() override {
      for (long long i = 0; i < kN; ++i) jobs_.send(i);
      while (got < kN) {
        auto m = results_.get(std::chrono::seconds(10));
        if (!m) break;
        sum += m->get<long long>(0);
        ++got;
      }
      jobs_.close();
    }
    long long got = 0;
    long long sum = 0;

   private:
    relay::Inlet& jobs_;
    relay::Queue& results_;
  } feed(jobs, results);
  relay.start(feed);
  EXPECT_EQ(feed.got, kN) << "results stopped coming before the inlet closed";
  EXPECT_EQ(feed.sum, SumRange(0, kN));
}

}  // namespace
