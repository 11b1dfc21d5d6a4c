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
  EXPECT_THAT(text, HasSubstr("relay_messages_sent_total{group=\"g\\\"1\",actor=\"a\\\\b\\nc\","
                              "host=\"\"} 3\n"));
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

// A plan like the broker's: src[1] -> work[2] -> sink[1], the work actors
// on two hosts, the sink not yet past the start barrier.
internal::MonitorPlan ThePlan() {
  return internal::MonitorPlan{"src[1] -> work[2] -> sink[1]",
                               {{"src", 1}, {"work", 2}, {"sink", 1}},
                               {{"'src' -> 'work'", "src", "", "work", 0, 0, 100},
                                {"'work'.'odd' -> 'sink'", "work", "odd", "sink", 1, 2, 10}},
                               {{0, "src", "S-0", "h1", 101, "running", 0, 0, 1},
                                {1, "work", "W-0", "h1", 102, "running", 0, 0, 1},
                                {2, "work", "W-1", "h2", 201, "running", 0, 0, 1},
                                {3, "sink", "K-0", "", 0, "starting", 0, 0, 1}},
                               16u << 20,
                               1};
}

// The plan gives the graph before any counter has come: groups with their
// sizes in the plan's order, edges with grouping and window, every actor
// with host, pid and state.
TEST(MonitorStateTest, PlanGivesTheGraphAndTheActors) {
  MonitorState state;
  const MonitorState::PlanChanges changes = state.on_plan(ThePlan());
  EXPECT_TRUE(changes.graph);
  ASSERT_EQ(changes.actors.size(), 4u);
  EXPECT_EQ(changes.actors[2].host, "h2");
  const Snapshot s = state.snapshot();
  EXPECT_EQ(s.layout, "src[1] -> work[2] -> sink[1]");
  ASSERT_EQ(s.groups.size(), 3u);
  EXPECT_EQ(s.groups[1].name, "work");
  EXPECT_EQ(s.groups[1].size, 2u);
  EXPECT_EQ(s.groups[1].actors, 2u);
  ASSERT_EQ(s.edges.size(), 2u);
  EXPECT_EQ(s.edges[1].from, "work");
  EXPECT_EQ(s.edges[1].output, "odd");
  EXPECT_EQ(s.edges[1].grouping, "by_key");
  EXPECT_EQ(s.edges[1].key, 2u);
  EXPECT_EQ(s.edges[0].window, 100u);
  EXPECT_EQ(s.edges[0].capacity, 200u);  // 1 sender x 2 receivers x 100
  EXPECT_EQ(s.edges[1].capacity, 20u);
  ASSERT_EQ(s.actors.size(), 4u);
  EXPECT_EQ(s.actors[0].name, "S-0");
  EXPECT_EQ(s.actors[0].pid, 101);
  EXPECT_EQ(s.actors[2].host, "h2");
  EXPECT_EQ(s.actors[2].state, "running");
  EXPECT_EQ(s.actors[3].state, "starting");
  EXPECT_EQ(s.actors[3].restarts, 0u);

  // The same plan again (sent to another subscriber): nothing new.
  const MonitorState::PlanChanges again = state.on_plan(ThePlan());
  EXPECT_FALSE(again.graph);
  EXPECT_TRUE(again.actors.empty());
  EXPECT_EQ(state.snapshot().groups[1].actors, 2u);  // counted once
}

// An actor record changes one actor; the same record twice is no news.
TEST(MonitorStateTest, ActorRecordsChangeStates) {
  MonitorState state;
  state.on_plan(ThePlan());
  const std::optional<ActorView> up =
      state.on_actor({3, "sink", "K-0", "h3", 301, "running", 0, 0, 2});
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->host, "h3");
  EXPECT_EQ(up->pid, 301);
  EXPECT_EQ(up->state, "running");
  EXPECT_FALSE(state.on_actor({3, "sink", "K-0", "h3", 301, "running", 0, 0, 3}).has_value());
  ASSERT_TRUE(state.on_actor({1, "work", "W-0", "h1", 102, "failed", 0, 0, 4}).has_value());
  state.on_actor({2, "work", "W-1", "h2", 201, "stopped", 0, 0, 4});
  state.on_end({false, "actor 'W-0' in group 'work' failed"});
  const Snapshot s = state.snapshot();
  EXPECT_EQ(s.actors[1].state, "failed");  // as the broker said
  EXPECT_EQ(s.actors[2].state, "stopped");
  EXPECT_EQ(s.actors[0].state, "stopped");  // said running, but the run is over
  // Counters keep the host and the state the records gave.
  const ActorView w = state.on_stats({"work", "W-1", 5, 5, 0, 5});
  EXPECT_EQ(w.host, "h2");
  EXPECT_EQ(w.state, "stopped");
}

