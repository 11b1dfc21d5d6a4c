// End-to-end tests of the seed's scenarios, with real processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::ProcessTest;
using ::testing::HasSubstr;

class Producer : public relay::Actor {
 public:
  explicit Producer(int n, int start = 0) : n_(n), start_(start) {}
  void loop() override {
    for (int i = start_; i < start_ + n_; ++i) send(i, std::string("item"));
  }

 private:
  int n_;
  int start_;
};

class Worker : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    auto [i, s] = m.as<int, std::string>();
    send(i + 1, s);
  }
};

class Consumer : public relay::Actor {
 public:
  explicit Consumer(relay::Queue& results) : results_(results) {}
  void startup() override { results_.put(std::string("startup"), name()); }
  void recv(const relay::Message& m) override { results_.put(m.get<int>(0)); }
  void shutdown() override { results_.put(std::string("shutdown"), name()); }

 private:
  relay::Queue& results_;
};

// Drains a queue after the run: the ints, sorted, and the markers.
struct Drained {
  std::vector<int> values;
  std::vector<std::string> markers;
};
Drained Drain(relay::Queue& q) {
  Drained d;
  while (auto m = q.get_nowait()) {
    if (m->size() == 1) {
      d.values.push_back(m->get<int>(0));
    } else {
      d.markers.push_back(m->get<std::string>(0) + ":" + m->get<std::string>(1));
    }
  }
  std::sort(d.values.begin(), d.values.end());
  std::sort(d.markers.begin(), d.markers.end());
  return d;
}

std::vector<int> Range(int from, int to) {
  std::vector<int> v(static_cast<std::size_t>(to - from));
  std::iota(v.begin(), v.end(), from);
  return v;
}

using PipelineTest = ProcessTest;

// 1-1: every message arrives once; startup and shutdown run once.
TEST_F(PipelineTest, OneToOne) {
  relay::Queue results;
  Producer producer(100);
  Consumer consumer(results);
  relay::Relay relay;
  relay.connect(producer, consumer);
  relay.start();
  Drained d = Drain(results);
  EXPECT_EQ(d.values, Range(0, 100));
  EXPECT_EQ(d.markers, (std::vector<std::string>{"shutdown:Consumer-0", "startup:Consumer-0"}));
  EXPECT_EQ(producer.exitcode(), 0);
  EXPECT_EQ(consumer.exitcode(), 0);
  EXPECT_FALSE(producer.is_alive());
}

// The program of API.md: 1-4-1 with maxsize.
TEST_F(PipelineTest, OneToManyToOne) {
  relay::Queue results;
  Producer producer(1000);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(std::make_unique<Worker>());
  Consumer consumer(results);
  relay::Relay relay(50, "test");
  relay.connect(producer, workers, consumer);
  relay.start();
  Drained d = Drain(results);
  EXPECT_EQ(d.values, Range(1, 1001));
  EXPECT_EQ(workers[3]->name(), "Worker-3");
  EXPECT_EQ(workers[3]->group(), "group-1");
}

// A sink that reports its count, sum and startup/shutdown calls; it sleeps
// `first_wait` on its first message (its senders' windows fill meanwhile).
class Tally : public relay::Actor {
 public:
  explicit Tally(relay::Queue& q, std::chrono::milliseconds first_wait = {})
      : q_(q), first_wait_(first_wait) {}
  void startup() override { ++startups_; }
  void recv(const relay::Message& m) override {
    if (count_++ == 0) std::this_thread::sleep_for(first_wait_);
    sum_ += m.get<long long>(0);
  }
  void shutdown() override { q_.put(name(), count_, sum_, startups_); }

 private:
  relay::Queue& q_;
  std::chrono::milliseconds first_wait_;
  long long count_ = 0;
  long long sum_ = 0;
  int startups_ = 0;
};

