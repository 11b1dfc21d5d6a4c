// Supervision (Relay::restart()): failed actors are started again, what they
// had not finished is delivered again, poison messages become dead letters,
// and the limits stop the run. Real processes; every test checks what
// reached the end, and (ProcessTest) that nothing is left behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::ProcessTest;
using relay::testing::SharedBlock;
using ::testing::HasSubstr;

class SupervisionTest : public ProcessTest {};

enum class Kind { kThrow, kExit, kAbort, kSegv, kKill };

std::string KindName(Kind k) {
  switch (k) {
    case Kind::kThrow:
      return "Throw";
    case Kind::kExit:
      return "Exit";
    case Kind::kAbort:
      return "Abort";
    case Kind::kSegv:
      return "Segv";
    case Kind::kKill:
      return "Kill";
  }
  return "";
}

[[noreturn]] void Die(Kind kind) {
  switch (kind) {
    case Kind::kThrow:
      throw std::runtime_error("boom on purpose");
    case Kind::kExit:
      std::exit(3);
    case Kind::kAbort:
      std::abort();
    case Kind::kSegv:
      ::raise(SIGSEGV);
      break;
    case Kind::kKill:
      ::raise(SIGKILL);
      break;
  }
  std::abort();
}

// Shared cells: 0 how often the worker died, 1 messages seen again
// (redelivered()), 2 the first worker pid that died, 3 recv() calls in all.
// Forwards each number; dies as `kind` on `victim` the first time only
// (before sending it on), or every time when `always`.
class Flaky : public relay::Actor {
 public:
  Flaky(SharedBlock& shm, long long victim, Kind kind, bool always = false)
      : shm_(shm), victim_(victim), kind_(kind), always_(always) {}
  void recv(const relay::Message& m) override {
    shm_.at(3).fetch_add(1);
    if (m.redelivered()) shm_.at(1).fetch_add(1);
    const long long v = m.get<long long>(0);
    if (v == victim_ && (always_ || shm_.at(0).load() == 0)) {
      long long none = 0;
      shm_.at(2).compare_exchange_strong(none, ::getpid());
      shm_.at(0).fetch_add(1);
      Die(kind_);
    }
    send(v);
  }

 private:
  SharedBlock& shm_;
  long long victim_;
  Kind kind_;
  bool always_;
};

// Puts every number it receives, with its own name.
class Collector : public relay::Actor {
 public:
  explicit Collector(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { q_.put(m.get<long long>(0), name()); }

 private:
  relay::Queue& q_;
};

// How often each number arrived.
std::map<long long, int> Arrivals(relay::Queue& q) {
  std::map<long long, int> seen;
  while (auto m = q.get_nowait()) ++seen[m->get<long long>(0)];
  return seen;
}

// Every one of 0..n-1 arrived at least once and nothing else did; returns
// how many arrived more than once.
int ExpectEveryNumber(const std::map<long long, int>& seen, long long n) {
  int twice = 0;
  EXPECT_EQ(static_cast<long long>(seen.size()), n) << "numbers missing or foreign";
  for (long long i = 0; i < n; ++i) {
    const auto it = seen.find(i);
    if (it == seen.end()) {
      ADD_FAILURE() << "number " << i << " never arrived";
      return twice;
    }
    if (it->second > 1) ++twice;
  }
  return twice;
}

// Runs a Counter of 0..n-1 -> "work" (a and b, supervised) -> a Collector
// into `out`.
void RunSupervisedPair(relay::Actor& a, relay::Actor& b, relay::Queue& out, long long n,
                       std::size_t maxsize) {
  relay::testing::Counter src(0, n);
  std::vector<relay::Actor*> work{&a, &b};
  Collector sink(out);
  relay::Relay relay(maxsize);
  relay.connect(src, relay::group("work", work), relay::group("sink", sink));
  relay.restart("work");
  relay.start();
}

class RestartKinds : public SupervisionTest, public ::testing::WithParamInterface<Kind> {};

// A middle actor dies inside recv() (every kind of death): it is started
// again, the message it died on and everything it had not finished are
// delivered again, and every number reaches the sink.
TEST_P(RestartKinds, MiddleActorIsRestartedAndNothingIsLost) {
  SharedBlock shm;
  constexpr long long kN = 3000;
  relay::Queue out;
  Flaky a(shm, 1234, GetParam());
  Flaky b(shm, 1234, GetParam());
  RunSupervisedPair(a, b, out, kN, 50);
  EXPECT_EQ(shm.at(0).load(), 1);
  EXPECT_GE(shm.at(1).load(), 1) << "the message died on was not delivered again";
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), kN), 0) << "numbers delivered twice";
  // The Actor object reports the new process.
  Flaky& victim = a.pid() == std::optional<int>(static_cast<int>(shm.at(2).load())) ? a : b;
  EXPECT_NE(victim.pid(), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Supervision, RestartKinds,
                         ::testing::Values(Kind::kThrow, Kind::kExit, Kind::kAbort, Kind::kSegv,
                                           Kind::kKill),
                         [](const auto& info) { return KindName(info.param); });

