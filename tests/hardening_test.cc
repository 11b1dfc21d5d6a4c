// Issue 9, "Hardening first": a put that cannot be delivered fails its actor
// instead of waiting for ever, the encoder refuses what the decoder would, a
// lost credit frame is made good, the broker's abort ends an actor whatever
// its code catches, and a bounded queue nobody reads fails its putter.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "relay/internal/codec.h"
#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

// A value nested `levels` arrays deep (a user type with its own adaptor).
struct Deep {
  int levels = 0;
};

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct pack<Deep> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const Deep& d) const {
      for (int i = 0; i < d.levels; ++i) o.pack_array(1);
      o.pack_nil();
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

namespace {

using relay::testing::Collect;
using relay::testing::Counter;
using relay::testing::ProcessTest;
using relay::testing::SharedBlock;
using relay::testing::StartError;
using relay::testing::SumRange;
using relay::testing::Tally;
using ::testing::HasSubstr;
using ::testing::Not;

using HardeningTest = ProcessTest;

class Sink : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// ---- (2) undeliverable puts, and what the encoder refuses ----

// The decoder's nesting limit; the message array is one level, so
// Deep{kDecoderLimit - 1} is as deep as it takes.
constexpr int kDecoderLimit = 64;

TEST(PackMessage, RefusesWhatTheDecoderWould) {
  relay::internal::Buffer ok;
  relay::internal::pack_message(ok, Deep{kDecoderLimit - 1});
  EXPECT_NO_THROW(relay::internal::decode_message(ok.data(), ok.size(), nullptr));

  relay::internal::Buffer deep;
  try {
    relay::internal::pack_message(deep, Deep{kDecoderLimit});
    ADD_FAILURE() << "pack_message took a message the decoder refuses";
  } catch (const relay::EncodeError& e) {
    EXPECT_STREQ(e.what(), "cannot encode message: nested deeper than 64 levels");
  }
  // The same bytes, packed by hand, are what the decoder refuses.
  relay::internal::Buffer raw;
  msgpack::packer<relay::internal::Buffer> pk(raw);
  pk.pack_array(1);
  pk.pack(Deep{kDecoderLimit});
  EXPECT_THROW(relay::internal::decode_message(raw.data(), raw.size(), nullptr),
               relay::EncodeError);

  // Maps count as levels too; long flat messages and large strings pass.
  relay::internal::Buffer maps;
  msgpack::packer<relay::internal::Buffer> mp(maps);
  mp.pack_array(1);
  for (int i = 0; i < 70; ++i) {
    mp.pack_map(1);
    mp.pack(i);
  }
  mp.pack_nil();
  EXPECT_THROW(relay::internal::decode_message(maps.data(), maps.size(), nullptr),
               relay::EncodeError);
  relay::internal::Buffer flat;
  relay::internal::pack_message(flat, std::vector<int>(10000, 7), std::string(100000, 'x'),
                                Deep{10});
  EXPECT_NO_THROW(relay::internal::decode_message(flat.data(), flat.size(), nullptr));
}

// Usual messages are not scanned: their types bound their depth. A type that
// does not (a user adaptor, here) is scanned.
TEST(PackMessage, TypesBoundTheDepthWhereTheyCan) {
  using relay::internal::static_depth_v;
  static_assert(static_depth_v<long long> == 0);
  static_assert(static_depth_v<const std::string&> == 0);
  static_assert(static_depth_v<std::vector<std::map<std::string, std::vector<int>>>> == 3);
  static_assert(static_depth_v<std::tuple<int, std::optional<std::pair<int, int>>>> == 2);
  static_assert(static_depth_v<Deep> == relay::internal::kUnknownDepth);
  static_assert(static_depth_v<std::vector<Deep>> == relay::internal::kUnknownDepth);
  // Packed without a scan, and read back as it was.
  const std::vector<std::map<std::string, std::vector<int>>> value(
      10, {{"numbers", std::vector<int>(20, 5)}});
  relay::internal::Buffer b;
  relay::internal::pack_message(b, value);
  ASSERT_GT(b.size(), relay::internal::kMaxDepth);
  const relay::Message m(relay::internal::decode_message(b.data(), b.size(), nullptr));
  EXPECT_EQ((m.get<std::vector<std::map<std::string, std::vector<int>>>>(0)), value);
}

class DeepPutter : public relay::Actor {
 public:
  explicit DeepPutter(relay::Queue& q) : relay::Actor("deep-putter"), q_(q) {}
  void loop() override {
    q_.put(1);
    q_.put(Deep{100});
  }

 private:
  relay::Queue& q_;
};

// Runs a DeepPutter into `q` and checks that the run fails naming it and the
// depth limit.
void ExpectDeepPutFails(relay::Queue& q) {
  DeepPutter source(q);
  Sink sink;
  relay::Relay relay;
  relay.connect(relay::group("src", source), relay::group("out", sink));
  const std::string what = StartError<relay::ActorError>(relay);
  EXPECT_THAT(what, HasSubstr("(deep-putter)"));
  EXPECT_THAT(what, HasSubstr("cannot encode message: nested deeper than 64 levels"));
}

// A too-deep value put to a bounded queue: the actor fails (EncodeError in
// its own process) and nothing waits for an acknowledgement.
TEST_F(HardeningTest, TooDeepPutToABoundedQueueFailsTheActor) {
  SetWatchdog(std::chrono::seconds(30));
  relay::Queue q(5);
  ExpectDeepPutFails(q);
}

TEST_F(HardeningTest, TooDeepPutToAnUnboundedQueueFailsTheActor) {
  SetWatchdog(std::chrono::seconds(30));
  relay::Queue q;
  ExpectDeepPutFails(q);
  EXPECT_EQ(q.qsize(), 1u);
}

class DeepSender : public relay::Actor {
 public:
  DeepSender() : relay::Actor("deep-sender") {}
  void loop() override {
    send(1);
    send(Deep{100});
  }
};

// send() of a too-deep value throws EncodeError in the sender, rather than
// the receiver dropping the frame (and the run ending in an accounting error).
TEST_F(HardeningTest, TooDeepSendFailsTheActor) {
  SetWatchdog(std::chrono::seconds(30));
  DeepSender source;
  Sink sink;
  relay::Relay relay;
  relay.connect(relay::group("src", source), relay::group("out", sink));
  const std::string what = StartError<relay::ActorError>(relay);
  EXPECT_THAT(what, HasSubstr("(deep-sender)"));
  EXPECT_THAT(what, HasSubstr("relay::EncodeError: cannot encode message: nested deeper than 64"));
}

// Puts to a queue the main process no longer holds (it destroyed it during the
// run; the actor's copy of it lives on in the actor's process).
class LatePutter : public relay::Actor {
 public:
  LatePutter(relay::Queue*& q, SharedBlock& shm) : relay::Actor("late-putter"), q_(q), shm_(shm) {}
  void loop() override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (shm_.at(0).load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    q_->put(1);
    q_->put(2);
  }

 private:
  relay::Queue*& q_;
  SharedBlock& shm_;
};
class DropQueue : public relay::Handler {
 public:
  DropQueue(std::unique_ptr<relay::Queue>& q, SharedBlock& shm) : q_(q), shm_(shm) {}
  void run() override {
    q_.reset();
    shm_.at(0).store(1);
  }

 private:
  std::unique_ptr<relay::Queue>& q_;
  SharedBlock& shm_;
};

class UnknownQueueTest : public ProcessTest, public ::testing::WithParamInterface<bool> {};

TEST_P(UnknownQueueTest, PutToAQueueTheMainProcessDoesNotHoldFailsTheActor) {
  SetWatchdog(std::chrono::seconds(30));
  SharedBlock shm;
  auto owned = GetParam() ? std::make_unique<relay::Queue>(5) : std::make_unique<relay::Queue>();
  relay::Queue* q = owned.get();
  LatePutter source(q, shm);
  Sink sink;
  DropQueue handler(owned, shm);
  relay::Relay relay;
  relay.connect(relay::group("src", source), relay::group("out", sink));
  const std::string what = StartError<relay::ActorError>(relay, &handler);
  EXPECT_THAT(what, HasSubstr("(late-putter)"));
  EXPECT_THAT(what, HasSubstr("Queue::put: the main process holds no queue #"));
  EXPECT_THAT(what, HasSubstr("(it was destroyed, or made in another process)"));
}

INSTANTIATE_TEST_SUITE_P(BoundedOrNot, UnknownQueueTest, ::testing::Bool());

// ---- (9) a bounded queue nobody reads ----

class HundredPuts : public relay::Actor {
 public:
  explicit HundredPuts(relay::Queue& q) : relay::Actor("putter"), q_(q) {}
  void loop() override {
    for (int i = 0; i < 100; ++i) q_.put(i);
  }

 private:
  relay::Queue& q_;
};
class ReturnsAtOnce : public relay::Handler {
 public:
  void run() override {}
};
class ReadsAll : public relay::Handler {
 public:
  explicit ReadsAll(relay::Queue& q) : q_(q) {}
  void run() override {
    for (int i = 0; i < 100; ++i) values.push_back(q_.get().get<int>(0));
  }
  std::vector<int> values;

 private:
  relay::Queue& q_;
};

// A source putting 100 values to a Queue(5), and a sink, wired into a relay
// that runs through the standalone relay-broker at `broker_url` if one is
// given.
struct SmallQueueRun {
  explicit SmallQueueRun(const std::string& broker_url = {}) {
    if (!broker_url.empty()) relay.broker(broker_url);
    relay.connect(relay::group("src", source), relay::group("out", sink));
  }
  relay::Queue small{5};
  HundredPuts source{small};
  Sink sink;
  relay::Relay relay;
};

void ExpectUnreadQueueFailure(const std::string& what, const std::string& why) {
  EXPECT_THAT(what, HasSubstr("(putter)"));
  EXPECT_THAT(what, HasSubstr("Queue::put: queue #"));
  EXPECT_THAT(what, HasSubstr("(maxsize 5) is full and nothing reads it during the run: " + why +
                              "; read it in a Handler's run() (relay.start(handler)), or give "
                              "it a larger maxsize or none"));
}

TEST_F(HardeningTest, BoundedQueueWithoutAHandlerFailsThePutter) {
  SetWatchdog(std::chrono::seconds(30));
  SmallQueueRun run;
  ExpectUnreadQueueFailure(StartError<relay::ActorError>(run.relay),
                           "no Handler was given to start()");
  EXPECT_EQ(run.small.qsize(), 5u);
}

TEST_F(HardeningTest, BoundedQueueAfterTheHandlerReturnedFailsThePutter) {
  SetWatchdog(std::chrono::seconds(30));
  SmallQueueRun run;
  ReturnsAtOnce handler;
  ExpectUnreadQueueFailure(StartError<relay::ActorError>(run.relay, &handler),
                           "the Handler's run() has returned");
  EXPECT_EQ(run.small.qsize(), 5u);
}

TEST_F(HardeningTest, BoundedQueueReadByTheHandlerTakesEveryPut) {
  SetWatchdog(std::chrono::seconds(30));
  SmallQueueRun run;
  ReadsAll handler(run.small);
  run.relay.start(&handler);
  std::vector<int> expected(100);
  for (int i = 0; i < 100; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(handler.values, expected);
}

// ---- (5) a lost credit frame is made good ----

struct CreditCase {
  std::optional<std::size_t> maxsize;
  long long items;
};

class LostCreditTest : public ProcessTest, public ::testing::WithParamInterface<CreditCase> {};

// Every third credit reply is treated as unsent (as if the sender had gone
// away for a moment): counts are still exact, and nothing hangs. Relay(1) has
// no next message to carry the credit: only the receiver's retry can.
TEST_P(LostCreditTest, CountsStayExact) {
  SetWatchdog(std::chrono::seconds(60));
  ::setenv("RELAY_TESTING_DROP_EVERY_NTH_CREDIT", "3", 1);
  relay::Queue q;
  Counter source(0, GetParam().items);
  Tally sink(q);
  relay::Relay relay(GetParam().maxsize);
  relay.connect(source, sink);
  relay.start();
  ::unsetenv("RELAY_TESTING_DROP_EVERY_NTH_CREDIT");
  const auto [count, sum] = Collect(q);
  EXPECT_EQ(count, GetParam().items);
  EXPECT_EQ(sum, SumRange(0, GetParam().items));
}

INSTANTIATE_TEST_SUITE_P(Windows, LostCreditTest,
                         ::testing::Values(CreditCase{4, 3000}, CreditCase{1, 300},
                                           CreditCase{std::nullopt, 30000}));

// An end-of-stream acknowledgement lost the same way (the sender
// reconnecting) is retried: the sender does not wait for it for ever, and
// the run ends well. Before, the sender waited until the broker gave it up as
// a sender that cannot finish its stream. Two senders, so that the receiver
// still has one open when the first acknowledgement is lost.
TEST_F(HardeningTest, LostEndOfStreamAcknowledgementIsRetried) {
  ::setenv("RELAY_TESTING_DROP_FIRST_EOS_ACK", "1", 1);
  relay::Queue q;
  Counter a(0, 500), b(500, 500);
  Tally sink(q);
  relay::Relay relay;
  relay.connect(relay::group("src", a, b), sink);
  relay.start();
  ::unsetenv("RELAY_TESTING_DROP_FIRST_EOS_ACK");
  const auto [count, sum] = Collect(q);
  EXPECT_EQ(count, 1000);
  EXPECT_EQ(sum, SumRange(0, 1000));
}

// ---- (6) the abort ends an actor whatever its code catches ----

class Swallower : public relay::Actor {
 public:
  Swallower() : relay::Actor("swallower") {}
  void startup() override { ::signal(SIGTERM, SIG_IGN); }
  void loop() override {
    for (long long i = 0;; ++i) {
      try {
        send(i);
      } catch (...) {
      }
    }
  }
};
class Failer : public relay::Actor {
 public:
  Failer() : relay::Actor("failer") {}
  void loop() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    throw std::runtime_error("planned failure");
  }
};

TEST_F(HardeningTest, CatchAllInUserCodeDoesNotKeepAnAbortedActorRunning) {
  SetWatchdog(std::chrono::seconds(30));
  Swallower swallower;
  Failer failer;
  Sink sink;
  relay::Relay relay;
  relay.connect(relay::group("src", swallower, failer), relay::group("out", sink));
  try {
    relay.start();
    ADD_FAILURE() << "start() returned normally";
  } catch (const relay::ActorError& e) {
    ASSERT_EQ(e.failures().size(), 1u) << e.what();
    EXPECT_EQ(e.failures()[0].name, "failer");
    EXPECT_THAT(e.what(), HasSubstr("planned failure"));
  }
  EXPECT_EQ(swallower.exitcode(), -SIGTERM);
  EXPECT_EQ(sink.exitcode(), -SIGTERM);
}

// ---- (2) and (9) through a standalone relay-broker: the driver decides ----

// A relay-broker on loopback serving one run, started before the driver.
class StandaloneBroker {
 public:
  StandaloneBroker() {
    // A port the system says is free now (the broker binds it right after).
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot find a free port: " << std::strerror(errno);
    }
    url_ = "tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    if (s >= 0) ::close(s);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const char* argv[] = {"broker/relay-broker",
                            "--listen",
                            url_.c_str(),
                            "--runs",
                            "1",
                            "--level",
                            "warning",
                            nullptr};
      ::execv(argv[0], const_cast<char**>(argv));
      ::_exit(127);
    }
  }
  ~StandaloneBroker() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }
  // The broker's wait status once it has exited (it serves one run), or -1
  // after 10 s.
  int Wait() {
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  std::string url_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// A failed run: the broker exits with status 1.
void ExpectBrokerSawAFailure(StandaloneBroker& broker) {
  const int status = broker.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "wait status " << status;
}

TEST_F(HardeningTest, StandaloneBoundedQueueWithoutAHandlerFailsThePutter) {
  SetWatchdog(std::chrono::seconds(40));
  StandaloneBroker broker;
  SmallQueueRun run(broker.url());
  ExpectUnreadQueueFailure(StartError<relay::ActorError>(run.relay),
                           "no Handler was given to start()");
  EXPECT_EQ(run.small.qsize(), 5u);
  ExpectBrokerSawAFailure(broker);
}

TEST_F(HardeningTest, StandaloneBoundedQueueAfterTheHandlerReturnedFailsThePutter) {
  SetWatchdog(std::chrono::seconds(40));
  StandaloneBroker broker;
  SmallQueueRun run(broker.url());
  ReturnsAtOnce handler;
  ExpectUnreadQueueFailure(StartError<relay::ActorError>(run.relay, &handler),
                           "the Handler's run() has returned");
  ExpectBrokerSawAFailure(broker);
}

TEST_F(HardeningTest, StandaloneBoundedQueueReadByTheHandlerTakesEveryPut) {
  SetWatchdog(std::chrono::seconds(40));
  StandaloneBroker broker;
  SmallQueueRun run(broker.url());
  ReadsAll handler(run.small);
  run.relay.start(&handler);
  std::vector<int> expected(100);
  for (int i = 0; i < 100; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(handler.values, expected);
  const int status = broker.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
}

class StandaloneUnknownQueueTest : public ProcessTest,
                                   public ::testing::WithParamInterface<bool> {};

// Bounded or not, the driver answers the put with an error (qack) and the
// broker fails the actor.
TEST_P(StandaloneUnknownQueueTest, PutToAQueueTheMainProcessDoesNotHoldFailsTheActor) {
  SetWatchdog(std::chrono::seconds(40));
  StandaloneBroker broker;
  SharedBlock shm;
  auto owned = GetParam() ? std::make_unique<relay::Queue>(5) : std::make_unique<relay::Queue>();
  relay::Queue* q = owned.get();
  LatePutter source(q, shm);
  Sink sink;
  DropQueue handler(owned, shm);
  relay::Relay relay;
  relay.broker(broker.url());
  relay.connect(relay::group("src", source), relay::group("out", sink));
  const std::string what = StartError<relay::ActorError>(relay, &handler);
  EXPECT_THAT(what, HasSubstr("(late-putter)"));
  EXPECT_THAT(what, HasSubstr("Queue::put: the main process holds no queue #"));
  ExpectBrokerSawAFailure(broker);
}

INSTANTIATE_TEST_SUITE_P(BoundedOrNot, StandaloneUnknownQueueTest, ::testing::Bool());

// A Handler that throws while an actor waits to put to its full bounded
// queue: start() rethrows the handler's exception. The put, refused once
// run() has returned, is part of the stop, not the putter's failure, which
// would hide the real reason behind an ActorError (found in review).
class GivesUpAtTen : public relay::Handler {
 public:
  explicit GivesUpAtTen(relay::Queue& q) : q_(q) {}
  void run() override {
    for (int i = 0; i < 10; ++i) (void)q_.get();
    // Let the queue fill up again and the putter's next put wait for room.
    for (int i = 0; i < 500 && q_.qsize() < 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    throw std::runtime_error("the handler gave up");
  }

 private:
  relay::Queue& q_;
};

void ExpectTheHandlersError(relay::Relay& relay, relay::Handler& handler) {
  try {
    relay.start(handler);
    ADD_FAILURE() << "start() returned normally";
  } catch (const relay::ActorError& e) {
    ADD_FAILURE() << "an actor was blamed for the handler's error: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "the handler gave up");
  }
}

TEST_F(HardeningTest, HandlerThatThrowsIsTheOutcomeNotThePutterWaitingOnIt) {
  SmallQueueRun run;
  GivesUpAtTen handler(run.small);
  ExpectTheHandlersError(run.relay, handler);
}

TEST_F(HardeningTest, StandaloneHandlerThatThrowsIsTheOutcomeNotThePutterWaitingOnIt) {
  SetWatchdog(std::chrono::seconds(40));
  StandaloneBroker broker;
  SmallQueueRun run(broker.url());
  GivesUpAtTen handler(run.small);
  ExpectTheHandlersError(run.relay, handler);
}

}  // namespace
