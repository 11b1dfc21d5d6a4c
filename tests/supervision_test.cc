// Supervision (Relay::restart()): failed actors are started again, what they
// had not finished is delivered again, poison messages become dead letters,
// and the limits stop the run. Real processes; every test checks what
// reached the end, and (ProcessTest) that nothing is left behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
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

class RestartKinds : public SupervisionTest, public ::testing::WithParamInterface<Kind> {};

// A middle actor dies inside recv() (every kind of death): it is started
// again, the message it died on and everything it had not finished are
// delivered again, and every number reaches the sink.
TEST_P(RestartKinds, MiddleActorIsRestartedAndNothingIsLost) {
  SharedBlock shm;
  constexpr long long kN = 3000;
  relay::Queue out;
  relay::testing::Counter src(0, kN);
  Flaky a(shm, 1234, GetParam());
  Flaky b(shm, 1234, GetParam());
  std::vector<relay::Actor*> work{&a, &b};
  Collector sink(out);
  relay::Relay relay(50);
  relay.connect(src, relay::group("work", work), relay::group("sink", sink));
  relay.restart("work");
  relay.start();
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

// A source that dies in loop() runs loop() again from the start: every
// number arrives, those before the failure possibly twice (at least once).
class FlakySource : public relay::Actor {
 public:
  FlakySource(SharedBlock& shm, long long n, long long at) : shm_(shm), n_(n), at_(at) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) {
      if (i == at_ && shm_.at(0).fetch_add(1) == 0) std::abort();
      send(i);
    }
  }

 private:
  SharedBlock& shm_;
  long long n_;
  long long at_;
};

TEST_F(SupervisionTest, RestartedSourceRunsLoopAgain) {
  SharedBlock shm;
  relay::Queue out;
  FlakySource src(shm, 2000, 700);
  relay::testing::Forward f1, f2;
  std::vector<relay::Actor*> fw{&f1, &f2};
  Collector sink(out);
  relay::Relay relay(30);
  relay.connect(relay::group("src", src), fw, sink);
  relay.restart("src");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2);  // failed once, then passed the point
  ExpectEveryNumber(Arrivals(out), 2000);
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
  struct Killer : relay::Handler {
    relay::Actor* victim = nullptr;
    std::vector<int> pids;
    void run() override {
      for (int round = 0; round < 2; ++round) {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        // Wait (bounded) for a live process of the victim that is not one we killed.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
          const auto pid = victim->pid();
          if (pid && victim->is_alive() &&
              std::find(pids.begin(), pids.end(), *pid) == pids.end()) {
            pids.push_back(*pid);
            victim->kill();
            break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
    }
  } killer;
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
  struct Killer : relay::Handler {
    relay::Actor* victim = nullptr;
    std::optional<int> killed;
    void run() override {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!killed && std::chrono::steady_clock::now() < deadline) {
        if (victim->pid() && victim->is_alive()) {
          killed = victim->pid();
          victim->kill();
        }
      }
    }
  } killer;
  killer.victim = &w;
  relay.start(killer);
  ASSERT_TRUE(killer.killed.has_value());
  EXPECT_NE(w.pid(), killer.killed);
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
TEST_F(SupervisionTest, PoisonMessageGoesToDeadLetters) {
  SharedBlock shm;
  relay::Queue out;
  relay::Queue dead;
  relay::testing::Counter src(0, 1000);
  Flaky w1(shm, 13, Kind::kThrow, /*always=*/true);
  Flaky w2(shm, 13, Kind::kThrow, /*always=*/true);
  std::vector<relay::Actor*> work{&w1, &w2};
  Collector sink(out);
  relay::Relay relay(20);
  relay.connect(src, relay::group("work", work), sink);
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
