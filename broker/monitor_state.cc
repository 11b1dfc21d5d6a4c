#include "broker/monitor_state.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace relay::monitor {
namespace {

// JSON string contents: quotes, backslashes and control characters escaped;
// bytes >= 0x80 pass through (the records' text is UTF-8 from spdlog's
// formatting; a browser shows a stray byte as U+FFFD rather than failing).
void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// A finite number as JSON has it.
std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{:.3f}", v) : "0"; }

// A Prometheus label value: backslash, double quote and newline escaped.
std::string label(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::pair<std::string, std::string> edge_ends(const std::string& name) {
  // "'from'" or "'from'.'output'", then " -> 'to'". Group names are checked
  // identifiers in the plan (no quotes), so the first and last quoted
  // strings are the ends.
  const std::size_t arrow = name.rfind(" -> '");
  if (name.size() < 2 || name[0] != '\'' || arrow == std::string::npos || name.back() != '\'') {
    return {};
  }
  const std::size_t close = name.find('\'', 1);
  if (close == std::string::npos || close > arrow) return {};
  const std::size_t to_begin = arrow + 5;
  if (to_begin >= name.size()) return {};
  return {name.substr(1, close - 1), name.substr(to_begin, name.size() - 1 - to_begin)};
}

void MonitorState::Rate::update(std::uint64_t n, Clock::time_point now) {
  if (!at || n < count) {
    at = now;
    count = n;
    return;
  }
  // Reports come about twice a second from each actor, an edge's with each
  // actor at either end, so two in a row may both come from its senders
  // and show no rise in received: over a second or more, the receivers'
  // reports are in.
  if (now - *at < kRateBase) return;
  per_second = static_cast<double>(n - count) / std::chrono::duration<double>(now - *at).count();
  at = now;
  count = n;
}

double MonitorState::Rate::at_time(Clock::time_point now) const {
  if (!at || now - *at > kStale) return 0;
  return per_second;
}

MonitorState::MonitorState(std::uint64_t backpressure_waiting)
    : backpressure_waiting_(std::max<std::uint64_t>(backpressure_waiting, 1)) {}

void MonitorState::started(Clock::time_point now) {
  if (!first_) first_ = now;
}

void MonitorState::see_group(const std::string& group) {
  for (const GroupView& g : groups_) {
    if (g.name == group) return;
  }
  groups_.push_back(GroupView{group, 0, 0});
}

MonitorState::Actor& MonitorState::see_actor(const std::string& group, const std::string& name) {
  see_group(group);
  auto [it, fresh] = actors_.try_emplace({group, name});
  Actor& a = it->second;
  if (fresh) {
    a.view.group = group;
    a.view.name = name;
    for (GroupView& g : groups_) {
      if (g.name == group) ++g.actors;
    }
  }
  return a;
}

MonitorState::Edge& MonitorState::see_edge(const std::string& name) {
  for (Edge& x : edges_) {
    if (x.view.name == name) return x;
  }
  Edge fresh;
  fresh.view.name = name;
  std::tie(fresh.view.from, fresh.view.to) = edge_ends(name);
  if (!fresh.view.from.empty()) see_group(fresh.view.from);
  if (!fresh.view.to.empty()) see_group(fresh.view.to);
  edges_.push_back(std::move(fresh));
  return edges_.back();
}

std::uint64_t MonitorState::threshold_of(const Edge& e) const {
  // Three quarters of the edge's credits in use: receivers hand credits back
  // in batches of half a window, so a busy edge that keeps up sits near half.
  if (e.view.capacity == 0) return backpressure_waiting_;
  return std::max<std::uint64_t>(e.view.capacity - e.view.capacity / 4, 1);
}

bool MonitorState::describe(Actor& a, const internal::MonitorActor& r) {
  ActorView& v = a.view;
  const bool changed = !a.described || v.host != r.host || v.pid != r.pid || v.state != r.state ||
                       v.restarts != r.restarts || v.incarnation != r.incarnation;
  a.described = true;
  v.host = r.host;
  v.pid = r.pid;
  v.state = r.state;
  v.restarts = r.restarts;
  v.incarnation = r.incarnation;
  return changed;
}

ActorView MonitorState::view_of(const Actor& a, Clock::time_point now) const {
  ActorView v = a.view;
  // After the end nothing runs, whatever the last actor record said.
  const bool live = v.state == "starting" || v.state == "running" || v.state == "restarting";
  if (!a.described || (end_ && live)) {
    v.state = end_ ? (end_->ok ? "ended" : "stopped") : "running";
  }
  v.rate = end_ ? 0 : (v.received > 0 ? a.received_rate.at_time(now) : a.sent_rate.at_time(now));
  return v;
}

MonitorState::PlanChanges MonitorState::on_plan(const internal::MonitorPlan& r,
                                                Clock::time_point now) {
  static constexpr const char* kGroupings[] = {"round_robin", "by_key", "broadcast"};
  std::lock_guard lock(mu_);
  started(now);
  PlanChanges out;
  out.graph = layout_ != r.layout;
  layout_ = r.layout;
  // The plan's order of groups, then any seen that it does not have.
  std::vector<GroupView> groups;
  std::map<std::string, std::uint32_t> sizes;
  for (const internal::MonitorPlanGroup& g : r.groups) {
    if (sizes.count(g.name)) continue;
    sizes[g.name] = g.size;
    GroupView v{g.name, 0, g.size};
    for (const GroupView& old : groups_) {
      if (old.name == g.name) v.actors = old.actors;
    }
    groups.push_back(std::move(v));
  }
  for (const GroupView& old : groups_) {
    if (!sizes.count(old.name)) groups.push_back(old);
  }
  groups_ = std::move(groups);
  for (const internal::MonitorPlanEdge& pe : r.edges) {
    Edge& e = see_edge(pe.name);
    e.view.from = pe.from;
    e.view.to = pe.to;
    see_group(pe.from);
    see_group(pe.to);
    e.view.output = pe.output;
    e.view.grouping = pe.grouping < 3 ? kGroupings[pe.grouping] : "unknown";
    e.view.key = pe.key;
    e.view.window = pe.window;
    // Every pair (sender, receiver) has its own window.
    const std::uint64_t pairs = std::uint64_t{sizes[pe.from]} * sizes[pe.to];
    e.view.capacity = pairs * pe.window;
  }
  for (const internal::MonitorActor& ra : r.actors) {
    Actor& a = see_actor(ra.group, ra.name);
    if (describe(a, ra)) out.actors.push_back(view_of(a, now));
  }
  return out;
}

std::optional<ActorView> MonitorState::on_actor(const internal::MonitorActor& r,
                                                Clock::time_point now) {
  std::lock_guard lock(mu_);
  started(now);
  Actor& a = see_actor(r.group, r.name);
  if (!describe(a, r)) return std::nullopt;
  return view_of(a, now);
}

void MonitorState::on_log(const internal::MonitorLog& r, Clock::time_point now) {
  std::lock_guard lock(mu_);
  started(now);
  const int level = std::min<int>(r.level, 5);
  ++log_counts_[level];
  logs_.push_back(LogView{++log_seq_, r.group, r.name, level, r.text, r.unix_ms});
  if (logs_.size() > kLogTail) logs_.pop_front();
}

ActorView MonitorState::on_stats(const internal::MonitorStats& r, Clock::time_point now) {
  std::lock_guard lock(mu_);
  started(now);
  Actor& a = see_actor(r.group, r.name);
  a.view.sent = r.sent;
  a.view.received = r.received;
  a.view.waiting = r.waiting;
  a.view.unix_ms = r.unix_ms;
  a.sent_rate.update(r.sent, now);
  a.received_rate.update(r.received, now);
  return view_of(a, now);
}

EdgeView MonitorState::on_edge(const internal::MonitorEdge& r, Clock::time_point now) {
  std::lock_guard lock(mu_);
  started(now);
  Edge* e = &see_edge(r.edge);
  e->view.sent = r.sent;
  e->view.received = r.received;
  e->view.waiting = r.waiting;
  e->view.unix_ms = r.unix_ms;
  e->rate.update(r.received, now);
  if (r.waiting >= threshold_of(*e)) {
    if (!e->high_since) e->high_since = now;
  } else {
    e->high_since.reset();
  }
  EdgeView v = e->view;
  v.rate = e->rate.at_time(now);
  v.threshold = threshold_of(*e);
  v.backpressure = !end_ && e->high_since && now - *e->high_since >= kBackpressureHold;
  return v;
}

void MonitorState::on_end(const internal::MonitorEnd& r) {
  std::lock_guard lock(mu_);
  if (!end_) {
    end_ = r;
    ended_at_ = Clock::now();
  }
}

void MonitorState::on_malformed() {
  std::lock_guard lock(mu_);
  ++malformed_;
}

Snapshot MonitorState::snapshot(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  Snapshot s;
  s.layout = layout_;
  // Groups in the graph's order: by the longest path from a group nothing
  // enters (bounded: a cycle must not spin), then as first seen.
  std::map<std::string, std::size_t> level;
  for (const GroupView& g : groups_) level[g.name] = 0;
  for (std::size_t round = 0; round < groups_.size(); ++round) {
    for (const Edge& e : edges_) {
      const auto from = level.find(e.view.from);
      const auto to = level.find(e.view.to);
      if (from == level.end() || to == level.end() || from == to) continue;
      to->second = std::max(to->second, from->second + 1);
    }
  }
  s.groups = groups_;
  std::stable_sort(s.groups.begin(), s.groups.end(), [&](const GroupView& a, const GroupView& b) {
    return level[a.name] < level[b.name];
  });
  std::vector<const Edge*> edges;
  for (const Edge& e : edges_) edges.push_back(&e);
  std::stable_sort(edges.begin(), edges.end(), [&](const Edge* a, const Edge* b) {
    return level[a->view.from] < level[b->view.from];
  });
  for (const GroupView& g : s.groups) {
    for (const auto& [key, a] : actors_) {
      if (key.first == g.name) s.actors.push_back(view_of(a, now));
    }
  }
  for (const Edge* edge : edges) {
    const Edge& e = *edge;
    EdgeView v = e.view;
    v.rate = end_ ? 0 : e.rate.at_time(now);
    v.threshold = threshold_of(e);
    v.backpressure = !end_ && e.high_since && now - *e.high_since >= kBackpressureHold;
    s.edges.push_back(std::move(v));
  }
  s.logs = logs_;
  s.log_counts = log_counts_;
  s.malformed = malformed_;
  if (end_) {
    s.ended = true;
    s.ok = end_->ok;
    s.reason = end_->reason;
  }
  if (first_) {
    const Clock::time_point until = ended_at_ ? *ended_at_ : now;
    s.seconds = std::chrono::duration<double>(until - *first_).count();
  }
  return s;
}

std::string to_json(const Snapshot& s) {
  std::string out = "{\"layout\":";
  json_string(out, s.layout);
  out += ",\"groups\":[";
  for (std::size_t i = 0; i < s.groups.size(); ++i) {
    if (i) out += ',';
    out += "{\"name\":";
    json_string(out, s.groups[i].name);
    out += fmt::format(",\"actors\":{},\"size\":{}}}", s.groups[i].actors, s.groups[i].size);
  }
  out += "],\"actors\":[";
  for (std::size_t i = 0; i < s.actors.size(); ++i) {
    const ActorView& a = s.actors[i];
    if (i) out += ',';
    out += "{\"group\":";
    json_string(out, a.group);
    out += ",\"name\":";
    json_string(out, a.name);
    out += fmt::format(",\"sent\":{},\"received\":{},\"waiting\":{},\"rate\":{},\"state\":", a.sent,
                       a.received, a.waiting, json_number(a.rate));
    json_string(out, a.state);
    out += ",\"host\":";
    json_string(out, a.host);
    out += fmt::format(",\"pid\":{},\"restarts\":{},\"incarnation\":{},\"unix_ms\":{}}}", a.pid,
                       a.restarts, a.incarnation, a.unix_ms);
  }
  out += "],\"edges\":[";
  for (std::size_t i = 0; i < s.edges.size(); ++i) {
    const EdgeView& e = s.edges[i];
    if (i) out += ',';
    out += "{\"name\":";
    json_string(out, e.name);
    out += ",\"from\":";
    json_string(out, e.from);
    out += ",\"to\":";
    json_string(out, e.to);
    out += fmt::format(
        ",\"sent\":{},\"received\":{},\"waiting\":{},\"rate\":{},\"backpressure\":{},"
        "\"unix_ms\":{},\"output\":",
        e.sent, e.received, e.waiting, json_number(e.rate), e.backpressure ? "true" : "false",
        e.unix_ms);
    json_string(out, e.output);
    out += ",\"grouping\":";
    json_string(out, e.grouping);
    out += fmt::format(",\"key\":{},\"window\":{},\"capacity\":{},\"threshold\":{}}}", e.key,
                       e.window, e.capacity, e.threshold);
  }
  out += "],\"logs\":[";
  for (std::size_t i = 0; i < s.logs.size(); ++i) {
    const LogView& l = s.logs[i];
    if (i) out += ',';
    out += fmt::format("{{\"seq\":{},\"group\":", l.seq);
    json_string(out, l.group);
    out += ",\"name\":";
    json_string(out, l.name);
    out += fmt::format(",\"level\":\"{}\",\"text\":", kLevelNames[l.level]);
    json_string(out, l.text);
    out += fmt::format(",\"unix_ms\":{}}}", l.unix_ms);
  }
  out += "],\"log_counts\":{";
  for (int l = 0; l < 6; ++l) {
    out += fmt::format("{}\"{}\":{}", l ? "," : "", kLevelNames[l], s.log_counts[l]);
  }
  out += "},\"end\":";
  if (s.ended) {
    out += fmt::format("{{\"ok\":{},\"reason\":", s.ok ? "true" : "false");
    json_string(out, s.reason);
    out += '}';
  } else {
    out += "null";
  }
  out += fmt::format(",\"seconds\":{},\"malformed\":{}}}\n", json_number(s.seconds), s.malformed);
  return out;
}

std::string to_prometheus(const Snapshot& s) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto per_actor = [&](const char* name, auto value) {
    for (const ActorView& a : s.actors) {
      out += fmt::format("{}{{group=\"{}\",actor=\"{}\",host=\"{}\"}} {}\n", name, label(a.group),
                         label(a.name), label(a.host), value(a));
    }
  };
  family("relay_messages_sent_total", "counter", "Data messages an actor has sent.");
  per_actor("relay_messages_sent_total", [](const ActorView& a) { return a.sent; });
  family("relay_messages_received_total", "counter", "Data messages an actor has received.");
  per_actor("relay_messages_received_total", [](const ActorView& a) { return a.received; });
  family("relay_messages_waiting", "gauge",
         "Messages an actor has sent whose credit has not come back yet.");
  per_actor("relay_messages_waiting", [](const ActorView& a) { return a.waiting; });
  family("relay_actor_restarts_total", "counter", "How often an actor was restarted.");
  per_actor("relay_actor_restarts_total", [](const ActorView& a) { return a.restarts; });
  family("relay_edge_messages_sent_total", "counter",
         "Data messages sent on an edge, over all its pairs.");
  for (const EdgeView& e : s.edges) {
    out += fmt::format("relay_edge_messages_sent_total{{edge=\"{}\"}} {}\n", label(e.name), e.sent);
  }
  family("relay_edge_messages_received_total", "counter",
         "Data messages received on an edge, over all its pairs.");
  for (const EdgeView& e : s.edges) {
    out += fmt::format("relay_edge_messages_received_total{{edge=\"{}\"}} {}\n", label(e.name),
                       e.received);
  }
  family("relay_edge_messages_waiting", "gauge",
         "Messages sent on an edge whose credit has not come back yet.");
  for (const EdgeView& e : s.edges) {
    out += fmt::format("relay_edge_messages_waiting{{edge=\"{}\"}} {}\n", label(e.name), e.waiting);
  }
  family("relay_edge_backpressure", "gauge",
         "1 while an edge's senders wait on credit: waiting held at three quarters of what its "
         "windows allow.");
  for (const EdgeView& e : s.edges) {
    out += fmt::format("relay_edge_backpressure{{edge=\"{}\"}} {}\n", label(e.name),
                       e.backpressure ? 1 : 0);
  }
  family("relay_log_records_total", "counter", "Log records the run has published, by level.");
  for (int l = 0; l < 6; ++l) {
    out += fmt::format("relay_log_records_total{{level=\"{}\"}} {}\n", kLevelNames[l],
                       s.log_counts[l]);
  }
  family("relay_run_up", "gauge", "1 while the run goes on, 0 after its end.");
  out += fmt::format("relay_run_up {}\n", s.ended ? 0 : 1);
  family("relay_run_ok", "gauge",
         "1 if the run ended well, 0 if it stopped with an error or has not ended.");
  out += fmt::format("relay_run_ok {}\n", s.ended && s.ok ? 1 : 0);
  return out;
}

}  // namespace relay::monitor
