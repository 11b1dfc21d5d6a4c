#include "broker/monitor.h"

#include <fmt/format.h>

#include <ctime>
#include <memory>
#include <ostream>
#include <thread>

#include "broker/monitor_http.h"
#include "broker/monitor_state.h"
#include "relay/internal/codec.h"
#include "relay/internal/frames.h"
#include "relay/internal/transport.h"

namespace relay::monitor {
namespace {

std::string clock_text(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::localtime_r(&seconds, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
}

void check_actor(const internal::MonitorActor& a) {
  if (!internal::known_actor_state(a.state)) throw EncodeError("unknown state '" + a.state + "'");
}

void print_actor(std::ostream& out, const Options& options, const ActorView& a,
                 std::int64_t unix_ms) {
  if (!options.groups.empty() && !options.groups.count(a.group)) return;
  out << clock_text(unix_ms) << " actor [" << a.group << "] (" << a.name << ") " << a.state
      << " host=" << (a.host.empty() ? "?" : a.host) << " pid=" << a.pid
      << " restarts=" << a.restarts << '\n';
}

// The graph, once per plan (the broker sends it again to each new monitor).
void print_plan(std::ostream& out, const Options& options, const internal::MonitorPlan& plan) {
  static constexpr const char* kGroupings[] = {"round_robin", "by_key", "broadcast"};
  const std::string at = clock_text(plan.unix_ms);
  out << at << " plan " << plan.layout << '\n';
  for (const internal::MonitorPlanGroup& g : plan.groups) {
    if (!options.groups.empty() && !options.groups.count(g.name)) continue;
    out << at << " plan group [" << g.name << "] size=" << g.size << '\n';
  }
  for (const internal::MonitorPlanEdge& e : plan.edges) {
    if (!options.groups.empty() && !options.groups.count(e.from) && !options.groups.count(e.to)) {
      continue;
    }
    out << at << " plan edge " << e.name << " grouping=" << kGroupings[e.grouping];
    if (e.grouping == 1) out << " key=" << e.key;
    out << " window=" << e.window << '\n';
  }
}

// Reads the stream into `state`, printing as it goes, until the end or the
// timeout.
Outcome follow(const Options& options, MonitorState& state, std::ostream& out) {
  zmq::context_t ctx(1);
  zmq::socket_t sub = internal::make_socket(ctx, zmq::socket_type::sub);
  if (options.key) internal::curve_client(sub, *options.key);
  sub.set(zmq::sockopt::subscribe, "log");
  sub.set(zmq::sockopt::subscribe, "end");
  // The broker answers a subscription to "plan" with the plan: the graph
  // and every actor as it is now, however late this monitor comes.
  sub.set(zmq::sockopt::subscribe, internal::MonitorPlan::kTopic);
  sub.set(zmq::sockopt::subscribe, internal::MonitorActor::kTopic);
  const bool serving = options.http_port >= 0;
  if (options.stats || serving) {
    sub.set(zmq::sockopt::subscribe, "stats");
    sub.set(zmq::sockopt::subscribe, "edge");
  }
  sub.connect(options.endpoint);
  auto last_heard = std::chrono::steady_clock::now();
  for (;;) {
    zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(200));
    zmq::message_t topic;
    zmq::message_t body;
    while (sub.recv(topic, zmq::recv_flags::dontwait)) {
      last_heard = std::chrono::steady_clock::now();
      if (!topic.more() || !sub.recv(body, zmq::recv_flags::dontwait)) continue;
      const std::string kind = topic.to_string();
      try {
        msgpack::zone zone;
        const char* data = body.data<char>();
        if (kind == internal::MonitorPlan::kTopic) {
          const auto plan = internal::decode<internal::MonitorPlan>(zone, data, body.size());
          for (const internal::MonitorPlanEdge& e : plan.edges) {
            if (e.grouping > 2) throw EncodeError("grouping " + std::to_string(e.grouping));
          }
          for (const internal::MonitorActor& a : plan.actors) check_actor(a);
          const MonitorState::PlanChanges changes = state.on_plan(plan);
          if (!options.stats) continue;
          if (changes.graph) print_plan(out, options, plan);
          for (const ActorView& a : changes.actors) print_actor(out, options, a, plan.unix_ms);
        } else if (kind == internal::MonitorActor::kTopic) {
          const auto actor = internal::decode<internal::MonitorActor>(zone, data, body.size());
          check_actor(actor);
          const std::optional<ActorView> a = state.on_actor(actor);
          if (a && options.stats) print_actor(out, options, *a, actor.unix_ms);
        } else if (kind == internal::MonitorLog::kTopic) {
          const auto record = internal::decode<internal::MonitorLog>(zone, data, body.size());
          if (record.level > 5) throw EncodeError("level " + std::to_string(record.level));
          state.on_log(record);
          if (record.level < options.min_level) continue;
          if (!options.groups.empty() && !options.groups.count(record.group)) continue;
          out << clock_text(record.unix_ms) << ' ' << kLevelNames[record.level] << " ["
              << record.group << "] (" << record.name << ") " << record.text << '\n';
        } else if (kind == internal::MonitorStats::kTopic) {
          const ActorView a =
              state.on_stats(internal::decode<internal::MonitorStats>(zone, data, body.size()));
          if (!options.stats) continue;
          if (!options.groups.empty() && !options.groups.count(a.group)) continue;
          out << clock_text(a.unix_ms) << " stats [" << a.group << "] (" << a.name
              << ") sent=" << a.sent << " received=" << a.received << " waiting=" << a.waiting
              << '\n';
        } else if (kind == internal::MonitorEdge::kTopic) {
          const EdgeView e =
              state.on_edge(internal::decode<internal::MonitorEdge>(zone, data, body.size()));
          if (!options.stats) continue;
          // With a group filter: the edges that start or end at one of them.
          if (!options.groups.empty() && !options.groups.count(e.from) &&
              !options.groups.count(e.to)) {
            continue;
          }
          out << clock_text(e.unix_ms) << " edge " << e.name << " sent=" << e.sent
              << " received=" << e.received << " waiting=" << e.waiting << '\n';
        } else if (kind == internal::MonitorEnd::kTopic) {
          const auto end = internal::decode<internal::MonitorEnd>(zone, data, body.size());
          state.on_end(end);
          out << (end.ok ? std::string("end: the run ended well")
                         : "end: the run stopped: " + end.reason)
              << '\n';
          out.flush();
          return end.ok ? Outcome::ended_ok : Outcome::ended_failed;
        }
      } catch (const std::exception& e) {
        state.on_malformed();
        out << "relay-monitor: skipped a malformed " << kind << " record: " << e.what() << '\n';
      }
      out.flush();
    }
    if (options.timeout.count() > 0 &&
        std::chrono::steady_clock::now() - last_heard > options.timeout) {
      out << "relay-monitor: nothing heard from " << options.endpoint << " for "
          << options.timeout.count() / 1000.0 << " s (is the relay running, with this key?)\n";
      return Outcome::timed_out;
    }
  }
}

}  // namespace

Outcome run(const Options& options, std::ostream& out) {
  MonitorState state;
  std::unique_ptr<HttpServer> http;
  if (options.http_port >= 0) {
    http = std::make_unique<HttpServer>(state, options.http_host, options.http_port);
    if (options.serving) options.serving(http->port());
  }
  const Outcome outcome = follow(options, state, out);
  if (http) {
    // The page polls: keep answering for a while, so it can show the end.
    if (options.linger.count() < 0) {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }
    std::this_thread::sleep_for(options.linger);
    http->stop();
  }
  return outcome;
}

}  // namespace relay::monitor