// Sends 0..n-1, one every `gap`: its receivers idle between messages.
class SlowCounter : public relay::Actor {
 public:
  SlowCounter(long long n, std::chrono::microseconds gap) : n_(n), gap_(gap) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) {
      send(i);
      std::this_thread::sleep_for(gap_);
    }
  }

 private:
  long long n_;
  std::chrono::microseconds gap_;
};

// A supervised receiver that idles between messages credits each one (up
// to two frames per message), and within the default window (4096 per
// receiver) this source never runs out of credit. It must still read those
// credits as it goes:
// left in the pipe, they reached ZeroMQ's high-water mark across the
// restart, and the end-of-stream acknowledgement behind them never came
// (the run failed with "its end of stream was never acknowledged").
TEST_F(SupervisionTest, SlowSourceEndsItsStreamAfterARestart) {
  SharedBlock shm;
  constexpr long long kN = 1500;
  relay::Queue out;
  SlowCounter src(kN, std::chrono::microseconds(2000));
  Flaky a(shm, 1000, Kind::kAbort), b(shm, 1000, Kind::kAbort);
  std::vector<relay::Actor*> work{&a, &b};
  Collector sink(out);
  relay::Relay relay;
  relay.connect(src, relay::group("work", work), relay::group("sink", sink));
  relay.restart("work");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 1);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), kN), 0) << "numbers delivered twice";
}

// An actor that sent some of a message's outputs and then died: its
// successor runs the message again, and each output reaches the sink once
// (the receivers tell it what they took from its predecessor).
class Triple : public relay::Actor {
 public:
  Triple(SharedBlock& shm, long long victim) : shm_(shm), victim_(victim) {}
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    send(3 * v);
    send(3 * v + 1);
    if (v == victim_ && shm_.at(0).fetch_add(1) == 0) std::abort();
    send(3 * v + 2);
  }

 private:
  SharedBlock& shm_;
  long long victim_;
};

TEST_F(SupervisionTest, CrashAfterSendingSomeOutputsDeliversEachOnce) {
  SharedBlock shm;
  constexpr long long kN = 2000;
  relay::Queue out;
  relay::testing::Counter src(0, kN);
  Triple a(shm, 1500), b(shm, 1500);
  std::vector<relay::Actor*> work{&a, &b};
  Collector s1(out), s2(out);
  std::vector<relay::Actor*> sinks{&s1, &s2};
  relay::Relay relay(20);
  relay.connect(src, relay::group("work", work), relay::group("sink", sinks));
  relay.restart("work");
  relay.restart("sink");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 3 * kN), 0) << "numbers delivered twice";
}

// The restarted process is a new one, and the main process's Actor says so.
TEST_F(SupervisionTest, ActorReportsTheNewPid) {
  SharedBlock shm;
  relay::Queue out;
  relay::testing::Counter src(0, 500);
  Flaky w(shm, 100, Kind::kAbort);
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(src, relay::group("work", w), sink);
  relay.restart("work");
  relay.start();
  ASSERT_EQ(shm.at(0).load(), 1);
  ASSERT_TRUE(w.pid().has_value());
  EXPECT_NE(*w.pid(), static_cast<int>(shm.at(2).load()));
  EXPECT_EQ(w.exitcode(), std::optional<int>(0));
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 500), 0) << "numbers delivered twice";
}

