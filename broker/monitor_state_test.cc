// MonitorState: what it derives from the records (rates, backpressure, the
// graph, states) and how it writes them as JSON and Prometheus text.
#include "broker/monitor_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relay::monitor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = MonitorState::Clock;
using std::chrono::milliseconds;

// The ends of an edge come from its name, with or without an output.
TEST(MonitorStateTest, SplitsEdgeNames) {
  EXPECT_EQ(edge_ends("'src' -> 'sink'"), std::make_pair(std::string("src"), std::string("sink")));
  EXPECT_EQ(edge_ends("'parse'.'bad' -> 'errors'"),
            std::make_pair(std::string("parse"), std::string("errors")));
  EXPECT_EQ(edge_ends("nonsense"), std::make_pair(std::string(), std::string()));
  EXPECT_EQ(edge_ends("'a' -> '"), std::make_pair(std::string(), std::string()));
}

// A rate is the count's rise between two reports over the time between
// them; it reads 0 once reports stop for longer than kStale.
TEST(MonitorStateTest, RatesFromSuccessiveReports) {
  MonitorState state;
  const Clock::time_point t0 = Clock::now();
  state.on_stats({"src", "S-0", 100, 0, 0, 1}, t0);
  // Closer than kRateBase: no rate yet, the base stays.
  EXPECT_DOUBLE_EQ(state.on_stats({"src", "S-0", 300, 0, 0, 2}, t0 + milliseconds(500)).rate, 0);
  const ActorView a = state.on_stats({"src", "S-0", 1100, 0, 0, 3}, t0 + milliseconds(1000));
  EXPECT_DOUBLE_EQ(a.rate, 1000);  // a source: sent per second
  state.on_stats({"sink", "K-0", 0, 10, 0, 1}, t0);
  EXPECT_DOUBLE_EQ(state.on_stats({"sink", "K-0", 0, 510, 0, 2}, t0 + milliseconds(2000)).rate,
                   250);  // received per second
  EXPECT_DOUBLE_EQ(state.snapshot(t0 + milliseconds(1500)).actors[0].rate, 1000);
  EXPECT_DOUBLE_EQ(
      state.snapshot(t0 + milliseconds(1000) + kStale + milliseconds(1)).actors[0].rate, 0);
}

// Groups sources first along the edges; an actor counted once per
// group however many reports it sends; the graph's groups include those
// only an edge has named.
TEST(MonitorStateTest, BuildsTheGraphFromWhatItSees) {
  MonitorState state;
  state.on_stats({"b", "B-1", 0, 1, 0, 1});
  state.on_stats({"b", "B-0", 0, 1, 0, 1});
  state.on_stats({"b", "B-0", 0, 2, 0, 2});
  state.on_edge({"'a'.'out' -> 'b'", 5, 3, 2, 1});
  const Snapshot s = state.snapshot();
  ASSERT_EQ(s.groups.size(), 2u);
  EXPECT_EQ(s.groups[0].name, "a");  // a source: first
  EXPECT_EQ(s.groups[0].actors, 0u);
  EXPECT_EQ(s.groups[1].name, "b");
  EXPECT_EQ(s.groups[1].actors, 2u);
  ASSERT_EQ(s.actors.size(), 2u);
  EXPECT_EQ(s.actors[0].name, "B-0");  // by name within the group
  EXPECT_EQ(s.actors[0].received, 2u);
  ASSERT_EQ(s.edges.size(), 1u);
  EXPECT_EQ(s.edges[0].from, "a");
  EXPECT_EQ(s.edges[0].to, "b");
  EXPECT_EQ(s.edges[0].waiting, 2u);
}

