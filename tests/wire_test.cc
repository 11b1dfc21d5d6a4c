// The frames a standalone relay-broker and its driver exchange that carry
// more than a few fields: the driver's plan (in its join) and the run's result
// (before the end). Both round-trip, and malformed ones are refused with
// EncodeError rather than half-read.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "broker/broker.h"
#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/plan.h"

namespace {

using relay::EncodeError;
using relay::internal::pack_broker_plan;
using relay::internal::Plan;
using relay::internal::unpack_broker_plan;

Plan ThreeGroups() {
  Plan p;
  p.groups = {{"src", 0, 1}, {"work", 1, 3}, {"sink", 4, 1}};
  p.actors = {{0, 0, "Source-0", "src"},
              {1, 1, "Forwarder-0", "work"},
              {2, 1, "Forwarder-1", "work"},
              {3, 1, "Forwarder-2", "work"},
              {4, 2, "Sink-0", "sink"}};
  p.placement = {std::nullopt, std::string(), std::string(), std::string(), std::nullopt};
  p.placement[2] = "gpu";
  p.expect_workers = 2;
  p.worker_wait = std::chrono::milliseconds(1234);
  return p;
}

template <class T>
std::string Packed(const T& value) {
  relay::internal::Buffer b;
  msgpack::pack(b, value);
  return std::string(b.data(), b.size());
}

TEST(BrokerPlan, RoundTrips) {
  const Plan in = ThreeGroups();
  const std::string bytes = pack_broker_plan(in);
  const Plan out = unpack_broker_plan(bytes.data(), bytes.size());
  ASSERT_EQ(out.groups.size(), 3u);
  EXPECT_EQ(out.groups[1].name, "work");
  EXPECT_EQ(out.groups[1].first, 1u);
  EXPECT_EQ(out.groups[1].size, 3u);
  ASSERT_EQ(out.actors.size(), 5u);
  EXPECT_EQ(out.actors[4].name, "Sink-0");
  EXPECT_EQ(out.actors[4].group_name, "sink");
  EXPECT_FALSE(out.remote(0));
  EXPECT_TRUE(out.remote(1));
  EXPECT_EQ(*out.placement[1], "");
  EXPECT_EQ(*out.placement[2], "gpu");
  EXPECT_FALSE(out.remote(4));
  EXPECT_EQ(out.expect_workers, 2u);
  EXPECT_EQ(out.worker_wait.count(), 1234);
}

TEST(BrokerPlan, RefusesWhatIsNotAPlan) {
  const std::string garbage = "\xc1\xff\x00 not msgpack";
  EXPECT_THROW(unpack_broker_plan(garbage.data(), garbage.size()), EncodeError);
  const std::string word = Packed(std::string("plan"));
  EXPECT_THROW(unpack_broker_plan(word.data(), word.size()), EncodeError);
  const std::string short_tuple = Packed(std::make_tuple(1, 2));
  EXPECT_THROW(unpack_broker_plan(short_tuple.data(), short_tuple.size()), EncodeError);
}

TEST(BrokerPlan, RefusesInconsistentPlans) {
  auto refused = [](const Plan& p) {
    const std::string bytes = pack_broker_plan(p);
    try {
      unpack_broker_plan(bytes.data(), bytes.size());
    } catch (const EncodeError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  Plan gap = ThreeGroups();
  gap.groups[2].first = 5;  // groups must tile the actors
  EXPECT_THAT(refused(gap), ::testing::HasSubstr("groups"));
  Plan one = ThreeGroups();
  one.groups = {{"all", 0, 5}};
  EXPECT_THAT(refused(one), ::testing::HasSubstr("counts"));
  Plan moved = ThreeGroups();
  moved.actors[1].group = 2;  // actor 1 claims to be in the sink group
  EXPECT_THAT(refused(moved), ::testing::HasSubstr("actor 1"));
  Plan renamed = ThreeGroups();
  renamed.actors[4].group_name = "other";
  EXPECT_THAT(refused(renamed), ::testing::HasSubstr("actor 4"));
  // Sizes that wrap a 32-bit sum around to zero actors (found in review: the
  // broker then wrote past an empty vector).
  Plan wrapped;
  wrapped.groups = {{"a", 0, 0xFFFFFFFFu}, {"b", 0xFFFFFFFFu, 1}};
  EXPECT_THAT(refused(wrapped), ::testing::HasSubstr("groups"));
}

TEST(BrokerPlan, FingerprintTellsRelaysApart) {
  const Plan p = ThreeGroups();
  EXPECT_EQ(p.layout(), "src[1] -> work[3] -> sink[1]");
  const std::string bytes = pack_broker_plan(p);
  EXPECT_EQ(unpack_broker_plan(bytes.data(), bytes.size()).fingerprint(), p.fingerprint())
      << "relay-broker must compute the driver's fingerprint from the plan it is sent";
  Plan renamed = ThreeGroups();
  renamed.actors[2].name = "Forwarder-9";
  EXPECT_NE(renamed.fingerprint(), p.fingerprint());
  Plan regrouped = ThreeGroups();
  regrouped.groups[1].name = "works";
  EXPECT_NE(regrouped.fingerprint(), p.fingerprint());
  Plan placed = ThreeGroups();
  placed.placement[1] = std::nullopt;  // placement is the driver's choice alone
  EXPECT_EQ(placed.fingerprint(), p.fingerprint());
}

TEST(RunResult, RoundTrips) {
  relay::broker::RunResult in;
  in.failures.push_back({3, "work", "Forwarder-2", 4242, "b1", "boom"});
  in.accounting = "edge 'a' -> 'b': sent 2, received 1 (A -> B: sent 2, received 1)";
  in.stopped = "actor 'Forwarder-2' failed";
  in.rejected = 7;
  const std::string bytes = relay::broker::pack_result(in);
  const relay::broker::RunResult out = relay::broker::unpack_result(bytes.data(), bytes.size());
  ASSERT_EQ(out.failures.size(), 1u);
  EXPECT_EQ(out.failures[0].id, 3u);
  EXPECT_EQ(out.failures[0].group, "work");
  EXPECT_EQ(out.failures[0].name, "Forwarder-2");
  EXPECT_EQ(out.failures[0].pid, 4242);
  EXPECT_EQ(out.failures[0].host, "b1");
  EXPECT_EQ(out.failures[0].reason, "boom");
  EXPECT_EQ(out.accounting, in.accounting);
  ASSERT_TRUE(out.stopped.has_value());
  EXPECT_EQ(*out.stopped, *in.stopped);
  EXPECT_EQ(out.rejected, 7u);

  const std::string empty = relay::broker::pack_result({});
  const relay::broker::RunResult clean = relay::broker::unpack_result(empty.data(), empty.size());
  EXPECT_TRUE(clean.failures.empty());
  EXPECT_FALSE(clean.stopped.has_value());
}

TEST(RunResult, RefusesWhatIsNotAResult) {
  const std::string word = Packed(std::string("ok"));
  EXPECT_THROW(relay::broker::unpack_result(word.data(), word.size()), EncodeError);
  const std::string wrong = Packed(std::make_tuple(1, 2, 3, 4, 5));
  EXPECT_THROW(relay::broker::unpack_result(wrong.data(), wrong.size()), EncodeError);
}

}  // namespace