// A source that dies in loop() runs loop() again from the start. Its ops
// outside recv() are numbered alike in every process, so what its
// predecessors' receivers took is not sent again. Cell 0 counts its deaths:
// process p (after p deaths) dies before sending at[p], and, with `puts`,
// also puts each even number to `q`, after sending it (so that a death at an
// even number falls between the two).
class FlakySource : public relay::Actor {
 public:
  FlakySource(SharedBlock& shm, long long n, std::vector<long long> at,
              relay::Queue* puts = nullptr)
      : shm_(shm), n_(n), at_(std::move(at)), puts_(puts) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) {
      const auto deaths = static_cast<std::size_t>(shm_.at(0).load());
      const bool die = deaths < at_.size() && i == at_[deaths];
      if (die && puts_ == nullptr) Die();
      send(i);
      if (puts_ != nullptr && i % 2 == 0) {
        if (die) Die();
        puts_->put(i);
      }
    }
  }

 private:
  void Die() {
    shm_.at(0).fetch_add(1);
    std::abort();
  }

  SharedBlock& shm_;
  long long n_;
  std::vector<long long> at_;
  relay::Queue* puts_;
};

// The group named `name` in `stats`.
const relay::GroupStats* Group(const std::vector<relay::GroupStats>& stats,
                               const std::string& name) {
  for (const relay::GroupStats& g : stats) {
    if (g.name == name) return &g;
  }
  ADD_FAILURE() << "no group " << name;
  return nullptr;
}

TEST_F(SupervisionTest, RestartedSourceRunsLoopAgain) {
  SharedBlock shm;
  relay::Queue out;
  FlakySource src(shm, 2000, {700});
  relay::testing::Forward f1, f2;
  std::vector<relay::Actor*> fw{&f1, &f2};
  Collector sink(out);
  relay::Relay relay(30);
  relay.connect(relay::group("src", src), fw, sink);
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 1);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 2000), 0) << "numbers delivered twice";
  // Its count is the messages of one whole run of loop(), not more.
  const std::vector<relay::GroupStats> stats = relay::group_stats();
  const relay::GroupStats* g = Group(stats, "src");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->sent, 2000u);
  EXPECT_EQ(g->restarts, 1u);
}

// Killed twice, at different points: the second successor skips what either
// predecessor delivered.
TEST_F(SupervisionTest, RestartedSourceKilledTwiceDeliversEachOnce) {
  SharedBlock shm;
  relay::Queue out;
  FlakySource src(shm, 3000, {600, 1900});
  relay::testing::Forward f1, f2, f3;
  std::vector<relay::Actor*> fw{&f1, &f2, &f3};
  Collector sink(out);
  relay::Relay relay(30);
  relay.connect(relay::group("src", src), fw, sink);
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 3000), 0) << "numbers delivered twice";
}

// To supervised receivers ('S' frames, which carry the origin after their
// header): the same, and the receivers' own restarts are independent of it.
TEST_F(SupervisionTest, RestartedSourceToSupervisedWorkersDeliversEachOnce) {
  SharedBlock shm, wshm;
  relay::Queue out;
  FlakySource src(shm, 3000, {800, 2100});
  Flaky a(wshm, 1500, Kind::kKill), b(wshm, 1500, Kind::kKill);
  std::vector<relay::Actor*> work{&a, &b};
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(relay::group("src", src), relay::group("work", work), sink);
  relay.restart("src");
  relay.restart("work");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_EQ(wshm.at(0).load(), 1);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 3000), 0) << "numbers delivered twice";
}

// by_key: the successor's repeated messages go to the same receivers (their
// keys), and each is delivered once.
TEST_F(SupervisionTest, RestartedSourceByKeyDeliversEachOnce) {
  SharedBlock shm;
  relay::Queue out;
  class KeySource : public relay::Actor {
   public:
    explicit KeySource(SharedBlock& shm) : shm_(shm) {}
    void loop() override {
      for (long long i = 0; i < 3000; ++i) {
        const long long deaths = shm_.at(0).load();
        if ((i == 900 && deaths == 0) || (i == 2200 && deaths == 1)) {
          shm_.at(0).fetch_add(1);
          ::raise(SIGKILL);
        }
        send(i, i % 10);
      }
    }

   private:
    SharedBlock& shm_;
  } src(shm);
  class KeyCollector : public relay::Actor {
   public:
    explicit KeyCollector(relay::Queue& q) : q_(q) {}
    void recv(const relay::Message& m) override {
      q_.put(m.get<long long>(0), m.get<long long>(1), name());
    }

   private:
    relay::Queue& q_;
  };
  KeyCollector k1(out), k2(out), k3(out);
  std::vector<relay::Actor*> keyed{&k1, &k2, &k3};
  relay::Relay relay(30);
  relay.connect(relay::group("src", src), relay::by_key(relay::group("count", keyed), 1));
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  std::map<long long, std::set<std::string>> owners;
  std::map<long long, int> seen;
  while (auto m = out.get_nowait()) {
    const auto [v, key, who] = m->as<long long, long long, std::string>();
    owners[key].insert(who);
    ++seen[v];
  }
  EXPECT_EQ(ExpectEveryNumber(seen, 3000), 0) << "numbers delivered twice";
  ASSERT_EQ(owners.size(), 10u);
  for (const auto& [key, who] : owners) EXPECT_EQ(who.size(), 1u) << "key " << key;
}