// With the plan, backpressure is waiting at three quarters of the edge's
// capacity (senders x receivers x window), not the fixed fallback.
TEST(MonitorStateTest, BackpressureFromThePlansWindows) {
  MonitorState state(100);  // the fallback, before the plan
  state.on_plan(ThePlan());
  const Clock::time_point t0 = Clock::now();
  // 'src' -> 'work': capacity 200, threshold 150: 149 held is no backpressure.
  state.on_edge({"'src' -> 'work'", 500, 300, 149, 1}, t0);
  EXPECT_FALSE(
      state.on_edge({"'src' -> 'work'", 600, 400, 149, 2}, t0 + kBackpressureHold).backpressure);
  state.on_edge({"'src' -> 'work'", 700, 500, 150, 3}, t0 + kBackpressureHold);
  const EdgeView held =
      state.on_edge({"'src' -> 'work'", 800, 600, 200, 4}, t0 + 2 * kBackpressureHold);
  EXPECT_TRUE(held.backpressure);
  EXPECT_EQ(held.threshold, 150u);
  // 'work'.'odd' -> 'sink': capacity 20, threshold 15.
  state.on_edge({"'work'.'odd' -> 'sink'", 50, 30, 15, 1}, t0);
  EXPECT_TRUE(state.on_edge({"'work'.'odd' -> 'sink'", 60, 40, 16, 2}, t0 + kBackpressureHold)
                  .backpressure);
  const std::string text = to_prometheus(state.snapshot(t0 + kBackpressureHold));
  EXPECT_THAT(text, HasSubstr("relay_edge_backpressure{edge=\"'work'.'odd' -> 'sink'\"} 1\n"));
}

// /api/state and /metrics carry host, pid, restarts and state.
TEST(MonitorStateTest, JsonAndMetricsCarryHostsAndRestarts) {
  MonitorState state;
  state.on_plan(ThePlan());
  state.on_stats({"work", "W-1", 7, 6, 1, 2});
  const Snapshot s = state.snapshot();
  const std::string json = to_json(s);
  EXPECT_THAT(json, HasSubstr(R"("layout":"src[1] -> work[2] -> sink[1]")"));
  EXPECT_THAT(json, HasSubstr(R"({"name":"work","actors":2,"size":2})"));
  EXPECT_THAT(json, HasSubstr(R"("name":"W-1","sent":7,"received":6,"waiting":1,)"));
  EXPECT_THAT(json, HasSubstr(R"("state":"running","host":"h2","pid":201,"restarts":0,)"
                              R"("incarnation":0,"unix_ms":2})"));
  EXPECT_THAT(json, HasSubstr(R"("output":"odd","grouping":"by_key","key":2,"window":10,)"
                              R"("capacity":20,"threshold":15})"));
  const std::string text = to_prometheus(s);
  EXPECT_THAT(text, HasSubstr("# TYPE relay_actor_restarts_total counter\n"));
  EXPECT_THAT(
      text, HasSubstr("relay_actor_restarts_total{group=\"work\",actor=\"W-1\",host=\"h2\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("relay_messages_sent_total{group=\"work\",actor=\"W-1\",host=\"h2\"} 7\n"));
  EXPECT_THAT(text,
              HasSubstr("relay_actor_restarts_total{group=\"sink\",actor=\"K-0\",host=\"\"} 0\n"));
}

// A restart as the broker publishes it: the actor record says restarting
// (incarnation 1, one restart), then running with the new pid; the counts
// go on over the incarnations (the broker adds the earlier ones'). The
// registry shows the new process and its restart, keeps the counts as
// published, and the rate runs on over the restart rather than starting
// over; /metrics has the restart counted and the counters where they were
// left, never below.
TEST(MonitorStateTest, ARestartKeepsCountsAndCountsTheRestart) {
  MonitorState state;
  state.on_plan(ThePlan());
  const Clock::time_point t0 = Clock::now();
  state.on_stats({"work", "W-0", 400, 400, 10, 1}, t0);
  state.on_edge({"'src' -> 'work'", 900, 800, 100, 1}, t0);
  const std::string before = to_prometheus(state.snapshot(t0));
  ASSERT_TRUE(state.on_actor({1, "work", "W-0", "h1", 102, "restarting", 1, 1, 2}).has_value());
  EXPECT_EQ(state.snapshot(t0).actors[1].state, "restarting");
  ASSERT_TRUE(state.on_actor({1, "work", "W-0", "h1", 150, "running", 1, 1, 3}).has_value());
  state.on_stats({"work", "W-0", 400, 400, 0, 3}, t0 + milliseconds(500));
  const ActorView w = state.on_stats({"work", "W-0", 900, 900, 20, 4}, t0 + milliseconds(1000));
  state.on_edge({"'src' -> 'work'", 1500, 1400, 50, 4}, t0 + milliseconds(1000));
  EXPECT_EQ(w.pid, 150);
  EXPECT_EQ(w.restarts, 1u);
  EXPECT_EQ(w.incarnation, 1u);
  EXPECT_EQ(w.state, "running");
  EXPECT_EQ(w.received, 900u);
  EXPECT_DOUBLE_EQ(w.rate, 500);  // (900 - 400) over the second since t0
  const Snapshot s = state.snapshot(t0 + milliseconds(1000));
  ASSERT_EQ(s.edges.size(), 2u);
  EXPECT_EQ(s.edges[0].sent, 1500u);
  EXPECT_EQ(s.edges[0].received, 1400u);
  EXPECT_DOUBLE_EQ(s.edges[0].rate, 600);
  const std::string text = to_prometheus(s);
  EXPECT_THAT(before, HasSubstr("relay_actor_restarts_total{group=\"work\",actor=\"W-0\","
                                "host=\"h1\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("relay_actor_restarts_total{group=\"work\",actor=\"W-0\","
                              "host=\"h1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("relay_messages_received_total{group=\"work\",actor=\"W-0\","
                              "host=\"h1\"} 900\n"));
  EXPECT_THAT(text, HasSubstr("relay_edge_messages_received_total{edge=\"'src' -> 'work'\"} "
                              "1400\n"));
  EXPECT_THAT(to_json(s), HasSubstr(R"("state":"running","host":"h1","pid":150,"restarts":1,)"
                                    R"("incarnation":1,)"));
}

}  // namespace
}  // namespace relay::monitor
