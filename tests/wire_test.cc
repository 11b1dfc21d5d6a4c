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
  p.edges = {{0, "", 1}, {1, "", 2}};
  p.actors = {{0, 0, "Source-0", "src"},
              {1, 1, "Forwarder-0", "work"},
              {2, 1, "Forwarder-1", "work"},
              {3, 1, "Forwarder-2", "work"},
              {4, 2, "Sink-0", "sink"}};
  p.placement = {std::nullopt, std::string(), std::string(), std::string(), std::nullopt};
  p.placement[2] = "gpu";
  p.expect_workers = 2;
  p.worker_wait = std::chrono::milliseconds(1234);
  p.maxsize = 10;
  p.queues = {{1, std::nullopt}, {3, 5}};
  p.ports = relay::internal::PortRange{7000, 7010};
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
  EXPECT_EQ(out.maxsize, std::optional<std::size_t>(10));
  ASSERT_EQ(out.queues.size(), 2u);
  EXPECT_EQ(out.queues[0].id, 1u);
  EXPECT_FALSE(out.queues[0].maxsize.has_value());
  EXPECT_EQ(out.queues[1].id, 3u);
  EXPECT_EQ(out.queues[1].maxsize, std::optional<std::size_t>(5));
  ASSERT_TRUE(out.ports.has_value());
  EXPECT_EQ(out.ports->first, 7000);
  EXPECT_EQ(out.ports->last, 7010);
  EXPECT_EQ(out.describe(), in.describe());

  Plan bare = ThreeGroups();
  bare.maxsize.reset();
  bare.queues.clear();
  bare.ports.reset();
  const std::string bare_bytes = pack_broker_plan(bare);
  const Plan bare_out = unpack_broker_plan(bare_bytes.data(), bare_bytes.size());
  EXPECT_FALSE(bare_out.maxsize.has_value());
  EXPECT_TRUE(bare_out.queues.empty());
  EXPECT_FALSE(bare_out.ports.has_value());
  EXPECT_EQ(bare_out.fingerprint(), bare.fingerprint());
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
  Plan unordered = ThreeGroups();
  unordered.queues = {{3, std::nullopt}, {1, std::nullopt}};
  EXPECT_THAT(refused(unordered), ::testing::HasSubstr("queue ids"));
  Plan empty_queue = ThreeGroups();
  empty_queue.queues = {{1, 0}};
  EXPECT_THAT(refused(empty_queue), ::testing::HasSubstr("maxsize 0"));
  Plan backwards = ThreeGroups();
  backwards.ports = relay::internal::PortRange{7010, 7000};
  EXPECT_THAT(refused(backwards), ::testing::HasSubstr("port range"));
  Plan zero = ThreeGroups();
  zero.maxsize = 0;
  EXPECT_THAT(refused(zero), ::testing::HasSubstr("maxsize 0"));
}

// A plan whose windows are not the ones this build computes (a driver of
// another version) is refused by name rather than turning every worker away.
TEST(BrokerPlan, RefusesOtherWindows) {
  const Plan p = ThreeGroups();
  const std::string bytes = pack_broker_plan(p);
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  auto t = oh.get().as<std::vector<msgpack::object>>();
  ASSERT_EQ(t.size(), 10u);
  msgpack::zone zone;
  t[8] = msgpack::object(std::make_pair(std::vector<std::uint32_t>{4, 10}, std::uint64_t{0}), zone);
  const std::string other = Packed(t);
  try {
    unpack_broker_plan(other.data(), other.size());
    ADD_FAILURE() << "a plan with other windows was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("credit windows"));
  }
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
  // Everything driver and workers must agree on changes it.
  Plan placed = ThreeGroups();
  placed.placement[1] = std::nullopt;
  EXPECT_NE(placed.fingerprint(), p.fingerprint());
  Plan bounded = ThreeGroups();
  bounded.maxsize = 2048;
  EXPECT_NE(bounded.fingerprint(), p.fingerprint());
  Plan unbounded = ThreeGroups();
  unbounded.maxsize.reset();
  EXPECT_NE(unbounded.fingerprint(), p.fingerprint());
  Plan queued = ThreeGroups();
  queued.queues.push_back({4, std::nullopt});
  EXPECT_NE(queued.fingerprint(), p.fingerprint());
  Plan renumbered = ThreeGroups();
  renumbered.queues[1].id = 2;
  EXPECT_NE(renumbered.fingerprint(), p.fingerprint());
  Plan rebound = ThreeGroups();
  rebound.queues[1].maxsize = 6;
  EXPECT_NE(rebound.fingerprint(), p.fingerprint());
  Plan ported = ThreeGroups();
  ported.ports->last = 7011;
  EXPECT_NE(ported.fingerprint(), p.fingerprint());
  // What is the driver's alone (how many workers, how long to wait) does not.
  Plan waiting = ThreeGroups();
  waiting.expect_workers = 5;
  waiting.worker_wait = std::chrono::milliseconds(1);
  EXPECT_EQ(waiting.fingerprint(), p.fingerprint());
}