// Kills `victim`'s process `times` times, every `every`, each time a live
// one it has not killed yet.
struct Killer : relay::Handler {
  relay::Actor* victim = nullptr;
  int times = 2;
  std::chrono::milliseconds every{150};
  std::vector<int> pids;
  void run() override {
    for (int round = 0; round < times; ++round) {
      std::this_thread::sleep_for(every);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (std::chrono::steady_clock::now() < deadline) {
        const auto pid = victim->pid();
        if (pid && victim->is_alive() && std::find(pids.begin(), pids.end(), *pid) == pids.end()) {
          pids.push_back(*pid);
          victim->kill();
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
};

// Sleeps a little, then puts what it receives with its name.
class SlowCollector : public relay::Actor {
 public:
  SlowCollector(relay::Queue& q, std::chrono::microseconds delay) : q_(q), delay_(delay) {}
  void recv(const relay::Message& m) override {
    std::this_thread::sleep_for(delay_);
    q_.put(m.get<long long>(0), name());
  }

 private:
  relay::Queue& q_;
  std::chrono::microseconds delay_;
};

// Each number as it arrived at each receiver, by name.
std::map<std::string, std::map<long long, int>> ArrivalsByName(relay::Queue& q) {
  std::map<std::string, std::map<long long, int>> seen;
  while (auto m = q.get_nowait()) {
    const auto [v, who] = m->as<long long, std::string>();
    ++seen[who][v];
  }
  return seen;
}

// Broadcast: a source killed while it waits for the slow receiver's credit,
// after the fast one took the message. The successor sends that message to
// the slow one only; each receiver sees every number once.
TEST_F(SupervisionTest, RestartedSourceBroadcastDeliversEachOnceToEach) {
  relay::Queue out;
  relay::testing::Counter src(0, 1500);
  SlowCollector fast(out, std::chrono::microseconds(0));
  SlowCollector slow(out, std::chrono::microseconds(400));
  std::vector<relay::Actor*> sinks{&fast, &slow};
  relay::Relay relay(2);
  relay.connect(relay::group("src", src), relay::broadcast(relay::group("sinks", sinks)));
  relay.restart("src", relay::Restart{.max_restarts = 5});
  Killer killer;
  killer.victim = &src;
  relay.start(killer);
  ASSERT_EQ(killer.pids.size(), 2u);
  const auto seen = ArrivalsByName(out);
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& [who, numbers] : seen) {
    EXPECT_EQ(ExpectEveryNumber(numbers, 1500), 0) << who << ": numbers delivered twice";
  }
}

// The same downstream of a restarted worker: its successor, given again the
// message it died in, sends the output on to the receivers that did not
// take it only.
TEST_F(SupervisionTest, CrashMidBroadcastDeliversEachOnceToEach) {
  relay::Queue out;
  relay::testing::Counter src(0, 1500);
  relay::testing::Forward w;
  SlowCollector fast(out, std::chrono::microseconds(0));
  SlowCollector slow(out, std::chrono::microseconds(400));
  std::vector<relay::Actor*> sinks{&fast, &slow};
  relay::Relay relay(2);
  relay.connect(src, relay::group("work", w), relay::broadcast(relay::group("sinks", sinks)));
  relay.restart("work", relay::Restart{.max_restarts = 5});
  Killer killer;
  killer.victim = &w;
  relay.start(killer);
  ASSERT_EQ(killer.pids.size(), 2u);
  const auto seen = ArrivalsByName(out);
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& [who, numbers] : seen) {
    EXPECT_EQ(ExpectEveryNumber(numbers, 1500), 0) << who << ": numbers delivered twice";
  }
}

// A source that also puts to a Queue: the broker's list of its puts stops
// the successor putting them again, also when it died between a send and
// the put after it.
TEST_F(SupervisionTest, RestartedSourcePutsEachOnce) {
  SharedBlock shm;
  relay::Queue out, puts;
  FlakySource src(shm, 2000, {700, 1400}, &puts);
  relay::testing::Forward f1, f2;
  std::vector<relay::Actor*> fw{&f1, &f2};
  Collector sink(out);
  relay::Relay relay(30);
  relay.connect(relay::group("src", src), fw, sink);
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 2000), 0) << "numbers delivered twice";
  std::map<long long, int> put;
  while (auto m = puts.get_nowait()) ++put[m->get<long long>(0) / 2];
  EXPECT_EQ(ExpectEveryNumber(put, 1000), 0) << "numbers put twice";
}

