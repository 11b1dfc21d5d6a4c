// Every kind of actor failure, in every position, is reported fast, names the
// actor, and leaves nothing behind (issue "Never hang, never lose").
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
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

enum class Kind { kThrow, kExit, kAbort, kSegv, kKillFromOutside };
enum class Hook { kStartup, kWork, kShutdown };  // kWork: loop() or recv()
enum class Position { kSource, kMiddle, kSink };

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
    case Kind::kKillFromOutside:
      return "KillFromOutside";
  }
  return "";
}

long long NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Cell 0: failure time (ns). Cell 1: pid of the victim, for the handler.
struct Plan {
  Kind kind;
  Hook hook;
  SharedBlock* shm;
};

[[gnu::noinline]] void Fail(const Plan& p) {
  p.shm->at(0).store(NowNs());
  switch (p.kind) {
    case Kind::kThrow:
      throw std::runtime_error("boom in the actor");
    case Kind::kExit:
      std::exit(3);
    case Kind::kAbort:
      std::abort();
    case Kind::kSegv:
      ::raise(SIGSEGV);
      break;
    case Kind::kKillFromOutside:
      // The handler in the main process kills this pid with SIGKILL.
      p.shm->at(1).store(::getpid());
      for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// An actor that fails as planned if `armed`, and otherwise works: a source
// sends forever (until stopped), a middle actor forwards, a sink swallows.
class Victim : public relay::Actor {
 public:
  Victim(Plan plan, bool armed) : plan_(plan), armed_(armed) {}
  void startup() override {
    if (armed_ && plan_.hook == Hook::kStartup) Fail(plan_);
  }
  void loop() override {
    if (receiver()) {
      relay::Actor::loop();
      return;
    }
    for (long long i = 0;; ++i) {
      if (armed_ && plan_.hook == Hook::kWork && i == 100) Fail(plan_);
      if (armed_ && plan_.hook == Hook::kShutdown && i == 100) return;
      send(i);
    }
  }
  void recv(const relay::Message& m) override {
    if (armed_ && plan_.hook == Hook::kWork && ++seen_ == 50) Fail(plan_);
    if (sender()) send(m.get<long long>(0));
  }
  void shutdown() override {
    if (armed_ && plan_.hook == Hook::kShutdown) Fail(plan_);
  }

 private:
  Plan plan_;
  bool armed_;
  long long seen_ = 0;
};

// A source that ends after 1000 messages (for when the source is not the
// victim: shutdown failures downstream need the stream to end).
class Finite : public relay::Actor {
 public:
  void loop() override {
    for (long long i = 0; i < 1000; ++i) send(i);
  }
};

class Killer : public relay::Handler {
 public:
  explicit Killer(SharedBlock& shm) : shm_(shm) {}
  void run() override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (shm_.at(1).load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (shm_.at(1).load() != 0) ::kill(static_cast<pid_t>(shm_.at(1).load()), SIGKILL);
  }

 private:
  SharedBlock& shm_;
};

using Param = std::tuple<Kind, Hook, Position>;

class FailureTest : public ProcessTest, public ::testing::WithParamInterface<Param> {};

TEST_P(FailureTest, ReportedWithinTwoSecondsAndNothingLeft) {
  const auto [kind, hook, position] = GetParam();
  SharedBlock shm;
  const Plan plan{kind, hook, &shm};
  // 1 source -> 3 middle -> 1 sink; the victim is the source, middle #1 or
  // the sink.
  Victim source(plan, position == Position::kSource);
  Finite finite;
  std::vector<std::unique_ptr<Victim>> middle;
  for (int i = 0; i < 3; ++i) {
    middle.push_back(std::make_unique<Victim>(plan, position == Position::kMiddle && i == 1));
  }
  Victim sink(plan, position == Position::kSink);
  relay::Actor& victim = position == Position::kSource   ? static_cast<relay::Actor&>(source)
                         : position == Position::kMiddle ? *middle[1]
                                                         : sink;
  relay::Relay relay(16);
  // A looping source never ends its stream; use a finite one unless the
  // source itself is the victim.
  if (position == Position::kSource) {
    relay.connect(source, relay::group("mid", middle), relay::group("sink", sink));
  } else {
    relay.connect(finite, relay::group("mid", middle), relay::group("sink", sink));
  }
  Killer killer(shm);
  std::string what;
  try {
    if (kind == Kind::kKillFromOutside) {
      relay.start(&killer);
    } else {
      relay.start();
    }
    FAIL() << "start() returned normally";
  } catch (const relay::ActorError& e) {
    what = e.what();
    const long long elapsed_ms = (NowNs() - shm.at(0).load()) / 1000000;
    EXPECT_LE(elapsed_ms, 2000) << "reported " << elapsed_ms << " ms after the failure";
    ASSERT_EQ(e.failures().size(), 1u) << what;
    EXPECT_EQ(e.failures()[0].name, victim.name());
    EXPECT_EQ(e.failures()[0].group, victim.group());
    EXPECT_EQ(e.failures()[0].pid, victim.pid().value_or(-1));
  }
  EXPECT_THAT(what, HasSubstr("[" + victim.group() + "] (" + victim.name() + ") pid " +
                              std::to_string(victim.pid().value_or(-1))));
  switch (kind) {
    case Kind::kThrow:
      EXPECT_THAT(what, HasSubstr("std::runtime_error: boom in the actor"));
      break;
    case Kind::kExit:
      EXPECT_THAT(what, HasSubstr("exited with status 3 before the end of its stream"));
      break;
    case Kind::kAbort:
      EXPECT_THAT(what, HasSubstr("killed by SIGABRT"));
      break;
    case Kind::kSegv:
      EXPECT_THAT(what, HasSubstr("killed by SIGSEGV"));
      break;
    case Kind::kKillFromOutside:
      EXPECT_THAT(what, HasSubstr("killed by SIGKILL"));
      break;
  }
  // Every actor process has been reaped by the time start() throws.
  for (relay::Actor* a : std::vector<relay::Actor*>{&source, &finite, &sink}) {
    if (a->pid()) {
      EXPECT_FALSE(a->is_alive()) << a->name();
    }
  }
  for (auto& m : middle) EXPECT_FALSE(m->is_alive());
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  const auto [kind, hook, position] = info.param;
  static const char* kHooks[] = {"Startup", "Work", "Shutdown"};
  static const char* kPositions[] = {"Source", "Middle", "Sink"};
  return KindName(kind) + "In" + kHooks[static_cast<int>(hook)] + "Of" +
         kPositions[static_cast<int>(position)];
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, FailureTest,
    ::testing::Combine(::testing::Values(Kind::kThrow, Kind::kExit, Kind::kAbort, Kind::kSegv,
                                         Kind::kKillFromOutside),
                       ::testing::Values(Hook::kStartup, Hook::kWork, Hook::kShutdown),
                       ::testing::Values(Position::kSource, Position::kMiddle, Position::kSink)),
    ParamName);

// A recv() reading a message as the wrong types is that actor's failure, and
// the error names the expected and the actual wire types.
class SendsText : public relay::Actor {
 public:
  void loop() override { send(std::string("not a number")); }
};
class WantsInt : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { (void)m.get<int>(0); }
};

using ErrorTest = ProcessTest;

TEST_F(ErrorTest, WrongTypeInRecvIsTheActorsFailure) {
  SendsText source;
  WantsInt sink;
  relay::Relay relay;
  relay.connect(source, relay::group("typed", sink));
  const std::string what = relay::testing::StartError<relay::ActorError>(relay);
  EXPECT_THAT(what, HasSubstr("[typed] (WantsInt-0)"));
  EXPECT_THAT(what, HasSubstr("relay::TypeError: value 0: expected int, got str"));
}

class Plain : public relay::Actor {
 public:
  void loop() override {}
};
class Sink : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// A receiver that overrides loop() and returns without receiving would leave
// its senders waiting for ever: it is reported as that actor's failure.
class Deaf : public relay::Actor {
 public:
  void loop() override {}
  void recv(const relay::Message&) override {}
};

TEST_F(ErrorTest, ReceiverReturningBeforeEndOfStreamFails) {
  class Some : public relay::Actor {
   public:
    void loop() override {
      for (int i = 0; i < 10; ++i) send(i);
    }
  } source;
  Deaf sink;
  relay::Relay relay;
  relay.connect(source, sink);
  const std::string what = relay::testing::StartError<relay::ActorError>(relay);
  EXPECT_THAT(what, HasSubstr("(Deaf-0)"));
  EXPECT_THAT(what, HasSubstr("returned from loop() before the end of its stream"));
}

TEST_F(ErrorTest, FewerThanTwoGroups) {
  Plain a;
  relay::Relay relay;
  try {
    relay.connect(a);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("at least two groups"));
  }
}

