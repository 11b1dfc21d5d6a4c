// send(const Message&): a received message passed on as it is (issue 12
// point 2). Small and large messages, every grouping, a named output, a
// message kept past recv(), and a supervised forwarder that crashes: every
// message arrives once, with every byte as the source sent it.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "relay/relay.h"
#include "tests/testing.h"

namespace {

using relay::testing::ProcessTest;
using relay::testing::SharedBlock;

class ForwardTest : public ProcessTest {};

// Message i's bytes: a pattern only i makes, `size` bytes long.
std::string Pattern(long long i, std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t k = 0; k < size; ++k) s[k] = static_cast<char>((i * 131 + k * 7) & 0xff);
  return s;
}

// Sends [i, "tag-i", Pattern(i, size)] for i in 0..n-1.
class Source : public relay::Actor {
 public:
  Source(long long n, std::size_t size) : n_(n), size_(size) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) send(i, "tag-" + std::to_string(i), Pattern(i, size_));
  }

 private:
  long long n_;
  std::size_t size_;
};

// Passes every message on with send(m); odd numbers to the output "odd"
// when `split`. With `keep_last`, keeps the last message past recv() and
// passes it on once more from shutdown() (its frame is gone by then).
class Forwarder : public relay::Actor {
 public:
  explicit Forwarder(bool split = false, bool keep_last = false, SharedBlock* crash = nullptr,
                     long long crash_on = -1)
      : split_(split), keep_last_(keep_last), crash_(crash), crash_on_(crash_on) {}
  void recv(const relay::Message& m) override {
    if (crash_ != nullptr && m.get<long long>(0) == crash_on_ && crash_->at(0).fetch_add(1) == 0) {
      send(m);  // sent, then dead before recv() returns: its successor sends it again
      std::abort();
    }
    if (split_ && m.get<long long>(0) % 2 != 0) {
      send_to("odd", m);
    } else {
      send(m);
    }
    if (keep_last_) kept_ = m;
  }
  void shutdown() override {
    if (kept_) send(*kept_);
  }

 private:
  bool split_;
  bool keep_last_;
  SharedBlock* crash_;
  long long crash_on_;
  std::optional<relay::Message> kept_;
};

// Checks each message's bytes; puts [label, i] for every good one, and
// [label, -1 - i] for one whose tag or pattern is wrong.
class Checker : public relay::Actor {
 public:
  Checker(relay::Queue& q, std::size_t size, std::string label)
      : q_(q), size_(size), label_(std::move(label)) {}
  void recv(const relay::Message& m) override {
    const auto [i, tag, bytes] = m.as<long long, std::string, std::string>();
    const bool good = tag == "tag-" + std::to_string(i) && bytes == Pattern(i, size_);
    q_.put(label_, good ? i : -1 - i);
  }

 private:
  relay::Queue& q_;
  std::size_t size_;
  std::string label_;
};

// name -> number -> how often it arrived intact; fails on a damaged one.
std::map<std::string, std::map<long long, int>> Arrivals(relay::Queue& q) {
  std::map<std::string, std::map<long long, int>> seen;
  while (auto m = q.get_nowait()) {
    const auto [name, i] = m->as<std::string, long long>();
    if (i < 0) {
      ADD_FAILURE() << name << " got message " << -1 - i << " damaged";
      continue;
    }
    ++seen[name][i];
  }
  return seen;
}

void ExpectEachOnce(const std::map<long long, int>& seen, long long n, const std::string& who) {
  EXPECT_EQ(static_cast<long long>(seen.size()), n) << who << ": numbers missing";
  for (const auto& [i, times] : seen) EXPECT_EQ(times, 1) << who << ": number " << i;
}

class ForwardSizes : public ForwardTest, public ::testing::WithParamInterface<std::size_t> {};

// 1-2-1 round robin, then a broadcast to two checkers: small messages (the
// bytes copied into a frame) and large ones (the received frame shared).
TEST_P(ForwardSizes, EveryMessageArrivesIntactOnceOverEveryGrouping) {
  const std::size_t size = GetParam();
  constexpr long long kN = 400;
  relay::Queue out;
  Source src(kN, size);
  Forwarder f1, f2, mid;
  std::vector<relay::Actor*> fs{&f1, &f2};
  Checker c1(out, size, "c1"), c2(out, size, "c2");
  std::vector<relay::Actor*> checkers{&c1, &c2};
  relay::Relay relay(20);
  relay.connect(relay::group("src", src), relay::group("fwd", fs), relay::group("mid", mid),
                relay::broadcast(relay::group("check", checkers)));
  relay.start();
  const auto seen = Arrivals(out);
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& [name, numbers] : seen) ExpectEachOnce(numbers, kN, name);
}

INSTANTIATE_TEST_SUITE_P(Forward, ForwardSizes, ::testing::Values(16, 4096, 300000),
                         [](const auto& info) { return std::to_string(info.param) + "B"; });

// by_key after a forward: the key is read from the forwarded bytes, so each
// number reaches the checker its key names (always the same one) once.
TEST_F(ForwardTest, ByKeyReadsTheKeyOfTheForwardedMessage) {
  constexpr long long kN = 300;
  relay::Queue out;
  Source src(kN, 2048);
  Forwarder f;
  Checker c1(out, 2048, "c1"), c2(out, 2048, "c2"), c3(out, 2048, "c3");
  std::vector<relay::Actor*> checkers{&c1, &c2, &c3};
  relay::Relay relay(20);
  relay.connect(relay::group("src", src), relay::group("fwd", f),
                relay::by_key(relay::group("check", checkers)));
  relay.start();
  std::map<long long, int> all;
  for (const auto& [name, numbers] : Arrivals(out)) {
    for (const auto& [i, times] : numbers) all[i] += times;
  }
  ExpectEachOnce(all, kN, "by_key");
}