// A source that dies with thousands of messages in flight (the default
// window of 4096 per pair, receivers slower than it): those its receivers
// had not taken are sent again, the others not.
TEST_F(SupervisionTest, RestartedSourceWithManyInFlightDeliversEachOnce) {
  SharedBlock shm;
  relay::Queue out;
  FlakySource src(shm, 12000, {6000});
  SlowCollector s1(out, std::chrono::microseconds(50)), s2(out, std::chrono::microseconds(50));
  std::vector<relay::Actor*> sinks{&s1, &s2};
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("sinks", sinks));
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 1);
  std::map<long long, int> seen;
  for (const auto& [who, numbers] : ArrivalsByName(out)) {
    for (const auto& [v, n] : numbers) seen[v] += n;
  }
  EXPECT_EQ(ExpectEveryNumber(seen, 12000), 0) << "numbers delivered twice";
}

// A small maxsize makes the source's bound on its spread small (X = 9
// here, dedup.h's loop_limit()), so most of what a successor skips is below
// that bound rather than in a receiver's list.
TEST_F(SupervisionTest, RestartedSourceWithASmallWindowDeliversEachOnce) {
  SharedBlock shm;
  relay::Queue out;
  FlakySource src(shm, 400, {150, 300});
  SlowCollector fast(out, std::chrono::microseconds(0));
  SlowCollector slow(out, std::chrono::milliseconds(5));
  std::vector<relay::Actor*> sinks{&fast, &slow};
  relay::Relay relay(4);
  relay.connect(relay::group("src", src), relay::group("sinks", sinks));
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  std::map<long long, int> seen;
  for (const auto& [who, numbers] : ArrivalsByName(out)) {
    for (const auto& [v, n] : numbers) seen[v] += n;
  }
  EXPECT_EQ(ExpectEveryNumber(seen, 400), 0) << "numbers delivered twice";
}

// The bound itself: a supervised source makes no message while one it sent
// more than X (9 here) messages before is not taken, so a fast receiver runs
// at most X ahead of a slow one. Cell 1: the highest number the fast one
// got; the slow one notes it at the end of each recv(), when its next message
// waits untaken, and compares it with that message: cell 2, the largest lead.
TEST_F(SupervisionTest, SupervisedSourceIsAtMostABoundAheadOfItsSlowestReceiver) {
  SharedBlock shm;
  class Fast : public relay::Actor {
   public:
    explicit Fast(SharedBlock& shm) : shm_(shm) {}
    void recv(const relay::Message& m) override {
      const long long v = m.get<long long>(0);
      if (v > shm_.at(1).load()) shm_.at(1).store(v);
    }

   private:
    SharedBlock& shm_;
  } fast(shm);
  class Slow : public relay::Actor {
   public:
    explicit Slow(SharedBlock& shm) : shm_(shm) {}
    void recv(const relay::Message& m) override {
      const long long lead = seen_ - m.get<long long>(0);
      if (lead > shm_.at(2).load()) shm_.at(2).store(lead);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen_ = shm_.at(1).load();
    }

   private:
    SharedBlock& shm_;
    long long seen_ = -1;
  } slow(shm);
  relay::testing::Counter src(0, 300);
  std::vector<relay::Actor*> sinks{&fast, &slow};
  relay::Relay relay(4);
  relay.connect(relay::group("src", src), relay::group("sinks", sinks));
  relay.restart("src");
  relay.start();
  // Nearly every number goes to the fast one; the last few may go to the
  // slow one when the fast one's credit is late (a loaded machine).
  EXPECT_GE(shm.at(1).load(), 290);
  EXPECT_LE(shm.at(2).load(), 9);
}