TEST_F(ErrorTest, EmptyGroup) {
  Plain a;
  std::vector<Plain*> none;
  relay::Relay relay;
  try {
    relay.connect(a, relay::group("prep", none));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("group 'prep' is empty"));
  }
}

TEST_F(ErrorTest, ActorInTwoPlaces) {
  Plain a, b;
  relay::Relay relay;
  try {
    relay.connect(a, relay::group("g", b, a));
    FAIL();
  } catch (const std::invalid_argument& e) {
    // Named as it is where it was first given (the first of group-0), not as
    // the second place would name it (Plain-1).
    EXPECT_THAT(e.what(), HasSubstr("actor 'Plain-0' is given twice (again in group 'g')"));
  }
}

// An actor wired into a relay that still exists cannot join another...
TEST_F(ErrorTest, ActorInALiveRelayIsRefusedNamingIt) {
  Plain a, b, c;
  relay::Relay first;
  first.connect(a, relay::group("second", b));
  relay::Relay other;
  try {
    other.connect(c, b);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("actor 'Plain-0' (group 'group-1') is already in another "
                                    "relay (group 'second')"));
  }
}

// ... but once that relay is gone, the actor can run again in a new one.
TEST_F(ErrorTest, ActorOfADestroyedRelayRunsAgain) {
  relay::Queue q;
  relay::testing::Counter source(1, 50);
  relay::testing::Tally sink(q);
  {
    relay::Relay first;
    first.connect(source, sink);
    first.start();
  }
  relay::Relay second;
  second.connect(source, sink);
  second.start();
  const auto [count, sum] = relay::testing::Collect(q);
  EXPECT_EQ(count, 100);
  EXPECT_EQ(sum, 2 * relay::testing::SumRange(1, 50));
}

