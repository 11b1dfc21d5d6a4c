// relay-broker: a broker that lives apart from the driver.
//
// It listens for one driver at a time (a program whose Relay calls
// broker("tcp://THIS:PORT")) and for the workers of its run. The driver
// brings the plan; the broker owns the fabric's endpoints, membership, end of
// stream accounting, logs and the monitor stream, and hands the driver its
// queue puts, log records and the outcome. Runs are served one after another.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "bazel/cli.h"
#include "broker/broker.h"
#include "relay/internal/codec.h"
#include "relay/internal/frames.h"
#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/internal/security.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"

namespace {

using relay::internal::Ctl;

struct Options {
  std::string listen;
  std::string key_file;
  bool insecure = false;
  std::string monitor;
  std::optional<relay::internal::PortRange> ports;
  long runs = 0;
};

std::string host_of(const std::string& endpoint) {
  const std::string rest = endpoint.substr(6);
  return rest.substr(0, rest.rfind(':'));
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

// A driver's join, and the worker joins that came before it.
struct Joins {
  relay::broker::QueuedJoin driver;
  std::vector<relay::broker::QueuedJoin> early;
  relay::internal::Plan plan;
};

void send_to(zmq::socket_t& control, const std::string& rid, const std::string& frame) {
  try {
    control.send(zmq::buffer(rid), zmq::send_flags::sndmore);
    control.send(zmq::buffer(frame), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
    // Gone: nothing to tell.
  }
}

// Waits on `control` for a driver, keeping worker joins (and pinging them, so
// that they wait for it; one silent for kHostTimeout is dropped). `waiting`
// holds the joins the previous run kept for this one. Returns nullopt if a
// signal came first.
std::optional<Joins> wait_for_driver(zmq::socket_t& control, int signal_fd, spdlog::logger& log,
                                     std::vector<relay::broker::QueuedJoin> waiting) {
  using relay::internal::kHostTimeout;
  using relay::internal::kPingPeriod;
  using Clock = std::chrono::steady_clock;
  Joins joins;
  constexpr std::size_t kMostEarly = 256;
  auto next_ping = Clock::now();
  // Takes one join; returns true when it was the driver's (with a usable plan).
  auto take = [&](relay::broker::QueuedJoin join) {
    try {
      msgpack::zone zone;
      const relay::internal::ControlFrame frame =
          relay::internal::decode_control(zone, join.frame.data(), join.frame.size());
      const Ctl kind = relay::internal::kind_of(frame);
      for (relay::broker::QueuedJoin& e : joins.early) {
        if (e.routing_id == join.routing_id) {
          e.last_seen = join.last_seen;  // a ping, or its join again
          return false;
        }
      }
      if (kind == Ctl::dhello) {
        const auto& plan = std::get<relay::internal::DHello>(frame).plan.bytes;
        try {
          joins.plan = relay::internal::unpack_broker_plan(plan.data(), plan.size());
        } catch (const std::exception& e) {
          send_to(control, join.routing_id,
                  relay::internal::encode(relay::internal::End{
                      false, std::string("relay-broker cannot use its plan: ") + e.what()}));
          throw;
        }
        joins.driver = std::move(join);
        return true;
      }
      if (kind == Ctl::whello) {
        if (joins.early.size() >= kMostEarly) throw relay::EncodeError("too many early joins");
        joins.early.push_back(std::move(join));
      }
      // Anything else (pings and ends of members of an earlier run): nothing to do.
    } catch (const std::exception& e) {
      log.warn("relay-broker: rejected a message while waiting for a driver: {}", e.what());
    }
    return false;
  };
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    if (take(std::move(waiting[i]))) {
      // The rest go to the broker as they are: workers join this run, another
      // driver waits for the next.
      for (std::size_t k = i + 1; k < waiting.size(); ++k) {
        joins.early.push_back(std::move(waiting[k]));
      }
      return joins;
    }
  }
  for (;;) {
    const auto now = Clock::now();
    if (now >= next_ping) {
      next_ping = now + kPingPeriod;
      std::erase_if(joins.early, [&](const relay::broker::QueuedJoin& e) {
        return now - e.last_seen > kHostTimeout;
      });
      for (const relay::broker::QueuedJoin& e : joins.early) {
        send_to(control, e.routing_id, relay::internal::encode(relay::internal::Pong{}));
      }
    }
    zmq::pollitem_t items[] = {{control.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signal_fd, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, kPingPeriod);
    if (items[1].revents & ZMQ_POLLIN) return std::nullopt;
    zmq::message_t from;
    while (control.recv(from, zmq::recv_flags::dontwait)) {
      zmq::message_t frame;
      if (!from.more() || !control.recv(frame, zmq::recv_flags::dontwait) || frame.more()) {
        log.warn("relay-broker: rejected a malformed message while waiting for a driver");
        while (frame.more() && control.recv(frame, zmq::recv_flags::dontwait)) {
        }
        continue;
      }
      if (from.size() != 9 || from.data<char>()[0] != 'W') {
        continue;  // an actor of an earlier run
      }
      if (take({from.to_string(), frame.to_string(), Clock::now()})) return joins;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Serves relay runs whose driver calls Relay::broker(\"tcp://ADDRESS:PORT\"):\n"
      "the driver and the workers (--relay-worker tcp://ADDRESS:PORT) join here;\n"
      "ADDRESS is where they reach this host. Runs are served one after another.",
      "relay-broker");
  relay::cli::setup(app);
  Options o;
  std::string level = "info";
  std::string ports;
  app.add_option("--listen", o.listen, "Where drivers and workers join (required)")
      ->type_name("URL");
  app.add_option("--key", o.key_file,
                 "The cluster key (relay-keygen FILE): CURVE on every\n"
                 "connection, peers without it refused")
      ->type_name("FILE");
  app.add_flag("--allow-insecure-network", o.insecure,
               "Listen on a non-loopback address without a key");
  app.add_option("--monitor", o.monitor,
                 "Publish logs and counters for relay-monitor\n(tcp://ADDRESS:PORT)")
      ->type_name("URL");
  app.add_option("--ports", ports,
                 "Bind the log endpoint that every actor connects to at the\n"
                 "first free port of this range (default: any free port);\n"
                 "open it and --listen in a firewall")
      ->type_name("FIRST-LAST");
  app.add_option("--runs", o.runs,
                 "Exit after N runs (default: serve until SIGINT or SIGTERM,\n"
                 "which stop the current run)")
      ->type_name("N");
  app.add_option("--level", level, "trace|debug|info|warning|error (default info)")
      ->type_name("LEVEL");
  app.footer(
      "Exit status: 1 if a run it served failed or could not be set up (one stopped\n"
      "by SIGINT or SIGTERM does not count), else 0; 2 bad usage or cannot listen\n"
      "(--listen, --monitor).");
  std::string host;
  bool exposed = false;
  spdlog::level::level_enum lvl = spdlog::level::info;
  const int parsed = relay::cli::parse(app, argc, argv, [&] {
    if (app.count("--runs") && o.runs < 1) {
      throw CLI::ValidationError("--runs", "wants a count >= 1, got " + std::to_string(o.runs));
    }
    if (!ports.empty()) {
      const auto dash = ports.find('-');
      char* end = nullptr;
      const long first = std::strtol(ports.c_str(), &end, 10);
      const bool dash_next = dash != std::string::npos && end == ports.c_str() + dash;
      const long last = dash_next ? std::strtol(ports.c_str() + dash + 1, &end, 10) : 0;
      if (!dash_next || *end != '\0' || first < 1 || first > last || last > 65535) {
        throw CLI::ValidationError("--ports '" + ports +
                                   "' is not FIRST-LAST (1 <= FIRST <= LAST <= 65535)");
      }
      o.ports = relay::internal::PortRange{static_cast<std::uint16_t>(first),
                                           static_cast<std::uint16_t>(last)};
    }
    if (o.listen.rfind("tcp://", 0) != 0 || o.listen.rfind(':') <= 6) {
      throw CLI::ValidationError(o.listen.empty()
                                     ? "--listen is required"
                                     : "--listen '" + o.listen + "' is not tcp://ADDRESS:PORT");
    }
    host = host_of(o.listen);
    if (host == "*" || host == "0.0.0.0" || host.empty()) {
      throw CLI::ValidationError(
          "--listen: give the address drivers and workers reach this host at, not '" + host + "'");
    }
    if (!o.monitor.empty() && o.monitor.rfind("tcp://", 0) != 0) {
      throw CLI::ValidationError("--monitor '" + o.monitor + "' is not tcp://ADDRESS:PORT");
    }
    lvl = spdlog::level::from_str(level == "warning" ? "warn" : level);
    if (lvl == spdlog::level::off && level != "off") {
      throw CLI::ValidationError("--level", "unknown level '" + level + "'");
    }
    exposed = !is_loopback(host) || (!o.monitor.empty() && !is_loopback(host_of(o.monitor)));
    if (exposed && o.key_file.empty() && !o.insecure) {
      throw CLI::ValidationError(
          "a non-loopback address without a key lets anyone who reaches it join, inject "
          "messages and read logs; give --key FILE (relay-keygen FILE makes one) or, on "
          "a network you trust, --allow-insecure-network");
    }
  });
  if (parsed >= 0) return parsed;
  std::optional<relay::internal::CurveKey> key;
  if (!o.key_file.empty()) {
    try {
      key = relay::internal::load_curve_key(o.key_file);
    } catch (const std::exception& e) {
      relay::cli::usage_error(app, e.what());
    }
  }
  auto log = spdlog::stdout_color_mt("relay-broker");
  log->set_level(lvl);
  if (exposed && !key) {
    log->warn("listening on {} WITHOUT encryption or authentication (--allow-insecure-network)",
              o.listen);
  }

  // SIGINT and SIGTERM arrive on a descriptor; blocked before any thread starts.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  const int signal_fd = ::signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::fprintf(stderr, "relay-broker: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

  int status = 0;
  zmq::context_t ctx(1);
  {
    std::optional<relay::internal::ZapHandler> zap;
    if (key) {
      zap.emplace(ctx, *key, [log](const std::string& address) {
        log->warn("refused a connection from {}: it does not hold the cluster key", address);
      });
    }
    bool stopping = false;
    std::vector<relay::broker::QueuedJoin> waiting;  // joins kept by the last run
    // One control socket for every run: members waiting for the next run stay
    // connected to it.
    zmq::socket_t control = relay::broker::Broker::make_control_socket(ctx);
    if (key) relay::internal::curve_server(control, *key);
    zmq::socket_t monitor;  // the same for every run, bound now: a busy port shows at once
    try {
      control.bind(o.listen);
      if (!o.monitor.empty()) {
        monitor = relay::broker::Broker::make_monitor_socket(ctx, o.monitor, key);
      }
    } catch (const zmq::error_t& e) {
      log->error("cannot listen at {}: {}", o.listen, e.what());
      status = 2;
    } catch (const relay::Error& e) {
      log->error("{}", e.what());
      status = 2;
    }
    for (long served = 0; status != 2 && !stopping && (o.runs == 0 || served < o.runs);
         ++served) {
      log->info("listening at {}: waiting for a driver", o.listen);
      std::optional<Joins> joins =
          wait_for_driver(control, signal_fd, *log, std::exchange(waiting, {}));
      if (!joins) {  // a signal: nothing running to stop
        log->info("stopped by a signal while waiting for a driver");
        break;
      }
      relay::internal::Plan& plan = joins->plan;
      plan.listen_endpoint = o.listen;
      plan.data_host = host;
      plan.distributed = true;
      plan.key = key;
      plan.monitor_endpoint = o.monitor;
      plan.broker_ports = o.ports;
      std::optional<relay::broker::Broker> broker;
      try {
        broker.emplace(ctx, plan, log, control, monitor);
        broker->watch(signal_fd, [&] {
          signalfd_siginfo info{};
          [[maybe_unused]] ssize_t r = ::read(signal_fd, &info, sizeof info);
          stopping = true;
          const std::string sig = relay::internal::signal_name(static_cast<int>(info.ssi_signo));
          log->warn("{}: stopping the run", sig);
          broker->abort("relay-broker stopped by " + sig);
          return true;
        });
        auto accept = [&broker](const relay::broker::QueuedJoin& j) {
          zmq::message_t from(j.routing_id.data(), j.routing_id.size());
          zmq::message_t frame(j.frame.data(), j.frame.size());
          broker->accept(from, frame);
        };
        accept(joins->driver);
        for (const relay::broker::QueuedJoin& j : joins->early) accept(j);
        broker->run();
        waiting = broker->take_queued();
        control = broker->release_control();
        monitor = broker->release_monitor();
        const relay::broker::RunResult r = broker->result();
        if (r.failures.empty() && r.accounting.empty() && !r.stopped) {
          log->info("run {} ended well", served + 1);
        } else {
          if (!stopping) status = 1;
          std::string why;
          for (const relay::broker::RunResult::Failure& f : r.failures) {
            why += (why.empty() ? "" : "; ") + f.name + " (" + f.group + "): " + f.reason;
          }
          if (why.empty()) why = !r.accounting.empty() ? r.accounting : *r.stopped;
          log->error("run {} failed: {}", served + 1, why);
        }
      } catch (const std::exception& e) {
        // One run's failure is not the broker's: keep the sockets (the
        // Broker gives them back if its constructor threw), tell the run's
        // members why, count the run as failed and serve the next driver.
        const std::string why =
            "relay-broker could not serve run " + std::to_string(served + 1) + ": " + e.what();
        log->error("{}", why);
        status = 1;
        std::vector<std::string> members = {joins->driver.routing_id};
        if (broker) {
          control = broker->release_control();
          monitor = broker->release_monitor();
          waiting = broker->take_queued();
          for (const relay::broker::WorkerReport& w : broker->workers()) {
            if (w.routing_id != joins->driver.routing_id) members.push_back(w.routing_id);
          }
        } else {
          // Nobody was given anything: the early workers wait for the next run.
          waiting = std::move(joins->early);
        }
        broker.reset();
        if (!control) {
          log->error("relay-broker lost its control socket; it stops");
          break;
        }
        const std::string end = relay::internal::encode(relay::internal::End{false, why});
        for (const std::string& rid : members) send_to(control, rid, end);
      }
    }
  }
  ::close(signal_fd);
  return status;
}