// A sink that dies: what it had not finished is delivered again, so every
// number is put at least once.
TEST_F(SupervisionTest, RestartedSinkGetsWhatItHadNotFinished) {
  SharedBlock shm;
  relay::Queue out;
  relay::testing::Counter src(0, 2000);
  class FlakySink : public relay::Actor {
   public:
    FlakySink(SharedBlock& shm, relay::Queue& q) : shm_(shm), q_(q) {}
    void recv(const relay::Message& m) override {
      const long long v = m.get<long long>(0);
      if (v == 999 && shm_.at(0).fetch_add(1) == 0) ::raise(SIGSEGV);
      q_.put(v);
    }

   private:
    SharedBlock& shm_;
    relay::Queue& q_;
  } sink(shm, out);
  relay::Relay relay;
  relay.connect(src, relay::group("sink", sink));
  relay.restart("sink");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 2000), 0) << "numbers delivered twice";
}

// Killed from outside, twice, by a Handler through Actor::kill().
TEST_F(SupervisionTest, KilledTwiceFromAHandler) {
  SharedBlock shm;
  relay::Queue out;
  class Slow : public relay::Actor {
   public:
    void recv(const relay::Message& m) override {
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      send(m.get<long long>(0));
    }
  };
  relay::testing::Counter src(0, 3000);
  Slow w1, w2;
  std::vector<relay::Actor*> work{&w1, &w2};
  Collector sink(out);
  relay::Relay relay(40);
  relay.connect(src, relay::group("work", work), sink);
  relay.restart("work", relay::Restart{.max_restarts = 5});
  Killer killer;
  killer.victim = &w1;
  relay.start(killer);
  ASSERT_EQ(killer.pids.size(), 2u);
  EXPECT_NE(killer.pids[0], killer.pids[1]);
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 3000), 0) << "numbers delivered twice";
}

// Killed before the start barrier (before every actor said hello): the
// successor takes the predecessor's place in the barrier, and the run
// starts. (Before, the barrier waited for a hello that never came.)
TEST_F(SupervisionTest, KilledBeforeTheStartBarrier) {
  relay::Queue out;
  relay::testing::Counter src(0, 500);
  relay::testing::Forward w;
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(src, relay::group("work", w), sink);
  relay.restart("work");
  Killer killer;
  killer.victim = &w;
  killer.times = 1;
  killer.every = std::chrono::milliseconds(0);
  relay.start(killer);
  ASSERT_EQ(killer.pids.size(), 1u);
  EXPECT_NE(w.pid(), std::optional<int>(killer.pids[0]));
  EXPECT_EQ(ExpectEveryNumber(Arrivals(out), 500), 0) << "numbers delivered twice";
}

// by_key: the restarted actor keeps its position, so its keys stay with it.
TEST_F(SupervisionTest, ByKeyActorKeepsItsKeys) {
  SharedBlock shm;
  relay::Queue out;
  class Keyed : public relay::Actor {
   public:
    Keyed(SharedBlock& shm, relay::Queue& q) : shm_(shm), q_(q) {}
    void recv(const relay::Message& m) override {
      const long long v = m.get<long long>(0);
      if (v == 777 && shm_.at(0).fetch_add(1) == 0) std::abort();
      q_.put(v, v % 10, name());
    }

   private:
    SharedBlock& shm_;
    relay::Queue& q_;
  };
  class KeySource : public relay::Actor {
    void loop() override {
      for (long long i = 0; i < 2000; ++i) send(i, i % 10);
    }
  } src;
  Keyed k1(shm, out), k2(shm, out), k3(shm, out);
  std::vector<relay::Actor*> keyed{&k1, &k2, &k3};
  relay::Relay relay(30);
  relay.connect(src, relay::by_key(relay::group("count", keyed), 1));
  relay.restart("count");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);
  std::map<long long, std::set<std::string>> owners;
  std::map<long long, int> seen;
  while (auto m = out.get_nowait()) {
    const auto [v, key, who] = m->as<long long, long long, std::string>();
    owners[key].insert(who);
    ++seen[v];
  }
  EXPECT_EQ(ExpectEveryNumber(seen, 2000), 0) << "numbers delivered twice";
  ASSERT_EQ(owners.size(), 10u);
  for (const auto& [key, who] : owners) EXPECT_EQ(who.size(), 1u) << "key " << key;
}