class NamedSink : public relay::Actor {
 public:
  explicit NamedSink(std::string name) : relay::Actor(std::move(name)) {}
  void recv(const relay::Message&) override {}
};

TEST_F(ErrorTest, TwoActorsOfAGroupWithOneName) {
  Plain a;
  NamedSink x("x"), y("x");
  relay::Relay relay;
  try {
    relay.connect(a, relay::group("out", x, y));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("two actors of group 'out' are named 'x'"));
  }
}

// The README forbids start() while another thread runs (fork copies only the
// calling thread); it is detected rather than left to corrupt the children.
TEST_F(ErrorTest, StartWithAnotherThreadRunning) {
  Plain a;
  Sink b;
  relay::Relay relay;
  relay.connect(a, b);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread other([&] {
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return done; });
  });
  std::string what;
  try {
    relay.start();
  } catch (const std::invalid_argument& e) {
    what = e.what();
  }
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  other.join();
  // (2 threads, or 3 with ThreadSanitizer's own.)
  EXPECT_THAT(what, HasSubstr("start: this process runs "));
  EXPECT_THAT(what, HasSubstr("fork() copies only the calling thread"));
  EXPECT_FALSE(a.pid().has_value());  // nothing was started
}

// Bad input to place() and listen() is refused at the call, not at start().
TEST_F(ErrorTest, PlaceAndListenCheckAtTheCall) {
  Plain a;
  Sink b;
  relay::Relay relay;
  EXPECT_THAT(
      [&] {
        try {
          relay.place("work", relay::Placement::workers());
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
        return std::string("no error");
      }(),
      HasSubstr("place: connect() the groups first"));
  relay.connect(relay::group("src", a), relay::group("sink", b));
  try {
    relay.place("nope", relay::Placement::workers());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("no group named 'nope' (the groups are 'src', 'sink')"));
  }
  try {
    relay.listen("tcp://*:5555");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("listen: give the address workers reach this host at"));
  }
  EXPECT_THROW(relay.listen("tcp://127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(relay.monitor("tcp://127.0.0.1:"), std::invalid_argument);
}

// RELAY_WORKER in the environment of a program that never calls
// relay::init() does not turn it into a worker: it runs its relay itself.
TEST_F(ErrorTest, EnvironmentAloneMakesNoWorker) {
  ::setenv("RELAY_WORKER", "tcp://127.0.0.1:9", 1);
  relay::Queue q;
  relay::testing::Counter source(1, 10);
  relay::testing::Tally sink(q);
  relay::Relay relay;
  relay.connect(source, sink);
  EXPECT_FALSE(relay::is_worker());
  relay.start();
  ::unsetenv("RELAY_WORKER");
  EXPECT_EQ(relay::testing::Collect(q).first, 10);
}

TEST_F(ErrorTest, StartTwice) {
  Plain a;
  Sink b;
  relay::Relay relay;
  relay.connect(a, b);
  relay.start();
  try {
    relay.start();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("already been started"));
  }
}

