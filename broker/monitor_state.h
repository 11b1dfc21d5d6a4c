// broker/monitor_state.h: what relay-monitor knows about a run, in one place.
//
// MonitorState is the one registry of a followed run: it is fed the decoded
// monitor records (frames.h: "log", "stats", "edge", "end") by the SUB loop
// and read by every consumer: the text lines, the page, /api/state and
// /metrics all take a Snapshot instead of keeping counts of their own.
//
// What it derives, beyond the counters as published:
// - rates: messages per second between two reports of an actor or an edge
//   at least kRateBase apart (received per second; for an actor that
//   receives nothing, a source, sent per second), by the monitor's clock
//   when the reports arrived, 0 once none has come for kStale;
// - backpressure on an edge: its `waiting` (credits in use) has stayed at or
//   above `backpressure_waiting` in every report for kBackpressureHold while
//   the run goes on, i.e. its senders sit on a nearly full window;
// - the graph, from the edge names ("'a'.'out' -> 'b'") and the actors seen:
//   the monitor stream carries no plan, so a group or an edge shows once a
//   record of it has arrived;
// - an actor's state: "running" while the run goes on, then "ended" if the
//   run ended well, "stopped" if it did not (the stream does not say which
//   actor failed; the end's reason usually names it).
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
  std::string state;         // "running", "ended", "stopped"
  std::int64_t unix_ms = 0;  // the last report, by the driver's clock
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
};

struct GroupView {
  std::string name;
  std::size_t actors = 0;  // as seen so far
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

  // Each takes a record as decoded and returns the entry it updated, copied.
  // `now` is when it arrived (tests pass their own).
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
  };
  struct Edge {
    EdgeView view;
    Rate rate;
    std::optional<Clock::time_point> high_since;  // waiting >= threshold since
  };

  void see_group(const std::string& group);
  void started(Clock::time_point now);

  const std::uint64_t backpressure_waiting_;
  mutable std::mutex mu_;
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

// The snapshot as JSON (/api/state): {"groups": [...], "actors": [...],
// "edges": [...], "logs": [...], "log_counts": {...}, "end": null or
// {"ok": bool, "reason": str}, "seconds": n, "malformed": n}.
std::string to_json(const Snapshot& s);

// The snapshot in Prometheus' text exposition format (/metrics).
std::string to_prometheus(const Snapshot& s);

// Splits an edge name "'a'.'out' -> 'b'" into ("a", "b"); empty if it is not
// of that form.
std::pair<std::string, std::string> edge_ends(const std::string& name);

}  // namespace relay::monitor