struct Totals {
  long long count = 0;
  long long sum = 0;
  int sinks = 0;
};
Totals Collect(relay::Queue& q) {
  Totals t;
  while (auto m = q.get_nowait()) {
    auto [name, count, sum, startups] = m->as<std::string, long long, long long, int>();
    EXPECT_EQ(startups, 1) << name;
    t.count += count;
    t.sum += sum;
    ++t.sinks;
  }
  return t;
}

using relay::testing::Counter;
using relay::testing::Forward;
using relay::testing::Many;
using relay::testing::PutEach;
using relay::testing::SumRange;

// 1-n: every message reaches exactly one of the receivers; each sink's
// startup and shutdown run once.
TEST_F(PipelineTest, OneToMany) {
  relay::Queue q;
  Counter source(0, 3000);
  auto sinks = Many<Tally>(3, q);
  relay::Relay relay;
  relay.connect(source, sinks);
  relay.start();
  Totals t = Collect(q);
  EXPECT_EQ(t.sinks, 3);
  EXPECT_EQ(t.count, 3000);
  EXPECT_EQ(t.sum, SumRange(0, 3000));
}

// n-1: end of stream comes only after every sender finished.
TEST_F(PipelineTest, ManyToOne) {
  relay::Queue q;
  Counter a(0, 1000), b(1000, 1000), c(2000, 1000);
  Tally sink(q);
  relay::Relay relay;
  relay.connect(std::vector<relay::Actor*>{&a, &b, &c}, sink);
  relay.start();
  Totals t = Collect(q);
  EXPECT_EQ(t.sinks, 1);
  EXPECT_EQ(t.count, 3000);
  EXPECT_EQ(t.sum, SumRange(0, 3000));
}

// n-m.
TEST_F(PipelineTest, ManyToMany) {
  relay::Queue q;
  Counter a(0, 2000), b(2000, 2000), c(4000, 2000);
  auto sinks = Many<Tally>(2, q);
  relay::Relay relay(8);
  relay.connect(std::vector<relay::Actor*>{&a, &b, &c}, sinks);
  relay.start();
  Totals t = Collect(q);
  EXPECT_EQ(t.sinks, 2);
  EXPECT_EQ(t.count, 6000);
  EXPECT_EQ(t.sum, SumRange(0, 6000));
}

// 1-n-m-1 with a small maxsize: exact count and checksum.
TEST_F(PipelineTest, ExactCountsThroughFourStagesWithSmallMaxsize) {
  relay::Queue q;
  Counter source(7, 20000);
  auto first = Many<Forward>(3);
  auto second = Many<Forward>(2);
  Tally sink(q);
  relay::Relay relay(4);
  relay.connect(source, first, second, sink);
  relay.start();
  Totals t = Collect(q);
  EXPECT_EQ(t.count, 20000);
  EXPECT_EQ(t.sum, SumRange(7, 20000));
}

// Named groups name the actors' group; unnamed ones are numbered by position.
TEST_F(PipelineTest, NamedGroups) {
  relay::Queue q;
  Counter source(0, 10);
  auto prep = Many<Forward>(2);
  Tally sink(q);
  relay::Relay relay;
  relay.connect(source, relay::group("prep", prep), relay::group("sink", sink));
  EXPECT_EQ(source.group(), "group-0");
  EXPECT_EQ(prep[1]->group(), "prep");
  EXPECT_EQ(prep[1]->name(), "Forward-1");
  EXPECT_EQ(sink.group(), "sink");
  EXPECT_TRUE(source.sender());
  EXPECT_FALSE(source.receiver());
  EXPECT_TRUE(prep[0]->sender() && prep[0]->receiver());
  EXPECT_FALSE(sink.sender());
  relay.start();
  EXPECT_EQ(Collect(q).count, 10);
}

// A Handler runs in the main process while the actors run and aggregates
// what they put to its queue; the sink ends it with Control::eol.
class EolSink : public relay::Actor {
 public:
  explicit EolSink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { q_.put(m.get<long long>(0)); }
  void shutdown() override { q_.put(relay::Control::eol); }

