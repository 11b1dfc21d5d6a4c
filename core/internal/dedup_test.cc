// Origins and DedupTable (dedup.h): how many parents of an origin pair a
// receiver keeps, which origins an actor can have made, and what a table
// says about the newest parent it holds.
#include "relay/internal/dedup.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace {

using relay::internal::DedupTable;
using relay::internal::EdgeGrouping;
using relay::internal::kLoopEdge;
using relay::internal::Origin;
using relay::internal::Plan;

// src[1] -> work[2] (round robin) and src -> audit[3] (broadcast), work ->
// sink[1]; maxsize 8: windows 4 into work, 8 into audit, 8 into sink.
Plan Graph() {
  Plan plan;
  plan.groups = {{"src", 0, 1}, {"work", 1, 2}, {"audit", 3, 3}, {"sink", 6, 1}};
  for (std::uint32_t g = 0; g < plan.groups.size(); ++g) {
    for (std::uint32_t i = 0; i < plan.groups[g].size; ++i) {
      const std::uint32_t id = plan.groups[g].first + i;
      plan.actors.push_back(
          {id, g, plan.groups[g].name + "-" + std::to_string(i), plan.groups[g].name});
    }
  }
  plan.edges = {{0, "", 1, EdgeGrouping::round_robin, 0},
                {0, "", 2, EdgeGrouping::broadcast, 0},
                {1, "", 3, EdgeGrouping::round_robin, 0}};
  plan.maxsize = 8;
  return plan;
}

// X: twice what may wait on every pair leaving the group, plus one.
TEST(Dedup, LoopLimitIsTwiceWhatMayWaitPlusOne) {
  const Plan plan = Graph();
  EXPECT_EQ(relay::internal::loop_limit(plan, 0), 2 * (2 * 4 + 3 * 8) + 1u);
  EXPECT_EQ(relay::internal::loop_limit(plan, 1), 2 * (1 * 8) + 1u);
  EXPECT_EQ(relay::internal::loop_limit(plan, 3), 1u);  // no edge leaves a sink
}

// A loop origin is only its own actor's; an origin inside recv() names a pair
// into the actor's group.
TEST(Dedup, OriginLimitRefusesWhatTheActorCannotHaveMade) {
  const Plan plan = Graph();
  const std::uint64_t x = relay::internal::loop_limit(plan, 0);
  EXPECT_EQ(relay::internal::origin_limit(plan, relay::internal::loop_origin(0, 7), 0), x);
  EXPECT_EQ(relay::internal::origin_limit(plan, relay::internal::loop_origin(0, 7), 1), 0u);
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{kLoopEdge, 0, 1, 7, 0}, 0), 0u);
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{kLoopEdge, 0, 0, 7, 1}, 0), 0u);
  // Work-0 (id 1) received on edge 0 from src (id 0).
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{0, 0, 0, 5, 2}, 1),
            relay::internal::held_limit(plan, 0));
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{1, 0, 0, 5, 2}, 1), 0u);  // into audit
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{0, 3, 0, 5, 2}, 1), 0u);  // not a sender
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{9, 0, 0, 5, 2}, 1), 0u);  // no such edge
  EXPECT_EQ(relay::internal::origin_limit(plan, Origin{0, 0, 0, 5, 2}, 99), 0u);
}

// A table keeps the parents within `window` of its newest, and says which is
// the newest it holds.
TEST(Dedup, TableKeepsTheNewestParentsAndTellsTheNewest) {
  DedupTable t;
  EXPECT_FALSE(t.newest(kLoopEdge, 0, 0).has_value());
  for (std::uint64_t k = 0; k <= 20; ++k) {
    EXPECT_TRUE(t.insert(relay::internal::loop_origin(0, k), 5));
  }
  EXPECT_FALSE(t.insert(relay::internal::loop_origin(0, 20), 5));
  EXPECT_EQ(t.newest(kLoopEdge, 0, 0), std::optional<std::uint64_t>(20));
  EXPECT_FALSE(t.contains(relay::internal::loop_origin(0, 14)));
  for (std::uint64_t k = 15; k <= 20; ++k)
    EXPECT_TRUE(t.contains(relay::internal::loop_origin(0, k)));
  EXPECT_FALSE(t.newest(kLoopEdge, 1, 0).has_value());
  // A list as a successor gets it keeps everything.
  DedupTable copy;
  copy.add_flat(t.flat());
  EXPECT_EQ(copy.flat(), t.flat());
  EXPECT_EQ(copy.newest(kLoopEdge, 0, 0), std::optional<std::uint64_t>(20));
}

// Parents out of seq order (a redelivery after newer ones), js on both sides
// of 64, and a parent too old to come again: each origin is taken once, and
// flat() lists every js of a parent in order.
TEST(Dedup, TableTakesEachOriginOnceInAnyOrderAndAnyJ) {
  DedupTable t;
  const auto at = [](std::uint64_t seq, std::uint64_t j) { return Origin{0, 1, 2, seq, j}; };
  for (const std::uint64_t j : {70u, 0u, 63u, 64u, 3u}) EXPECT_TRUE(t.insert(at(10, j), 8));
  EXPECT_TRUE(t.insert(at(12, 1), 8));
  EXPECT_TRUE(t.insert(at(11, 5), 8));  // between two kept parents
  for (const std::uint64_t j : {70u, 0u, 63u, 64u, 3u}) {
    EXPECT_FALSE(t.insert(at(10, j), 8)) << j;
    EXPECT_TRUE(t.contains(at(10, j))) << j;
  }
  EXPECT_FALSE(t.contains(at(10, 1)));
  EXPECT_FALSE(t.contains(at(10, 65)));
  EXPECT_FALSE(t.insert(at(11, 5), 8));
  EXPECT_EQ(t.flat(), (std::vector<std::uint64_t>{0, 1, 2, 10, 5, 0, 3, 63, 64, 70,  //
                                                  0, 1, 2, 11, 1, 5,                  //
                                                  0, 1, 2, 12, 1, 1}));
  // Seq 20 puts 10 and 11 out of the window (20 - 11 > 8), 12 stays.
  EXPECT_TRUE(t.insert(at(20, 0), 8));
  EXPECT_FALSE(t.contains(at(10, 70)));
  EXPECT_FALSE(t.contains(at(11, 5)));
  EXPECT_TRUE(t.contains(at(12, 1)));
  EXPECT_TRUE(t.insert(at(5, 0), 8));  // too old to come again: not kept
  EXPECT_FALSE(t.contains(at(5, 0)));
  EXPECT_EQ(t.newest(0, 1, 2), std::optional<std::uint64_t>(20));
  DedupTable copy;
  copy.add_flat(t.flat());
  EXPECT_EQ(copy.flat(), t.flat());
}

}  // namespace
