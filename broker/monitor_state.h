// broker/monitor_state.h: what relay-monitor knows about a run, in one place.
//
// MonitorState is the one registry of a followed run: it is fed the decoded
// monitor records (frames.h: "plan", "actor", "log", "stats", "edge", "end")
// by the SUB loop and read by every consumer: the text lines, the page,
// /api/state and /metrics all take a Snapshot instead of keeping counts of
// their own.
//
// What it derives, beyond the counters as published:
// - rates: messages per second between two reports of an actor or an edge
//   at least kRateBase apart (received per second; for an actor that
//   receives nothing, a source, sent per second), by the monitor's clock
//   when the reports arrived, 0 once none has come for kStale;
// - backpressure on an edge: its `waiting` (credits in use, summed over its
//   senders and their receivers) has stayed at or above three quarters of
//   what the edge's windows allow (its capacity: senders x receivers x the
//   plan's window per pair) in every report for kBackpressureHold while the
//   run goes on, i.e. its senders sit on nearly empty credit. Before the plan
//   is known, a fixed `backpressure_waiting` stands in for it;
// - the graph: from the plan record (groups with their sizes, edges with
//   their grouping and window, every actor), which the broker sends each
//   new subscriber; until it has come, from the edge names ("'a'.'out' ->
//   'b'") and the actors seen;
// - an actor's state, host, pid and restarts: from the plan and "actor"
//   records; an actor no such record has described is "running" while the
//   run goes on, then "ended" if the run ended well, "stopped" if not.
//
// Thread-safe: every method may be called from any thread; snapshot() copies.
// Nothing here throws but std::bad_alloc.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "relay/internal/frames.h"

namespace relay::monitor {

inline constexpr std::chrono::milliseconds kRateBase{1000};
inline constexpr std::chrono::milliseconds kStale{2000};
inline constexpr std::chrono::milliseconds kBackpressureHold{2000};
inline constexpr std::size_t kLogTail = 200;
inline constexpr const char* kLevelNames[] = {"trace",   "debug", "info",
                                              "warning", "error", "critical"};

struct ActorView {
  std::string group;
  std::string name;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t waiting = 0;
  double rate = 0;           // messages per second (see above)
  std::string state;         // internal::kActorStates
  std::int64_t unix_ms = 0;  // the last report, by the driver's clock
  std::string host;          // "" until known
  int pid = 0;               // 0 until known
  std::uint32_t restarts = 0;
  std::uint32_t incarnation = 0;
};

struct EdgeView {
  std::string name;  // "'parse'.'bad' -> 'errors'"
  std::string from;  // "parse"
  std::string to;    // "errors"
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t waiting = 0;
  double rate = 0;  // received per second
  bool backpressure = false;
  std::int64_t unix_ms = 0;
  // From the plan; empty and 0 until it has come.
  std::string output;    // "" for the default output
  std::string grouping;  // "round_robin", "by_key", "broadcast"
  std::uint32_t key = 0;
  std::uint32_t window = 0;     // credits per (sender, receiver) pair
  std::uint64_t capacity = 0;   // senders x receivers x window
  std::uint64_t threshold = 0;  // the waiting that, held, is backpressure
};

struct GroupView {
  std::string name;
  std::size_t actors = 0;  // as seen so far (all of them once the plan came)
  std::uint32_t size = 0;  // from the plan; 0 until it has come
};

struct LogView {
  std::uint64_t seq = 0;  // 1, 2, ... over the whole run
  std::string group;
  std::string name;
  int level = 0;  // relay::Level
  std::string text;
  std::int64_t unix_ms = 0;
};

struct Snapshot {
  std::string layout;                         // the plan's, "" until it has come
  std::vector<GroupView> groups;              // first seen first
  std::vector<ActorView> actors;              // by group (first seen first), then name
  std::vector<EdgeView> edges;                // first seen first
  std::deque<LogView> logs;                   // the last kLogTail records
  std::array<std::uint64_t, 6> log_counts{};  // all records, by level
  std::uint64_t malformed = 0;                // records skipped as malformed
  bool ended = false;
  bool ok = false;
  std::string reason;
  double seconds = 0;  // since the first record
};

class MonitorState {
 public:
  using Clock = std::chrono::steady_clock;