// The description names what a refused worker and its driver disagree on.
TEST(BrokerPlan, DescribesTheRelay) {
  const Plan p = ThreeGroups();
  EXPECT_EQ(p.describe(),
            "src[1] -> work[3] -> sink[1]; maxsize 10; queues #1, #3 (maxsize 5); work on "
            "workers; ports 7000-7010");
  Plan bare = ThreeGroups();
  bare.maxsize.reset();
  bare.queues.clear();
  bare.ports.reset();
  bare.placement.assign(5, std::nullopt);
  EXPECT_EQ(bare.describe(),
            "src[1] -> work[3] -> sink[1]; no maxsize; no queues; all on the driver's host");
  bool windows = false;
  for (const auto& [name, text] : p.parts()) {
    if (name == "windows") {
      windows = true;
      EXPECT_EQ(text, "windows 3, 10 messages, 0 bytes");
    }
  }
  EXPECT_TRUE(windows);
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


// A graph: outputs, groupings, fan-out and merge show in the layout, travel in
// the plan, and change the fingerprint.
Plan Graph() {
  using relay::internal::EdgeGrouping;
  Plan p;
  p.groups = {{"src", 0, 1}, {"parse", 1, 4}, {"count", 5, 3}, {"errors", 8, 1}, {"top", 9, 1}};
  p.edges = {{0, "", 1},
             {1, "", 2, EdgeGrouping::by_key, 0},
             {1, "bad", 3},
             {2, "", 4, EdgeGrouping::broadcast},
             {3, "", 4}};
  for (std::uint32_t g = 0; g < p.groups.size(); ++g) {
    for (std::uint32_t i = 0; i < p.groups[g].size; ++i) {
      const std::uint32_t id = p.groups[g].first + i;
      p.actors.push_back({id, g, "A-" + std::to_string(id), p.groups[g].name});
    }
  }
  p.placement.assign(p.actors.size(), std::nullopt);
  p.maxsize = 12;
  return p;
}

TEST(BrokerPlan, LayoutShowsAGraph) {
  const Plan p = Graph();
  EXPECT_EQ(p.layout(),
            "src[1] -> parse[4] -> {count[3] by key -> top[1] broadcast, errors[1] from 'bad' -> "
            "top}");
  EXPECT_EQ(p.edge_name(2), "'parse'.'bad' -> 'errors'");
  EXPECT_EQ(p.outputs(1), (std::vector<std::string>{"", "bad"}));
  // A broadcast pair holds maxsize; the others share it over their receivers.
  EXPECT_EQ(p.window(1), 4u);
  EXPECT_EQ(p.window(3), 12u);
  const std::string bytes = pack_broker_plan(p);
  const Plan out = unpack_broker_plan(bytes.data(), bytes.size());
  ASSERT_EQ(out.edges.size(), 5u);
  EXPECT_EQ(out.edges[2].output, "bad");
  EXPECT_EQ(out.edges[1].grouping, relay::internal::EdgeGrouping::by_key);
  EXPECT_EQ(out.fingerprint(), p.fingerprint());
  Plan rekeyed = Graph();
  rekeyed.edges[1].key = 1;
  EXPECT_NE(rekeyed.fingerprint(), p.fingerprint());
  EXPECT_THAT(rekeyed.layout(), ::testing::HasSubstr("count[3] by key 1"));
  Plan regrouped = Graph();
  regrouped.edges[3].grouping = relay::internal::EdgeGrouping::round_robin;
  EXPECT_NE(regrouped.fingerprint(), p.fingerprint());
}

TEST(BrokerPlan, RefusesAGraphWithACycleOrALooseGroup) {
  Plan cycle = Graph();
  cycle.edges.push_back({4, "", 1});
  std::string bytes = pack_broker_plan(cycle);
  try {
    unpack_broker_plan(bytes.data(), bytes.size());
    ADD_FAILURE() << "a plan with a cycle was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("a cycle: 'parse' -> 'count' -> 'top' -> 'parse'"));
  }
  Plan loose = Graph();
  loose.edges.pop_back();
  loose.edges.pop_back();
  loose.edges.push_back({3, "", 2});
  bytes = pack_broker_plan(loose);
  try {
    unpack_broker_plan(bytes.data(), bytes.size());
    ADD_FAILURE() << "a plan with a group without edges was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("group 'top' has no edge"));
  }
}

// by_key hashes one value's bytes: value_span() finds them in a message.
TEST(KeyHash, FindsEachValueOfAMessage) {
  relay::internal::Buffer b;
  relay::internal::pack_message(b, 7, std::string("word"), std::vector<int>{1, 2, 3},
                                std::map<std::string, int>{{"a", 1}});
  const auto v0 = relay::internal::value_span(b.data(), b.size(), 0);
  const auto v1 = relay::internal::value_span(b.data(), b.size(), 1);
  const auto v3 = relay::internal::value_span(b.data(), b.size(), 3);
  ASSERT_TRUE(v0 && v1 && v3);
  EXPECT_EQ(std::string(b.data() + v0->first, v0->second), std::string("\x07"));
  EXPECT_EQ(std::string(b.data() + v1->first, v1->second), std::string("\xa4word"));
  EXPECT_EQ(v3->first + v3->second, b.size());
  EXPECT_FALSE(relay::internal::value_span(b.data(), b.size(), 4));
  EXPECT_FALSE(relay::internal::value_span(b.data(), b.size() - 1, 3)) << "truncated";
  // 7 as an int, a long and an unsigned is one key: the shortest encoding.
  relay::internal::Buffer l;
  relay::internal::pack_message(l, 7L, 0);
  const auto w0 = relay::internal::value_span(l.data(), l.size(), 0);
  ASSERT_TRUE(w0);
  EXPECT_EQ(relay::internal::key_hash(l.data() + w0->first, w0->second),
            relay::internal::key_hash(b.data() + v0->first, v0->second));
  // FNV-1a 64 of the bytes, fixed for good: the offset basis for no bytes,
  // and the published value for "a".
  EXPECT_EQ(relay::internal::key_hash("", 0), 14695981039346656037ull);
  EXPECT_EQ(relay::internal::key_hash("a", 1), 0xaf63dc4c8601ec8cull);
}

}  // namespace