 private:
  relay::Queue& q_;
};

class Summer : public relay::Handler {
 public:
  void run() override {
    for (;;) {
      relay::Message m = q.get();
      if (m.is(relay::Control::eol)) return;
      sum += m.get<long long>(0);
      ++count;
    }
  }
  long long sum = 0;
  long long count = 0;
};

TEST_F(PipelineTest, HandlerAggregatesThroughItsQueue) {
  Summer handler;
  Counter source(0, 500);
  auto workers = Many<Forward>(2);
  EolSink sink(handler.q);
  relay::Relay relay;
  relay.connect(source, workers, sink);
  relay.start(&handler);
  EXPECT_EQ(handler.count, 500);
  EXPECT_EQ(handler.sum, SumRange(0, 500));
}

// A bounded Queue never holds more than maxsize messages: put() blocks.
class Flood : public relay::Actor {
 public:
  explicit Flood(relay::Queue& q) : q_(q) {}
  void loop() override {
    for (int i = 0; i < 200; ++i) q_.put(i);
  }
  void recv(const relay::Message&) override {}

 private:
  relay::Queue& q_;
};
class Idle : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};
class SlowReader : public relay::Handler {
 public:
  explicit SlowReader(relay::Queue& bounded) : bounded_(bounded) {}
  void run() override {
    for (int i = 0; i < 200; ++i) {
      max_seen = std::max<std::size_t>(max_seen, bounded_.qsize());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      values.push_back(bounded_.get().get<int>(0));
    }
  }
  std::size_t max_seen = 0;
  std::vector<int> values;

 private:
  relay::Queue& bounded_;
};

TEST_F(PipelineTest, BoundedQueueBlocksPut) {
  relay::Queue bounded(5);
  Flood source(bounded);
  Idle sink;
  SlowReader reader(bounded);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start(&reader);
  EXPECT_LE(reader.max_seen, 5u);
  EXPECT_EQ(reader.values, Range(0, 200));  // one putter: FIFO order kept
}

// Backpressure: with maxsize 10 on a 1-1 edge, at most 10 messages wait for
// the sink, so the source is never more than 11 ahead of what the sink has
// handled (one is inside recv()), and it does get there.
class LeadSource : public relay::Actor {
 public:
  explicit LeadSource(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    for (long long i = 0; i < 3000; ++i) {
      send(i);
      const long long lead = i + 1 - shm_.at(1).load();
      if (lead > shm_.at(2).load()) shm_.at(2).store(lead);
    }
  }

