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

#include "broker/broker.h"
#include "relay/internal/codec.h"
#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/internal/security.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"

namespace {

using relay::internal::Ctl;

constexpr const char* kUsage =
    "usage: relay-broker --listen tcp://ADDRESS:PORT [options]\n"
    "Serves relay runs whose driver calls Relay::broker(\"tcp://ADDRESS:PORT\"):\n"
    "the driver and the workers (--relay-worker tcp://ADDRESS:PORT) join here;\n"
    "ADDRESS is where they reach this host. Runs are served one after another.\n"
    "  --listen URL               where drivers and workers join (required)\n"
    "  --key FILE                 the cluster key (relay-keygen FILE): CURVE on\n"
    "                             every connection, peers without it refused\n"
    "  --allow-insecure-network   listen on a non-loopback address without a key\n"
    "  --monitor URL              publish logs and counters for relay-monitor\n"
    "                             (tcp://ADDRESS:PORT)\n"
    "  --runs N                   exit after N runs (default: serve until SIGINT\n"
    "                             or SIGTERM, which stop the current run)\n"
    "  --level LEVEL              trace|debug|info|warning|error (default info)\n"
    "Exit status: 0 every run served ended well (or stopped by a signal), 1 a\n"
    "run failed, 2 bad usage or cannot listen.\n";

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "relay-broker: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

struct Options {
  std::string listen;
  std::string key_file;
  bool insecure = false;
  std::string monitor;
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
  std::pair<zmq::message_t, zmq::message_t> driver;
  std::vector<std::pair<zmq::message_t, zmq::message_t>> early;
  relay::internal::Plan plan;
};

// Waits on `control` for a driver. Returns nullopt if a signal came first.
std::optional<Joins> wait_for_driver(zmq::socket_t& control, int signal_fd,
                                     spdlog::logger& log) {
  Joins joins;
  for (;;) {
    zmq::pollitem_t items[] = {{control.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signal_fd, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, std::chrono::milliseconds(500));
    if (items[1].revents & ZMQ_POLLIN) return std::nullopt;
    zmq::message_t from;
    while (control.recv(from, zmq::recv_flags::dontwait)) {
      zmq::message_t frame;
      if (!from.more() || !control.recv(frame, zmq::recv_flags::dontwait) || frame.more()) {
        log.warn("relay-broker: rejected a malformed message while waiting for a driver");
        continue;
      }
      try {
        if (from.size() != 9 || from.data<char>()[0] != 'W') {
          throw relay::EncodeError("not from a driver or worker (an actor of an earlier run?)");
        }
        msgpack::zone zone;
        const msgpack::object o =
            relay::internal::decode_value(zone, frame.data<char>(), frame.size());
        if (o.type != msgpack::type::ARRAY || o.via.array.size == 0) {
          throw relay::EncodeError("not a msgpack array");
        }
        const msgpack::object* a = o.via.array.ptr;
        const auto kind = static_cast<Ctl>(a[0].as<std::uint8_t>());
        if (kind == Ctl::dhello) {
          if (o.via.array.size < 5 || a[4].type != msgpack::type::BIN) {
            throw relay::EncodeError("a driver's join without a plan");
          }
          joins.plan = relay::internal::unpack_broker_plan(a[4].via.bin.ptr, a[4].via.bin.size);
          joins.driver = {std::move(from), std::move(frame)};
          return joins;
        }
        if (kind == Ctl::whello) {
          joins.early.emplace_back(std::move(from), std::move(frame));
          continue;
        }
        // Pings and ends from members of an earlier run: nothing to do.
      } catch (const std::exception& e) {
        log.warn("relay-broker: rejected a message while waiting for a driver: {}", e.what());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string level = "info";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--listen") {
      o.listen = value();
    } else if (arg == "--key") {
      o.key_file = value();
    } else if (arg == "--allow-insecure-network") {
      o.insecure = true;
    } else if (arg == "--monitor") {
      o.monitor = value();
    } else if (arg == "--runs") {
      const std::string n = value();
      char* end = nullptr;
      o.runs = std::strtol(n.c_str(), &end, 10);
      if (end == n.c_str() || *end != '\0' || o.runs < 1) usage_error("bad --runs " + n);
    } else if (arg == "--level") {
      level = value();
    } else {
      usage_error("unknown argument " + arg);
    }
  }
  if (o.listen.rfind("tcp://", 0) != 0 || o.listen.rfind(':') <= 6) {
    usage_error(o.listen.empty() ? "--listen is required"
                                 : "--listen '" + o.listen + "' is not tcp://ADDRESS:PORT");
  }
  const std::string host = host_of(o.listen);
  if (host == "*" || host == "0.0.0.0" || host.empty()) {
    usage_error("--listen: give the address drivers and workers reach this host at, not '" +
                host + "'");
  }
  if (!o.monitor.empty() && o.monitor.rfind("tcp://", 0) != 0) {
    usage_error("--monitor '" + o.monitor + "' is not tcp://ADDRESS:PORT");
  }
  std::optional<relay::internal::CurveKey> key;
  if (!o.key_file.empty()) {
    try {
      key = relay::internal::load_curve_key(o.key_file);
    } catch (const std::exception& e) {
      usage_error(e.what());
    }
  }
  const bool exposed = !is_loopback(host) || (!o.monitor.empty() && !is_loopback(host_of(o.monitor)));
  if (exposed && !key && !o.insecure) {
    usage_error("a non-loopback address without a key lets anyone who reaches it join, inject "
                "messages and read logs; give --key FILE (relay-keygen FILE makes one) or, on "
                "a network you trust, --allow-insecure-network");
  }
  auto log = spdlog::stdout_color_mt("relay-broker");
  const auto lvl = spdlog::level::from_str(level == "warning" ? "warn" : level);
  if (lvl == spdlog::level::off && level != "off") usage_error("unknown level '" + level + "'");
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
    for (long served = 0; !stopping && (o.runs == 0 || served < o.runs); ++served) {
      zmq::socket_t control = relay::broker::Broker::make_control_socket(ctx);
      if (key) relay::internal::curve_server(control, *key);
      try {
        relay::internal::bind_retrying(control, o.listen);
      } catch (const zmq::error_t& e) {
        log->error("cannot listen at {}: {}", o.listen, e.what());
        status = 2;
        break;
      }
      log->info("listening at {}: waiting for a driver", o.listen);
      std::optional<Joins> joins = wait_for_driver(control, signal_fd, *log);
      if (!joins) break;  // a signal: nothing running to stop
      relay::internal::Plan& plan = joins->plan;
      plan.listen_endpoint = o.listen;
      plan.data_host = host;
      plan.distributed = true;
      plan.key = key;
      plan.monitor_endpoint = o.monitor;
      try {
        relay::broker::Broker broker(ctx, plan, log, std::move(control));
        broker.watch(signal_fd, [&] {
          signalfd_siginfo info{};
          [[maybe_unused]] ssize_t r = ::read(signal_fd, &info, sizeof info);
          stopping = true;
          log->warn("{}: stopping the run", relay::internal::signal_name(static_cast<int>(info.ssi_signo)));
          broker.abort("relay-broker stopped by " +
                       relay::internal::signal_name(static_cast<int>(info.ssi_signo)));
          return true;
        });
        broker.accept(joins->driver.first, joins->driver.second);
        for (auto& [from, frame] : joins->early) broker.accept(from, frame);
        broker.run();
        const relay::broker::RunResult r = broker.result();
        if (r.failures.empty() && r.accounting.empty() && !r.stopped) {
          log->info("run {} ended well", served + 1);
        } else {
          if (!stopping) status = 1;
          log->error("run {} failed: {}", served + 1,
                     !r.failures.empty() ? r.failures.front().name + ": " + r.failures.front().reason
                     : !r.accounting.empty() ? r.accounting
                                             : *r.stopped);
        }
      } catch (const std::exception& e) {
        log->error("run {} broke: {}", served + 1, e.what());
        status = 1;
      }
    }
  }
  ::close(signal_fd);
  return status;
}
