#include "broker/monitor.h"

#include <ctime>
#include <ostream>
#include <tuple>

#include <fmt/format.h>

#include "relay/internal/codec.h"
#include "relay/internal/frames.h"
#include "relay/internal/transport.h"

namespace relay::monitor {
namespace {

constexpr const char* kLevels[] = {"trace", "debug", "info", "warning", "error", "critical"};

std::string clock_text(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::localtime_r(&seconds, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
}

}  // namespace

Outcome run(const Options& options, std::ostream& out) {
  zmq::context_t ctx(1);
  zmq::socket_t sub = internal::make_socket(ctx, zmq::socket_type::sub);
  if (options.key) internal::curve_client(sub, *options.key);
  sub.set(zmq::sockopt::subscribe, "log");
  sub.set(zmq::sockopt::subscribe, "end");
  if (options.stats) {
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
        if (kind == internal::MonitorLog::kTopic) {
          const auto [group, name, level, text, at] =
              internal::decode<internal::MonitorLog>(zone, data, body.size());
          if (level < options.min_level || level > 5) continue;
          if (!options.groups.empty() && !options.groups.count(group)) continue;
          out << clock_text(at) << ' ' << kLevels[level] << " [" << group << "] (" << name
              << ") " << text << '\n';
        } else if (kind == internal::MonitorStats::kTopic) {
          const auto [group, name, sent, received, waiting, at] =
              internal::decode<internal::MonitorStats>(zone, data, body.size());
          if (!options.groups.empty() && !options.groups.count(group)) continue;
          out << clock_text(at) << " stats [" << group << "] (" << name << ") sent=" << sent
              << " received=" << received << " waiting=" << waiting << '\n';
        } else if (kind == internal::MonitorEdge::kTopic) {
          const auto [edge, sent, received, waiting, at] =
              internal::decode<internal::MonitorEdge>(zone, data, body.size());
          // With a group filter: the edges that start or end at one of them.
          bool shown = options.groups.empty();
          for (const std::string& g : options.groups) {
            shown = shown || edge.find("'" + g + "'") != std::string::npos;
          }
          if (!shown) continue;
          out << clock_text(at) << " edge " << edge << " sent=" << sent
              << " received=" << received << " waiting=" << waiting << '\n';
        } else if (kind == internal::MonitorEnd::kTopic) {
          const auto [ok, reason] = internal::decode<internal::MonitorEnd>(zone, data, body.size());
          out << (ok ? std::string("end: the run ended well") : "end: the run stopped: " + reason)
              << '\n';
          out.flush();
          return ok ? Outcome::ended_ok : Outcome::ended_failed;
        }
      } catch (const std::exception& e) {
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

}  // namespace relay::monitor
