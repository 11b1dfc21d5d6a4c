// broker/monitor.h: relay-monitor, an onlooker on a running relay.
//
// It subscribes to the stream a relay publishes with Relay::monitor(): the
// plan (the graph, and every actor's host, pid and state: the broker sends it
// to each new subscriber, so a monitor that comes late learns it too), each
// actor's changes of state, log records, per-actor counters (sent, received,
// waiting), per-edge totals ("edge 'parse'.'bad' -> 'errors' sent=..
// received=.. waiting=..") and the end of the run, and prints them as they
// come, filtered by level and group. Log records and counters published
// before it connected are not shown.
//
// Every record goes into one MonitorState (monitor_state.h), which the text
// lines are printed from and which, with --http, the page, /api/state and
// /metrics read (monitor_http.h). The filters apply to the text only.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <optional>
#include <set>
#include <string>

#include "relay/internal/security.h"

namespace relay::monitor {

struct Options {
  std::string endpoint;          // tcp://HOST:PORT given to Relay::monitor()
  int min_level = 0;             // relay::Level: 0 trace ... 5 critical
  std::set<std::string> groups;  // empty: every group
  bool stats = true;             // print the plan, actor lines and counters
  std::optional<internal::CurveKey> key;
  std::chrono::milliseconds timeout{0};  // give up after this silence (0: never)
  // --http HOST:PORT: serve the state there (port 0: any); http_port < 0: no.
  std::string http_host;
  int http_port = -1;
  // With --http: how long to keep serving after the end (or the timeout),
  // so that the page can show it; negative: until the process is stopped.
  std::chrono::milliseconds linger{5000};
  // Called with the port once the HTTP server listens.
  std::function<void(int port)> serving;
};

enum class Outcome { ended_ok = 0, ended_failed = 1, timed_out = 3 };

// Prints the stream to `out` until the relay ends or `timeout` of silence
// (then, with --http, serves for `linger` more). Throws relay::Error if the
// HTTP address cannot be bound.
Outcome run(const Options& options, std::ostream& out);

}  // namespace relay::monitor