 private:
  relay::testing::SharedBlock& shm_;
};
class SlowSink : public relay::Actor {
 public:
  explicit SlowSink(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void recv(const relay::Message&) override {
    if (shm_.at(1).load() % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    shm_.at(1).fetch_add(1);
  }

 private:
  relay::testing::SharedBlock& shm_;
};

TEST_F(PipelineTest, MaxsizeBoundsMessagesInFlight) {
  relay::testing::SharedBlock shm;
  LeadSource source(shm);
  SlowSink sink(shm);
  relay::Relay relay(10);
  relay.connect(source, sink);
  relay.start();
  EXPECT_EQ(shm.at(1).load(), 3000);
  // At most 10 waiting, plus the one inside recv(); credits come back in
  // halves of the window, so it ran at least 5 ahead before blocking.
  EXPECT_LE(shm.at(2).load(), 11);
  EXPECT_GE(shm.at(2).load(), 5);
}

// Without maxsize, the window is also bounded in bytes (16 MiB per pair): a
// source of 1 MiB messages is at most 16 ahead of a slow sink (plus the one
// inside recv()), where 4096 messages would be 4 GiB. Small and large
// messages alternate, so credits come back by count and by bytes; every
// message arrives once.
class BigSource : public relay::Actor {
 public:
  explicit BigSource(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    const std::string big(1 << 20, 'x');
    for (long long i = 0; i < 400; ++i) {
      if (i % 2 == 0) {
        send(i, big);
      } else {
        send(i, std::string("small"));
      }
      const long long lead = (i + 1) / 2 - shm_.at(1).load();  // big ones only
      if (lead > shm_.at(2).load()) shm_.at(2).store(lead);
    }
  }

 private:
  relay::testing::SharedBlock& shm_;
};
class BigSink : public relay::Actor {
 public:
  BigSink(relay::testing::SharedBlock& shm, relay::Queue& q) : shm_(shm), q_(q) {}
  void recv(const relay::Message& m) override {
    const auto [i, text] = m.as<long long, std::string>();
    ++count_;
    sum_ += i;
    if (text.size() == (1u << 20)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      shm_.at(1).fetch_add(1);
    }
  }
  void shutdown() override { q_.put(count_, sum_); }

 private:
  relay::testing::SharedBlock& shm_;
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
};

TEST_F(PipelineTest, DefaultWindowBoundsBytesInFlight) {
  relay::testing::SharedBlock shm;
  relay::Queue q;
  BigSource source(shm);
  BigSink sink(shm, q);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start();
  const std::optional<relay::Message> totals = q.get_nowait();
  ASSERT_TRUE(totals.has_value());
  const auto [count, sum] = totals->as<long long, long long>();
  EXPECT_EQ(count, 400);
  EXPECT_EQ(sum, 400 * 399 / 2);
  EXPECT_EQ(shm.at(1).load(), 200);
  EXPECT_LE(shm.at(2).load(), 18) << "more than 16 MiB waited for the sink";
  EXPECT_GE(shm.at(2).load(), 8) << "the source never ran ahead: the window is far too small";
}

// Logs from every actor reach the main process, prefixed [group] (name), and
// none is lost when an actor exits right after logging.
class Chatty : public relay::Actor {
 public:
  void startup() override { log("up {}", 1); }
  void loop() override { send(1); }
  void shutdown() override {
    for (int i = 0; i < 1000; ++i) log(relay::Level::warn, "bye {}", i);
  }
};
class ChattySink : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { log("got {}", m.to_string()); }
};

TEST_F(PipelineTest, LogsReachMainProcess) {
  relay::testing::LogCapture capture("logtest");
  Chatty source;
  ChattySink sink;
  relay::Relay relay({}, "logtest");
  relay.connect(source, relay::group("sink", sink));
  relay.start();
  EXPECT_EQ(capture.count("info [group-0] (Chatty-0) up 1"), 1) << capture.text();
  EXPECT_EQ(capture.count("info [sink] (ChattySink-0) got [1]"), 1) << capture.text();
  EXPECT_EQ(capture.count("warning [group-0] (Chatty-0) bye "), 1000);
  EXPECT_EQ(capture.count("bye 999"), 1);
}

// Values of every kind the API promises travel intact.
struct Point {
  int x = 0;
  std::string label;
  MSGPACK_DEFINE_MAP(x, label);
};
class Kinds : public relay::Actor {
 public:
  void loop() override {
    send(true, 2.5, std::string("s"), std::vector<int>{1, 2}, std::map<std::string, int>{{"a", 1}},
         std::optional<int>{}, std::make_tuple(1, std::string("t")), Point{3, "p"},
         relay::Control::poison);
  }
};
class KindsSink : public relay::Actor {
 public:
  explicit KindsSink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    const auto [b, d, s, v, mp, opt, tup, pt, c] =
        m.as<bool, double, std::string, std::vector<int>, std::map<std::string, int>,
             std::optional<int>, std::tuple<int, std::string>, Point, relay::Control>();
    const bool ok = b && d == 2.5 && s == "s" && v == std::vector<int>{1, 2} && mp.at("a") == 1 &&
                    !opt && std::get<1>(tup) == "t" && pt.x == 3 && pt.label == "p" &&
                    c == relay::Control::poison;
    q_.put(ok, m.to_string());
  }