// send_to(output, m): odd numbers to "odd", even ones to the default output.
TEST_F(ForwardTest, SendToPassesToTheNamedOutput) {
  constexpr long long kN = 200;
  relay::Queue out;
  Source src(kN, 1500);
  Forwarder f(/*split=*/true);
  Checker even(out, 1500, "even"), odd(out, 1500, "odd");
  relay::Relay relay(20);
  relay.connect(relay::group("src", src), relay::group("fwd", f), relay::group("even", even));
  relay.connect(relay::output("fwd", "odd"), relay::group("odd", odd));
  relay.start();
  const auto seen = Arrivals(out);
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& [name, numbers] : seen) {
    EXPECT_EQ(numbers.size(), static_cast<std::size_t>(kN / 2)) << name;
    for (const auto& [i, times] : numbers) {
      EXPECT_EQ(times, 1) << name << " " << i;
      EXPECT_EQ(i % 2 != 0, name == "odd") << name << " got " << i;
    }
  }
}

// A small message kept past recv() (its frame is gone) and a large one are
// passed on again from shutdown(): they arrive intact, twice in all.
TEST_F(ForwardTest, MessageKeptPastRecvIsPassedOnIntact) {
  for (const std::size_t size : {std::size_t{16}, std::size_t{5000}}) {
    relay::Queue out;
    Source src(50, size);
    Forwarder f(/*split=*/false, /*keep_last=*/true);
    Checker c(out, size, "c");
    relay::Relay relay(20);
    relay.connect(relay::group("src", src), relay::group("fwd", f), relay::group("check", c));
    relay.start();
    const auto seen = Arrivals(out);
    ASSERT_EQ(seen.size(), 1u) << size;
    const std::map<long long, int>& numbers = seen.begin()->second;
    EXPECT_EQ(numbers.size(), 50u) << size;
    for (const auto& [i, times] : numbers) EXPECT_EQ(times, i == 49 ? 2 : 1) << size << " " << i;
  }
}

// A supervised forwarder (origins added: its frames are copied) that dies
// right after forwarding one: its successor forwards it again, and each
// message reaches the checker once.
TEST_F(ForwardTest, SupervisedForwarderThatCrashesDeliversEachOnce) {
  SharedBlock shm;
  constexpr long long kN = 300;
  relay::Queue out;
  Source src(kN, 3000);
  Forwarder f(false, false, &shm, 123);
  Checker c(out, 3000, "c");
  relay::Relay relay(20);
  relay.connect(relay::group("src", src), relay::group("fwd", f), relay::group("check", c));
  relay.restart("fwd");
  relay.start();
  EXPECT_EQ(shm.at(0).load(), 2) << "the forwarder should have died once and run 123 again";
  const auto seen = Arrivals(out);
  ASSERT_EQ(seen.size(), 1u);
  ExpectEachOnce(seen.begin()->second, kN, "check");
}

// From a supervised sender, frames carry an origin ('O' frames, a 29-byte
// header): an unsupervised forwarder sends them on as they came, as plain
// data frames, and every byte arrives.
TEST_F(ForwardTest, FramesFromASupervisedSenderAreForwardedIntact) {
  for (const std::size_t size : {std::size_t{16}, std::size_t{4096}}) {
    constexpr long long kN = 200;
    relay::Queue out;
    Source src(kN, size);
    Forwarder first, second;
    Checker c(out, size, "c");
    relay::Relay relay(20);
    relay.connect(relay::group("src", src), relay::group("first", first),
                  relay::group("second", second), relay::group("check", c));
    relay.restart("first");
    relay.start();
    const auto seen = Arrivals(out);
    ASSERT_EQ(seen.size(), 1u) << size;
    ExpectEachOnce(seen.begin()->second, kN, "check " + std::to_string(size));
  }
}

// An empty Message (default-constructed) goes out as a message of no values.
class SendsEmpty : public relay::Actor {
 public:
  void loop() override { send(relay::Message()); }
};
class CountsValues : public relay::Actor {
 public:
  explicit CountsValues(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { q_.put(static_cast<long long>(m.size())); }

 private:
  relay::Queue& q_;
};

TEST_F(ForwardTest, EmptyMessageGoesOutWithNoValues) {
  relay::Queue out;
  SendsEmpty src;
  CountsValues sink(out);
  relay::Relay relay;
  relay.connect(src, sink);
  relay.start();
  const auto m = out.get_nowait();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->get<long long>(0), 0);
  EXPECT_FALSE(out.get_nowait().has_value());
}

// Outside its process, send(m) says where it works.
TEST_F(ForwardTest, OutsideItsProcessSendThrows) {
  relay::Queue q;
  q.put(1LL);
  const auto m = q.get_nowait();
  ASSERT_TRUE(m.has_value());
  struct Probe : relay::Actor {
    void probe(const relay::Message& msg) { send(msg); }
  } probe;
  EXPECT_THROW(probe.probe(*m), relay::Error);
}

}  // namespace
