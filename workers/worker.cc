#include "workers/worker.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/process.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"

namespace relay::workers {

using internal::Ctl;
using Clock = std::chrono::steady_clock;

namespace {

// Splits "tcp://host:port".
std::pair<std::string, std::string> host_port(const std::string& endpoint) {
  const std::string prefix = "tcp://";
  if (endpoint.rfind(prefix, 0) != 0) {
    throw std::invalid_argument("relay worker: '" + endpoint + "' is not a tcp://HOST:PORT address");
  }
  const std::string rest = endpoint.substr(prefix.size());
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw std::invalid_argument("relay worker: '" + endpoint + "' has no port");
  }
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

zmq::socket_t join_socket(zmq::context_t& ctx, const std::string& rid, const WorkerConfig& config) {
  zmq::socket_t s = internal::make_socket(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::routing_id, rid);
  if (config.key) internal::curve_client(s, *config.key);
  s.connect(config.driver);
  return s;
}

template <class... T>
void send_ctl(zmq::socket_t& s, Ctl kind, const T&... values) {
  (void)internal::send_value(s, std::make_tuple(static_cast<std::uint8_t>(kind), values...));
}

}  // namespace

std::string local_address_towards(const std::string& endpoint) {
  const auto [host, port] = host_port(endpoint);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    throw Error("relay worker: cannot resolve '" + host + "'");
  }
  // Connecting a UDP socket sends nothing; it only picks the route, and with
  // it our address on that route.
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  std::string address;
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
      address = text;
    }
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  if (address.empty()) throw Error("relay worker: no route to '" + host + "'");
  return address;
}

void run_worker(internal::Plan& plan, const WorkerConfig& config,
                const std::function<std::shared_ptr<internal::ProcessHandle>(std::uint32_t)>&
                    fork_actor,
                const std::shared_ptr<spdlog::logger>& logger) {
  const std::string rid = "W" + internal::random_hex(8);
  const std::string address = local_address_towards(config.driver);
  std::vector<std::uint32_t> ids;
  // Join with a context of its own, closed before any fork: a ZeroMQ context
  // must not cross fork().
  {
    zmq::context_t ctx(1);
    zmq::socket_t s = join_socket(ctx, rid, config);
    send_ctl(s, Ctl::whello, internal::host_name(), config.labels, static_cast<int>(::getpid()),
             address);
    logger->info("worker: joining {} from {}", config.driver, address);
    const auto deadline = Clock::now() + config.join_wait;
    bool assigned = false;
    while (!assigned) {
      if (Clock::now() >= deadline) {
        throw Error("relay worker: no answer from the driver at " + config.driver + " within " +
                    std::to_string(config.join_wait.count() / 1000) +
                    " s (is it running? same key?)");
      }
      zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(200));
      zmq::message_t frame;
      while (s.recv(frame, zmq::recv_flags::dontwait)) {
        msgpack::zone zone;
        const msgpack::object o = internal::decode_value(zone, frame.data<char>(), frame.size());
        const auto kind = static_cast<Ctl>(o.via.array.ptr[0].as<std::uint8_t>());
        if (kind == Ctl::assign) {
          ids = o.via.array.ptr[1].as<std::vector<std::uint32_t>>();
          plan.control_endpoint = o.via.array.ptr[2].as<std::string>();
          plan.log_endpoint = o.via.array.ptr[3].as<std::string>();
          assigned = true;
        } else if (kind == Ctl::end || kind == Ctl::abort) {
          const std::string why = o.via.array.ptr[o.via.array.size - 1].as<std::string>();
          throw Error("relay worker: the driver at " + config.driver + " turned us away: " + why);
        }
      }
    }
  }
  plan.distributed = true;
  plan.data_host = address;
  plan.driver_pid = ::getpid();
  plan.key = config.key;

  std::vector<std::shared_ptr<internal::ProcessHandle>> handles;
  for (std::uint32_t id : ids) {
    auto h = fork_actor(id);
    h->pidfd = internal::pidfd_open(h->pid);
    handles.push_back(h);
  }
  auto signal_all = [&](int sig) {
    for (auto& h : handles) h->signal(sig);
  };
  logger->info("worker: running {} actor(s)", ids.size());

  zmq::context_t ctx(1);
  zmq::socket_t s = join_socket(ctx, rid, config);
  send_ctl(s, Ctl::ping);
  auto last_heard = Clock::now();
  auto next_ping = Clock::now() + internal::kPingPeriod;
  // When to SIGKILL actors that ignored the abort's SIGTERM (max: not armed;
  // not an optional, which g++ -O2 misreads as maybe-uninitialized).
  Clock::time_point kill_at = Clock::time_point::max();
  std::optional<std::string> stopped;  // why the run stopped, if it did
  bool ended = false;
  std::size_t running = handles.size();
  while (running > 0 || !ended) {
    std::vector<zmq::pollitem_t> items{{s.handle(), 0, ZMQ_POLLIN, 0}};
    for (auto& h : handles) items.push_back({nullptr, h->exitcode ? -1 : h->pidfd, ZMQ_POLLIN, 0});
    zmq::poll(items, std::chrono::milliseconds(100));
    zmq::message_t frame;
    while (s.recv(frame, zmq::recv_flags::dontwait)) {
      last_heard = Clock::now();
      try {
        msgpack::zone zone;
        const msgpack::object o = internal::decode_value(zone, frame.data<char>(), frame.size());
        const auto kind = static_cast<Ctl>(o.via.array.ptr[0].as<std::uint8_t>());
        if (kind == Ctl::abort && !stopped) {
          stopped = o.via.array.ptr[1].as<std::string>();
          signal_all(SIGTERM);
          kill_at = Clock::now() + std::chrono::milliseconds(1000);
        } else if (kind == Ctl::end) {
          ended = true;
          if (!o.via.array.ptr[1].as<bool>() && !stopped) {
            stopped = o.via.array.ptr[2].as<std::string>();
          }
        }
      } catch (const std::exception& e) {
        logger->warn("worker: rejected a message from the driver: {}", e.what());
      }
    }
    for (std::size_t i = 0; i < handles.size(); ++i) {
      if (handles[i]->exitcode || !(items[i + 1].revents & ZMQ_POLLIN)) continue;
      if (!handles[i]->try_reap()) continue;
      --running;
      send_ctl(s, Ctl::wexit, ids[i], *handles[i]->exitcode);
    }
    const auto now = Clock::now();
    if (now >= next_ping) {
      send_ctl(s, Ctl::ping);
      next_ping = now + internal::kPingPeriod;
    }
    if (now >= kill_at) {
      signal_all(SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (now - last_heard > internal::kHostTimeout) {
      signal_all(SIGKILL);
      for (auto& h : handles) {
        while (!h->try_reap()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      throw Error("relay worker: lost the driver at " + config.driver + " (no word for " +
                  std::to_string(internal::kHostTimeout.count()) + " ms); stopped " +
                  std::to_string(running) + " running actor(s)");
    }
  }
  if (stopped) throw Error("relay worker: the run stopped: " + *stopped);
}

}  // namespace relay::workers