 private:
  relay::Queue& q_;
};

TEST_F(PipelineTest, EveryValueKindTravels) {
  relay::Queue q;
  Kinds source;
  KindsSink sink(q);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start();
  auto m = q.get_nowait();
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->get<bool>(0)) << m->get<std::string>(1);
  EXPECT_EQ(
      m->get<std::string>(1),
      R"([true, 2.5, "s", [1, 2], {"a": 1}, null, [1, "t"], {"x": 3, "label": "p"}, poison])");
}

// A Handler polling its queue with a timeout learns that the run is over:
// get(timeout) throws relay::Closed instead of timing out for ever, and
// start() does not count that as the handler's failure.
class Poller : public relay::Handler {
 public:
  void run() override {
    for (;;) {
      if (auto m = q.get(std::chrono::milliseconds(20))) ++seen;
    }
  }
  int seen = 0;
};

TEST_F(PipelineTest, PollingHandlerEndsWhenRunEnds) {
  Poller handler;
  Counter source(0, 10);
  EolSink sink(handler.q);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start(handler);  // a good run: returns normally
  EXPECT_EQ(handler.seen, 11);  // ten values and the eol
  EXPECT_EQ(handler.q.get_nowait(), std::nullopt);
}

// The issue's case: `for (;;) q.get();` in run() used to turn a run that
// ended well into relay::Error from start().
class ReadUntilClosed : public relay::Handler {
 public:
  void run() override {
    for (;;) sum += q.get().get<long long>(0);
  }
  long long sum = 0;
};

TEST_F(PipelineTest, HandlerReadingUntilTheQueueClosesEndsAGoodRun) {
  ReadUntilClosed handler;
  Counter source(1, 100);
  PutEach sink(handler.q);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start(handler);
  EXPECT_EQ(handler.sum, relay::testing::SumRange(1, 100));
}

// ... but when the run fails, the failure is what start() throws.
class ThrowAt : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    if (m.get<long long>(0) == 50) throw std::runtime_error("no fifty");
  }
};

TEST_F(PipelineTest, HandlerReadingUntilTheQueueClosesStillSeesAFailure) {
  ReadUntilClosed handler;
  Counter source(0, 100);
  ThrowAt sink;
  relay::Relay relay;
  relay.connect(source, sink);
  EXPECT_THAT(relay::testing::StartError<relay::ActorError>(relay, &handler),
              HasSubstr("no fifty"));
}

// After start() has returned, nothing can fill a queue: get(timeout) on an
// empty one returns nothing at once, so the drain loop ends cleanly, and
// get() throws relay::Closed rather than block for ever. The same holds
// before any run.
TEST_F(PipelineTest, DrainLoopWithTimeoutEndsAfterTheRun) {
  relay::Queue q;
  EXPECT_EQ(q.get(std::chrono::seconds(5)), std::nullopt);
  EXPECT_THROW(q.get(), relay::Closed);
  Counter source(1, 100);
  PutEach sink(q);
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start();
  long long sum = 0;
  int n = 0;
  const auto began = std::chrono::steady_clock::now();
  while (auto m = q.get(std::chrono::seconds(5))) {
    sum += m->get<long long>(0);
    ++n;
  }
  // Had the last get() waited its 5 s, the loop would have taken that long.
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(4));
  EXPECT_EQ(n, 100);
  EXPECT_EQ(sum, relay::testing::SumRange(1, 100));
  EXPECT_THROW(q.get(), relay::Closed);
}

// The run's authkey is shared by its actors and known to the main process.
class KeySource : public relay::Actor {
 public:
  explicit KeySource(relay::Queue& q) : q_(q) {}
  void loop() override { q_.put(authkey()); }

 private:
  relay::Queue& q_;
};