// A message whose recv() fails every time becomes a dead letter after
// `attempts` deliveries: [group, reason, values...]; the run goes on.
//
// With a supervised sender (PoisonFromSupervisedSender), the frames carry an
// origin between the seq header and the message, and the dead letter is
// still the message's own values (it was the origin's bytes read as
// msgpack before).
class PoisonFrom : public SupervisionTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PoisonFrom, PoisonMessageGoesToDeadLetters) {
  const bool supervised_sender = GetParam();
  SharedBlock shm;
  relay::Queue out;
  relay::Queue dead;
  relay::testing::Counter src(0, 1000);
  relay::testing::Forward fw;
  Flaky w1(shm, 13, Kind::kThrow, /*always=*/true);
  Flaky w2(shm, 13, Kind::kThrow, /*always=*/true);
  std::vector<relay::Actor*> work{&w1, &w2};
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(src, relay::group("fw", fw), relay::group("work", work), sink);
  if (supervised_sender) relay.restart("fw");
  relay.restart("work", relay::Restart{.max_restarts = 5, .attempts = 3, .dead_letters = &dead});
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 3);  // three attempts
  auto letter = dead.get_nowait();
  ASSERT_TRUE(letter.has_value());
  const auto [group, reason, value] = letter->as<std::string, std::string, long long>();
  EXPECT_EQ(group, "work");
  EXPECT_THAT(reason, HasSubstr("boom on purpose"));
  EXPECT_EQ(value, 13);
  EXPECT_FALSE(dead.get_nowait().has_value());
  std::map<long long, int> seen = Arrivals(out);
  EXPECT_EQ(seen.count(13), 0u);
  seen[13] = 1;
  EXPECT_EQ(ExpectEveryNumber(seen, 1000), 0) << "numbers delivered twice";
}

INSTANTIATE_TEST_SUITE_P(Supervision, PoisonFrom, ::testing::Bool(), [](const auto& info) {
  return info.param ? "SupervisedSender" : "UnsupervisedSender";
});

// Without dead letters, the poison message stops the run, named.
TEST_F(SupervisionTest, PoisonMessageWithoutDeadLettersFailsTheRun) {
  SharedBlock shm;
  relay::Queue out;
  relay::testing::Counter src(0, 500);
  Flaky w(shm, 42, Kind::kAbort, /*always=*/true);
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(src, relay::group("work", w), sink);
  relay.restart("work", relay::Restart{.max_restarts = 10, .attempts = 2});
  const std::string what = relay::testing::StartError<relay::ActorError>(relay);
  EXPECT_EQ(shm.at(0).load(), 2);
  EXPECT_THAT(what, HasSubstr("recv() failed 2 time(s) on the message [42]"));
  EXPECT_THAT(what, HasSubstr("no dead_letters"));
}

// More than max_restarts failures within `within` stop the run, listing
// every failure.
TEST_F(SupervisionTest, RestartLimitStopsTheRun) {
  SharedBlock shm;
  relay::Queue out;
  class AlwaysFails : public relay::Actor {
   public:
    explicit AlwaysFails(SharedBlock& shm) : shm_(shm) {}
    void recv(const relay::Message&) override {
      shm_.at(0).fetch_add(1);
      throw std::runtime_error("failure number " + std::to_string(shm_.at(0).load()));
    }

   private:
    SharedBlock& shm_;
  } w(shm);
  relay::testing::Counter src(0, 100);
  relay::Relay relay(10);
  relay.connect(src, relay::group("work", w));
  relay.restart("work", relay::Restart{.max_restarts = 2, .attempts = 100});
  try {
    relay.start();
    ADD_FAILURE() << "start() returned";
  } catch (const relay::ActorError& e) {
    EXPECT_EQ(shm.at(0).load(), 3);
    ASSERT_EQ(e.failures().size(), 3u) << e.what();
    EXPECT_THAT(e.failures()[0].reason, HasSubstr("failure number 1"));
    EXPECT_THAT(e.failures()[1].reason, HasSubstr("failure number 2"));
    EXPECT_THAT(e.failures()[2].reason, HasSubstr("failure number 3"));
    EXPECT_THAT(e.what(), HasSubstr("more than its max_restarts (2)"));
  }
}