  // `backpressure_waiting`: the waiting count that, held, is backpressure
  // (default: three quarters of the default credit window).
  explicit MonitorState(std::uint64_t backpressure_waiting = 3072);

  // What a plan record changed: whether it is the first (or another) graph,
  // and the actors it tells something new of (host, pid, state, restarts).
  struct PlanChanges {
    bool graph = false;
    std::vector<ActorView> actors;
  };

  // Each takes a record as decoded and returns the entry it updated, copied.
  // `now` is when it arrived (tests pass their own).
  PlanChanges on_plan(const internal::MonitorPlan& r, Clock::time_point now = Clock::now());
  // The actor, if the record tells something new of it.
  std::optional<ActorView> on_actor(const internal::MonitorActor& r,
                                    Clock::time_point now = Clock::now());
  void on_log(const internal::MonitorLog& r, Clock::time_point now = Clock::now());
  ActorView on_stats(const internal::MonitorStats& r, Clock::time_point now = Clock::now());
  EdgeView on_edge(const internal::MonitorEdge& r, Clock::time_point now = Clock::now());
  void on_end(const internal::MonitorEnd& r);
  void on_malformed();

  // Returns a copy of everything, rates and flags as of `now`.
  Snapshot snapshot(Clock::time_point now = Clock::now()) const;

 private:
  struct Rate {
    std::optional<Clock::time_point> at;  // the last report
    std::uint64_t count = 0;              // what it counted
    double per_second = 0;
    void update(std::uint64_t n, Clock::time_point now);
    double at_time(Clock::time_point now) const;
  };
  struct Actor {
    ActorView view;
    Rate sent_rate;
    Rate received_rate;
    bool described = false;  // a plan or actor record set its state
  };
  struct Edge {
    EdgeView view;
    Rate rate;
    std::optional<Clock::time_point> high_since;  // waiting >= threshold since
  };

  void see_group(const std::string& group);
  void started(Clock::time_point now);
  Actor& see_actor(const std::string& group, const std::string& name);
  // Applies an actor record; returns whether it changed anything shown.
  bool describe(Actor& a, const internal::MonitorActor& r);
  ActorView view_of(const Actor& a, Clock::time_point now) const;
  Edge& see_edge(const std::string& name);
  std::uint64_t threshold_of(const Edge& e) const;

  const std::uint64_t backpressure_waiting_;
  mutable std::mutex mu_;
  std::string layout_;
  std::vector<GroupView> groups_;
  std::map<std::pair<std::string, std::string>, Actor> actors_;  // (group, name)
  std::vector<Edge> edges_;
  std::deque<LogView> logs_;
  std::array<std::uint64_t, 6> log_counts_{};
  std::uint64_t log_seq_ = 0;
  std::uint64_t malformed_ = 0;
  std::optional<internal::MonitorEnd> end_;
  std::optional<Clock::time_point> first_;
  std::optional<Clock::time_point> ended_at_;
};

// The snapshot as JSON (/api/state): {"layout": str, "groups": [...],
// "actors": [...], "edges": [...], "logs": [...], "log_counts": {...},
// "end": null or {"ok": bool, "reason": str}, "seconds": n, "malformed": n},
// each entry with the fields of its view.
std::string to_json(const Snapshot& s);

// The snapshot in Prometheus' text exposition format (/metrics).
std::string to_prometheus(const Snapshot& s);

// Splits an edge name "'a'.'out' -> 'b'" into ("a", "b"); empty if it is not
// of that form.
std::pair<std::string, std::string> edge_ends(const std::string& name);

}  // namespace relay::monitor