TEST_F(PipelineTest, AuthkeyIsSharedByTheRun) {
  relay::Queue q;
  KeySource source(q);
  Tally sink(q);
  EXPECT_EQ(source.authkey(), "");
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start();
  EXPECT_EQ(source.authkey().size(), 64u);
  EXPECT_EQ(source.authkey(), sink.authkey());
  auto m = q.get_nowait();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->get<std::string>(0), source.authkey());
}

TEST_F(PipelineTest, HandlerQueueCanBeBounded) {
  class Bounded : public relay::Handler {
   public:
    Bounded() : relay::Handler(3) {}
    void run() override {}
  } handler;
  EXPECT_EQ(handler.q.maxsize(), 3u);
}

}  // namespace

// Forwards; the first to take `victim` aborts once (cell 0 says it did).
class AbortsOnce : public relay::Actor {
 public:
  AbortsOnce(relay::testing::SharedBlock& shm, long long victim) : shm_(shm), victim_(victim) {}
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    long long none = 0;
    if (v == victim_ && shm_.at(0).compare_exchange_strong(none, 1)) std::abort();
    send(v);
  }

 private:
  relay::testing::SharedBlock& shm_;
  long long victim_;
};

// What each actor that sent wrote at its end ("NAME BATCHES MESSAGES") to
// RELAY_TESTING_BATCHES_TO, set for the life of this object (unset however
// the test ends: later tests' actors must not write there).
class BatchReport {
 public:
  explicit BatchReport(const std::string& tag) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    path_ = std::string(tmp ? tmp : "/tmp") + "/batches-" + std::to_string(::getpid()) + "-" + tag;
    std::remove(path_.c_str());
    ::setenv("RELAY_TESTING_BATCHES_TO", path_.c_str(), 1);
  }
  ~BatchReport() {
    ::unsetenv("RELAY_TESTING_BATCHES_TO");
    std::remove(path_.c_str());
  }
  BatchReport(const BatchReport&) = delete;
  BatchReport& operator=(const BatchReport&) = delete;

  struct Line {
    std::string name;
    long long batches = 0;
    long long messages = 0;
  };
  std::vector<Line> read() const {
    std::vector<Line> lines;
    std::ifstream in(path_);
    for (Line l; in >> l.name >> l.batches >> l.messages;) lines.push_back(l);
    return lines;
  }

 private:
  std::string path_;
};

class Batching : public ProcessTest, public ::testing::WithParamInterface<bool> {};

// Small messages to a receiver that has messages waiting go several to a
// ZeroMQ frame ('B', wire.h); every count stays exact, and under
// Relay::restart() (a middle actor aborted while batches are in flight)
// every message still reaches the sink exactly once.
TEST_P(Batching, SmallMessagesToABusyReceiverGoInBatchesAndAllArrive) {
  const bool supervised = GetParam();
  const BatchReport report(supervised ? "s" : "u");
  constexpr long long kN = 200000;
  relay::testing::SharedBlock shm;
  Counter src(0, kN);
  AbortsOnce a(shm, supervised ? kN / 2 : -1), b(shm, supervised ? kN / 2 : -1);
  relay::Queue q;
  Tally sink(q, std::chrono::milliseconds(200));
  relay::Relay relay;
  relay.connect(src, relay::group("mid", a, b), relay::group("sink", sink));
  if (supervised) relay.restart("mid");
  relay.start();
  const Totals t = Collect(q);
  EXPECT_EQ(t.count, kN);
  EXPECT_EQ(t.sum, SumRange(0, kN));
  EXPECT_EQ(shm.at(0).load(), supervised ? 1 : 0);

  long long batches = 0, batched = 0;
  const auto lines = report.read();
  for (const BatchReport::Line& l : lines) {
    EXPECT_LE(l.messages, l.batches * 256) << l.name << ": more than 256 messages in a batch";
    EXPECT_GE(l.messages, l.batches * 2) << l.name << ": a batch of fewer than 2";
    batches += l.batches;
    batched += l.messages;
  }
  EXPECT_GE(lines.size(), 3u) << "source and middle actors report";
  EXPECT_GT(batches, 0);
  // The sink slept while the windows filled: much of the run went in batches.
  EXPECT_GT(batched, kN / 10);
}