// Backpressure: waiting at or above the threshold in every report for
// kBackpressureHold; one report below clears it; none after the end.
TEST(MonitorStateTest, FlagsBackpressureThatHolds) {
  MonitorState state(100);
  const Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(state.on_edge({"'a' -> 'b'", 500, 300, 150, 1}, t0).backpressure);
  EXPECT_FALSE(
      state.on_edge({"'a' -> 'b'", 600, 400, 120, 2}, t0 + milliseconds(1000)).backpressure);
  EXPECT_TRUE(state.on_edge({"'a' -> 'b'", 700, 500, 100, 3}, t0 + kBackpressureHold).backpressure);
  EXPECT_FALSE(
      state.on_edge({"'a' -> 'b'", 800, 750, 50, 4}, t0 + milliseconds(2500)).backpressure);
  state.on_edge({"'a' -> 'b'", 900, 750, 150, 5}, t0 + milliseconds(3000));
  EXPECT_TRUE(state.snapshot(t0 + milliseconds(5000)).edges[0].backpressure);
  state.on_end({true, ""});
  EXPECT_FALSE(state.snapshot(t0 + milliseconds(5000)).edges[0].backpressure);
}

// The end sets every actor's state, and rates drop to 0.
TEST(MonitorStateTest, EndSetsActorStates) {
  MonitorState state;
  state.on_stats({"a", "A-0", 1, 0, 0, 1});
  EXPECT_EQ(state.snapshot().actors[0].state, "running");
  state.on_end({false, "actor 'A-0' in group 'a' failed"});
  const Snapshot s = state.snapshot();
  EXPECT_EQ(s.actors[0].state, "stopped");
  EXPECT_TRUE(s.ended);
  EXPECT_FALSE(s.ok);
  EXPECT_EQ(s.reason, "actor 'A-0' in group 'a' failed");
}

// The log tail keeps the last kLogTail records; the counts cover them all.
TEST(MonitorStateTest, KeepsALogTailAndCountsEveryRecord) {
  MonitorState state;
  for (std::size_t i = 0; i < kLogTail + 5; ++i) {
    state.on_log({"a", "A-0", static_cast<std::uint8_t>(i % 2 ? 4 : 2), std::to_string(i), 1});
  }
  const Snapshot s = state.snapshot();
  ASSERT_EQ(s.logs.size(), kLogTail);
  EXPECT_EQ(s.logs.front().text, "5");
  EXPECT_EQ(s.logs.front().seq, 6u);
  EXPECT_EQ(s.log_counts[2] + s.log_counts[4], kLogTail + 5);
  EXPECT_EQ(s.log_counts[4], (kLogTail + 5) / 2);
}

// JSON strings are escaped, control characters as \u00XX.
TEST(MonitorStateTest, JsonEscapesStrings) {
  MonitorState state;
  state.on_log({"a", "A-0", 2, "say \"hi\"\\\n\x01", 7});
  const std::string json = to_json(state.snapshot());
  EXPECT_THAT(json, HasSubstr(R"("text":"say \"hi\"\\\n\u0001")"));
  EXPECT_THAT(json, HasSubstr(R"("end":null)"));
  EXPECT_THAT(json, HasSubstr(R"("log_counts":{"trace":0,"debug":0,"info":1,)"));
}

// Prometheus: label values escaped, each family with HELP and TYPE, the
// run's state as gauges.
TEST(MonitorStateTest, PrometheusTextEscapesLabels) {
  MonitorState state;
  state.on_stats({"g\"1", "a\\b\nc", 3, 4, 5, 1});
  state.on_edge({"'x' -> 'y'", 9, 8, 1, 1});
  std::string text = to_prometheus(state.snapshot());
  EXPECT_THAT(text,
              HasSubstr("relay_messages_sent_total{group=\"g\\\"1\",actor=\"a\\\\b\\nc\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("relay_edge_messages_received_total{edge=\"'x' -> 'y'\"} 8\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE relay_messages_waiting gauge\n"));
  EXPECT_THAT(text, HasSubstr("relay_run_up 1\n"));
  EXPECT_THAT(text, HasSubstr("relay_run_ok 0\n"));
  state.on_end({true, ""});
  text = to_prometheus(state.snapshot());
  EXPECT_THAT(text, HasSubstr("relay_run_up 0\n"));
  EXPECT_THAT(text, HasSubstr("relay_run_ok 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("\nrelay_run_up 1\n")));
}

}  // namespace
}  // namespace relay::monitor