// An unsupervised group's failure still stops the run, even with another
// group supervised.
TEST_F(SupervisionTest, UnsupervisedFailureStillStopsTheRun) {
  SharedBlock shm;
  relay::Queue out;
  relay::testing::Counter src(0, 1000);
  relay::testing::Forward f;
  Flaky w(shm, 10, Kind::kThrow);
  Collector sink(out);
  relay::Relay relay(10);
  relay.connect(src, relay::group("fw", f), relay::group("work", w), sink);
  relay.restart("fw");
  const std::string what = relay::testing::StartError<relay::ActorError>(relay);
  EXPECT_THAT(what, HasSubstr("boom on purpose"));
  EXPECT_EQ(shm.at(0).load(), 1);
}

// Fails (throws) from startup() or from shutdown() in its first
// incarnation only; forwards every number, and from shutdown() sends
// -1 - its position, so that a send made outside recv() is counted too.
// Shared cells: 0 startup failures, 1 shutdown failures.
class FailsInAHook : public relay::Actor {
 public:
  FailsInAHook(SharedBlock& shm, bool in_startup, long long position)
      : shm_(shm), in_startup_(in_startup), position_(position) {}
  void startup() override {
    if (in_startup_ && shm_.at(0).fetch_add(1) == 0) throw std::runtime_error("startup boom");
  }
  void recv(const relay::Message& m) override { send(m.get<long long>(0)); }
  void shutdown() override {
    send(-1 - position_);
    if (!in_startup_ && shm_.at(1).fetch_add(1) == 0) throw std::runtime_error("shutdown boom");
  }

 private:
  SharedBlock& shm_;
  bool in_startup_;
  long long position_;
};

class HookFailures : public SupervisionTest, public ::testing::WithParamInterface<bool> {};

// A supervised actor whose startup() or shutdown() throws is started again
// (startup() runs again) and the run ends normally: every number once, and
// each actor's send from shutdown() once, though the failed shutdown() had
// made it already.
TEST_P(HookFailures, HookThatThrowsIsRestartedAndEachSendArrivesOnce) {
  const bool in_startup = GetParam();
  SharedBlock shm;
  constexpr long long kN = 2000;
  relay::Queue out;
  FailsInAHook a(shm, in_startup, 0);
  FailsInAHook b(shm, in_startup, 1);
  RunSupervisedPair(a, b, out, kN, 20);
  // Each hook ran once per incarnation: the failed one and its successor's.
  if (in_startup) {
    EXPECT_EQ(shm.at(0).load(), 3) << "startup() of 2 actors, one of them twice";
  } else {
    EXPECT_EQ(shm.at(1).load(), 3) << "shutdown() of 2 actors, one of them twice";
  }
  std::map<long long, int> seen = Arrivals(out);
  for (const long long marker : {-1LL, -2LL}) {
    EXPECT_EQ(seen[marker], 1) << "shutdown()'s send " << marker;
    seen.erase(marker);
  }
  EXPECT_EQ(ExpectEveryNumber(seen, kN), 0) << "numbers delivered twice";
}

INSTANTIATE_TEST_SUITE_P(Supervision, HookFailures, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Startup" : "Shutdown"; });

// restart() refuses what it cannot do.
TEST_F(SupervisionTest, RestartRefusesBadArguments) {
  relay::testing::Counter src(0, 1);
  relay::testing::Forward f;
  relay::Relay relay;
  EXPECT_THROW(relay.restart("x"), std::invalid_argument);  // before connect()
  relay.connect(src, relay::group("f", f));
  EXPECT_THROW(relay.restart("nope"), std::invalid_argument);
  EXPECT_THROW(relay.restart("f", relay::Restart{.max_restarts = 0}), std::invalid_argument);
  EXPECT_THROW(relay.restart("f", relay::Restart{.attempts = 0}), std::invalid_argument);
}

}  // namespace