// Sends (i, 1000 bytes that depend on i).
class KilobyteSource : public relay::Actor {
 public:
  explicit KilobyteSource(long long n) : n_(n) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) send(i, std::string(1000, static_cast<char>('a' + i % 26)));
  }

 private:
  long long n_;
};

// Counts and sums value 0; counts messages whose 1000 bytes are not the ones
// their number says.
class KilobyteSink : public relay::Actor {
 public:
  explicit KilobyteSink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    if (count_++ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto i = m.get<long long>(0);
    sum_ += i;
    if (m.get<std::string_view>(1) != std::string(1000, static_cast<char>('a' + i % 26))) ++bad_;
  }
  void shutdown() override { q_.put(count_, sum_, bad_); }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
  long long bad_ = 0;
};

// Passes each message on as it came.
class PassOn : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m); }
};

// Messages of a kilobyte batch too, up to about 32 KiB a batch (wire.h),
// through a middle stage that passes each on as it came (send(m)).
TEST_F(PipelineTest, KilobyteMessagesGoInBatchesOfAtMost32KiB) {
  const BatchReport report("kib");
  constexpr long long kN = 50000;
  KilobyteSource src(kN);
  PassOn a, b;
  relay::Queue q;
  KilobyteSink sink(q);
  relay::Relay relay;
  relay.connect(src, relay::group("mid", a, b), relay::group("sink", sink));
  relay.start();
  const auto m = q.get_nowait();
  ASSERT_TRUE(m);
  const auto [count, sum, bad] = m->as<long long, long long, long long>();
  EXPECT_EQ(count, kN);
  EXPECT_EQ(sum, SumRange(0, kN));
  EXPECT_EQ(bad, 0) << "messages whose bytes changed on the way";
  long long batched = 0;
  for (const BatchReport::Line& l : report.read()) {
    // A batch closes once it holds 32 KiB: at most 33 of these.
    EXPECT_LE(l.messages, l.batches * 33) << l.name << ": a batch above 32 KiB";
    batched += l.messages;
  }
  EXPECT_GT(batched, kN / 10) << "kilobyte messages did not go in batches";
}

INSTANTIATE_TEST_SUITE_P(Pipeline, Batching, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Supervised" : "Plain"; });

// Sends `n` numbers to a busy receiver, calls flush(), then waits in its own
// code (at most 10 s) until the sink has counted all of them: without the
// flush, the last of them would wait in a batch until loop() returned.
class FlushingSource : public relay::Actor {
 public:
  FlushingSource(relay::testing::SharedBlock& shm, long long n) : shm_(shm), n_(n) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) send(i);
    flush();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (shm_.at(0).load() < n_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    shm_.at(1).store(shm_.at(0).load());  // what had arrived while it waited
  }

 private:
  relay::testing::SharedBlock& shm_;
  long long n_;
};

// Counts into cell 0, slowly at first (its sender's window fills).
class CountingSink : public relay::Actor {
 public:
  explicit CountingSink(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void recv(const relay::Message&) override {
    if (shm_.at(0).fetch_add(1) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

 private:
  relay::testing::SharedBlock& shm_;
};

TEST_F(PipelineTest, FlushSendsWhatWaitsInABatch) {
  constexpr long long kN = 20000;
  relay::testing::SharedBlock shm;
  FlushingSource src(shm, kN);
  CountingSink sink(shm);
  relay::Relay relay;
  relay.connect(src, sink);
  relay.start();
  EXPECT_EQ(shm.at(1).load(), kN) << "messages still held after flush()";
  EXPECT_EQ(shm.at(0).load(), kN);
}