TEST_F(ErrorTest, StartBeforeConnect) {
  relay::Relay relay;
  EXPECT_THROW(relay.start(), std::invalid_argument);
}

class NoLoop : public relay::Actor {};
class NoRecv : public relay::Actor {
 public:
  void loop() override {}
};

TEST_F(ErrorTest, SourceMustOverrideLoop) {
  NoLoop source;
  Plain sink;
  relay::Relay relay;
  relay.connect(source, sink);
  try {
    relay.start();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("actor 'NoLoop-0' in group 'group-0' has no inbox"));
    EXPECT_THAT(e.what(), HasSubstr("must override loop()"));
  }
  EXPECT_FALSE(source.pid().has_value());  // nothing was started
}

TEST_F(ErrorTest, ReceiverMustOverrideRecv) {
  Plain source;
  NoRecv sink;
  relay::Relay relay;
  relay.connect(source, relay::group("out", sink));
  try {
    relay.start();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("actor 'NoRecv-0' in group 'out' receives messages"));
  }
}

TEST_F(ErrorTest, ZeroMaxsize) { EXPECT_THROW(relay::Relay(0), std::invalid_argument); }

// A sink sending has no outbox: its failure says so.
class SinkSends : public relay::Actor {
 public:
  void recv(const relay::Message&) override { send(1); }
};

TEST_F(ErrorTest, SendFromLastGroup) {
  class One : public relay::Actor {
   public:
    void loop() override { send(1); }
  } one;
  SinkSends sink;
  relay::Relay relay;
  relay.connect(one, sink);
  EXPECT_THAT(relay::testing::StartError<relay::ActorError>(relay),
              HasSubstr("has no edge from its group's default output (its outputs: none: no edge "
                        "leaves the group)"));
}

// A handler blocked in q.get() is released when an actor fails, and start()
// reports the actor, not the handler.
class Waiter : public relay::Handler {
 public:
  void run() override { (void)q.get(); }
};
class Thrower : public relay::Actor {
 public:
  void loop() override { throw std::logic_error("source broke"); }
};

TEST_F(ErrorTest, HandlerBlockedInGetIsReleasedOnFailure) {
  Waiter handler;
  Thrower source;
  Sink sink;
  relay::Relay relay;
  relay.connect(source, sink);
  EXPECT_THAT(relay::testing::StartError<relay::ActorError>(relay, &handler),
              HasSubstr("std::logic_error: source broke"));
}

// A handler waiting for a message that never comes does not hang the run:
// its get() throws relay::Closed once every actor has ended, and as the run
// ended well, start() returns normally.
class ClosedWaiter : public relay::Handler {
 public:
  void run() override {
    try {
      (void)q.get();
    } catch (const relay::Closed& e) {
      closed = e.what();
      throw;
    }
  }
  std::string closed;
};

TEST_F(ErrorTest, HandlerWaitingForNothingEndsWithTheRun) {
  ClosedWaiter handler;
  Plain source;
  Sink sink;
  relay::Relay relay;
  relay.connect(source, sink);
  relay.start(handler);
  EXPECT_THAT(handler.closed, HasSubstr("would block forever"));
}

}  // namespace
