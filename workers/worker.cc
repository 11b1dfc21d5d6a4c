#include "workers/worker.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/process.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"
#include "relay/runtime/inflight.h"

namespace relay::workers {

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
  // What the broker forwards to a driver (queue puts, log records) is never
  // dropped for want of room.
  s.set(zmq::sockopt::rcvhwm, 0);
  // A send never blocks for long: with no usable connection (a CURVE
  // handshake refused, the broker gone) a DEALER would wait for one for ever,
  // and the deadlines would never be checked. Pings are repeated anyway; the
  // broker's own checks cover the rest.
  s.set(zmq::sockopt::sndtimeo, 500);
  if (config.key) internal::curve_client(s, *config.key);
  s.connect(config.driver);
  return s;
}

// Sends a control frame (frames.h) to the broker.
template <class F>
void send_ctl(zmq::socket_t& s, const F& frame) {
  internal::Buffer b;
  internal::encode(b, frame);
  (void)internal::send_frame(s, b);
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

WorkerSession::WorkerSession(internal::Plan& plan, WorkerConfig config,
                             std::shared_ptr<spdlog::logger> logger, DriverPart* driver)
    : plan_(plan), config_(std::move(config)), logger_(std::move(logger)), driver_(driver) {}

std::string WorkerSession::peer() const { return "the broker at " + config_.driver; }

namespace {

constexpr int kFramesPerTurn = 256;

}  // namespace

void WorkerSession::kill_and_reap() noexcept {
  internal::kill_and_reap(handles_);
  if (spawner_) spawner_->stop();
}

WorkerSession::~WorkerSession() {
  kill_and_reap();
  if (inflight_) internal::destroy_inflight_table();
}

void WorkerSession::join_and_fork(const ForkActor& fork_actor, const RunActor& run_actor) {
  rid_ = "W" + internal::random_hex(8);
  address_ = local_address_towards(config_.driver);
  const std::string role = driver_ ? "relay driver: " : "relay worker: ";
  // Join with a context of its own, closed before any fork: a ZeroMQ context
  // must not cross fork().
  {
    zmq::context_t ctx(1);
    zmq::socket_t s = join_socket(ctx, rid_, config_);
    if (driver_) {
      send_ctl(s, internal::DHello{internal::host_name(), static_cast<int>(::getpid()), address_,
                                   internal::Bin{driver_->plan}});
      logger_->info("driver: joining the broker at {} from {}", config_.driver, address_);
    } else {
      send_ctl(s,
               internal::WHello{internal::host_name(), config_.labels, static_cast<int>(::getpid()),
                                address_, plan_.fingerprint(), plan_.describe(), plan_.parts()});
      logger_->info("worker: joining {} from {}", config_.driver, address_);
    }
    // Until the broker answers, wait join_wait; once it has, it pings while
    // it waits for the rest of the run's members (or for its next run), and
    // its silence means it is gone. We ping too, so that it keeps us.
    const auto deadline = Clock::now() + config_.join_wait;
    std::optional<Clock::time_point> last_heard;
    auto next_ping = Clock::now() + internal::kPingPeriod;
    bool assigned = false;
    while (!assigned) {
      const auto now = Clock::now();
      if (!last_heard && now >= deadline) {
        throw Error(role + "no answer from " + peer() + " within " +
                    std::to_string(config_.join_wait.count() / 1000) +
                    " s (is it running? same key?)");
      }
      if (last_heard && now - *last_heard > internal::kHostTimeout) {
        throw Error(role + "lost " + peer() + " while waiting to be given actors");
      }
      if (now >= next_ping) {
        send_ctl(s, internal::Ping{});
        next_ping = now + internal::kPingPeriod;
      }
      if (driver_ && driver_->while_joining) driver_->while_joining();
      zmq::pollitem_t items[] = {{s.handle(), 0, ZMQ_POLLIN, 0}};
      internal::poll(items, 1, std::chrono::milliseconds(200));
      zmq::message_t frame;
      while (s.recv(frame, zmq::recv_flags::dontwait)) {
        last_heard = Clock::now();
        std::optional<std::string> turned_away;
        try {
          msgpack::zone zone;
          internal::ControlFrame f =
              internal::decode_control(zone, frame.data<char>(), frame.size());
          if (auto* assign = std::get_if<internal::Assign>(&f)) {
            ids_ = std::move(assign->actors);
            plan_.control_endpoint = std::move(assign->control);
            plan_.log_endpoint = std::move(assign->log);
            for (std::uint32_t id : ids_) {
              if (id >= plan_.actors.size()) throw EncodeError("assigned an unknown actor");
            }
            assigned = true;
          } else if (auto* end = std::get_if<internal::End>(&f)) {
            turned_away = std::move(end->reason);
          } else if (auto* abort = std::get_if<internal::Abort>(&f)) {
            turned_away = std::move(abort->reason);
          }
        } catch (const std::exception& e) {
          ids_.clear();
          assigned = false;
          logger_->warn("{}rejected a message from {}: {}", role, peer(), e.what());
        }
        if (turned_away) throw Error(role + peer() + " turned us away: " + *turned_away);
      }
    }
  }
  plan_.distributed = true;
  plan_.data_host = address_;
  plan_.driver_pid = ::getpid();
  plan_.key = config_.key;
  try {
    if (plan_.any_supervised() && run_actor) {
      // Before any actor: the in-flight slots every actor process shares,
      // and the spawner, which copies this process as it is now (the plan
      // complete with the broker's endpoints).
      internal::create_inflight_table(plan_.actors.size());
      inflight_ = true;
      spawner_ = internal::Spawner::start([this, run_actor](std::uint32_t id, std::uint32_t inc) {
        plan_.spawner_pid = static_cast<int>(::getppid());  // Spawner checked it is the spawner
        run_actor(id, inc);
      });
      plan_.spawner_pid = spawner_->pid();
    }
    for (std::uint32_t id : ids_) {
      // fork_actor() has opened its pidfd (ProcessHandle::adopt).
      handles_.push_back(fork_actor(id));
      incarnations_.push_back(0);
    }
  } catch (...) {
    kill_and_reap();
    throw;
  }
  running_ = handles_.size();
  logger_->info("{}running {} actor(s)", driver_ ? "driver: " : "worker: ", ids_.size());
}

void WorkerSession::serve() {
  try {
    serve_until_end();
  } catch (...) {
    // Whatever ended it, no actor of ours outlives it.
    kill_and_reap();
    if (driver_) driver_->send = nullptr;
    throw;
  }
  if (driver_) driver_->send = nullptr;
}

void WorkerSession::serve_until_end() {
  auto signal_all = [&](int sig) {
    for (auto& h : handles_) h->signal(sig);
  };
  zmq::context_t ctx(1);
  zmq::socket_t s = join_socket(ctx, rid_, config_);
  if (driver_) {
    driver_->send = [&s](const std::string& frame) { s.send(zmq::buffer(frame)); };
  }
  // Heard from first: the broker sends what it held for us meanwhile.
  send_ctl(s, internal::Ping{});
  auto last_heard = Clock::now();
  auto next_ping = Clock::now() + internal::kPingPeriod;
  // When to SIGKILL actors that ignored the abort's SIGTERM (max: not armed;
  // not an optional, which g++ -O2 misreads as maybe-uninitialized).
  Clock::time_point kill_at = Clock::time_point::max();
  std::optional<std::string> stopped;  // why the run stopped, if it did
  bool ended = false;
  const std::size_t extra = driver_ ? driver_->watches.size() : 0;
  while (running_ > 0 || !ended) {
    std::vector<zmq::pollitem_t> items{{s.handle(), 0, ZMQ_POLLIN, 0}};
    const std::size_t forked = handles_.size();  // spawn() may add to it below
    for (auto& h : handles_) {
      // The spawner reaps its own children and says so.
      items.push_back({nullptr, h->exitcode || h->spawned ? -1 : h->pidfd, ZMQ_POLLIN, 0});
    }
    for (std::size_t i = 0; i < extra; ++i) {
      items.push_back({nullptr, driver_->watches[i].first, ZMQ_POLLIN, 0});
    }
    items.push_back({nullptr, spawner_ ? spawner_->fd() : -1, ZMQ_POLLIN, 0});
    internal::poll(items, std::chrono::milliseconds(100));
    zmq::message_t frame;
    // A bounded batch: a driver flooded with queue puts and log records must
    // still ping, or the broker takes it for lost.
    for (int k = 0; k < kFramesPerTurn && s.recv(frame, zmq::recv_flags::dontwait); ++k) {
      last_heard = Clock::now();
      try {
        msgpack::zone zone;
        internal::ControlFrame f = internal::decode_control(zone, frame.data<char>(), frame.size());
        if (auto* abort = std::get_if<internal::Abort>(&f)) {
          if (!stopped) {
            stopped = std::move(abort->reason);
            signal_all(SIGTERM);
            kill_at = Clock::now() + std::chrono::milliseconds(1000);
          }
        } else if (auto* end = std::get_if<internal::End>(&f)) {
          // Taken: the broker repeats end until it hears this.
          send_ctl(s, internal::WEnd{});
          ended = true;
          if (!end->ok && !stopped) stopped = std::move(end->reason);
        } else if (auto* spawn_frame = std::get_if<internal::Spawn>(&f)) {
          if (!stopped && !spawn(spawn_frame->actor, spawn_frame->incarnation)) {
            // Its end, as far as the broker is concerned: it counts it as a
            // failure of that incarnation (and may try again).
            internal::WExit exit;
            exit.actor = spawn_frame->actor;
            exit.incarnation = spawn_frame->incarnation;
            exit.exitcode = internal::Spawner::kReturnedStatus;
            send_ctl(s, exit);
          }
        } else if (driver_ && !std::holds_alternative<internal::Pong>(f)) {
          driver_->on_frame(f);
        }
      } catch (const std::exception& e) {
        logger_->warn("{}: rejected a message from {}: {}", driver_ ? "driver" : "worker", peer(),
                      e.what());
      }
    }
    for (std::size_t i = 0; i < forked; ++i) {
      if (handles_[i]->exitcode || !(items[i + 1].revents & ZMQ_POLLIN)) continue;
      if (!handles_[i]->try_reap()) continue;
      --running_;
      send_ctl(s, exit_frame(i));
    }
    if (items.back().revents & ZMQ_POLLIN) {
      try {
        for (const internal::Spawner::Exit& e : spawner_->take_exits()) {
          const auto at = std::find(ids_.begin(), ids_.end(), e.id);
          if (at == ids_.end()) continue;
          const auto i = static_cast<std::size_t>(at - ids_.begin());
          if (!handles_[i]->spawned_exit(e.pid, e.exitcode)) continue;  // an earlier process
          --running_;
          send_ctl(s, exit_frame(i));
        }
      } catch (const std::exception& e) {
        throw Error(std::string("relay worker: the process that restarts actors ended: ") +
                    e.what());
      }
    }
    for (std::size_t i = 0; i < extra; ++i) {
      if (!(items[1 + forked + i].revents & ZMQ_POLLIN)) continue;
      try {
        driver_->watches[i].second();
      } catch (const std::exception& e) {
        logger_->error("driver: {}", e.what());
      }
    }
    const auto now = Clock::now();
    if (now >= next_ping) {
      send_ctl(s, internal::Ping{});
      next_ping = now + internal::kPingPeriod;
    }
    if (now >= kill_at) {
      signal_all(SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (now - last_heard > internal::kHostTimeout) {
      throw Error("relay " + std::string(driver_ ? "driver" : "worker") + ": lost " + peer() +
                  " (no word for " + std::to_string(internal::kHostTimeout.count()) +
                  " ms); stopped " + std::to_string(running_) + " running actor(s)");
    }
  }
  // The wend must leave before the socket closes.
  s.set(zmq::sockopt::linger, 1000);
  if (stopped) throw Error("relay worker: the run stopped: " + *stopped);
}

bool WorkerSession::spawn(std::uint32_t id, std::uint32_t incarnation) {
  if (!spawner_ || id >= plan_.actors.size() || !plan_.supervised_group(plan_.actors[id].group)) {
    logger_->warn("worker: asked to start actor {}, which is not of a supervised group", id);
    return false;
  }
  const auto at = std::find(ids_.begin(), ids_.end(), id);
  std::size_t i = static_cast<std::size_t>(at - ids_.begin());
  if (at != ids_.end() && !handles_[i]->exitcode) {
    logger_->warn("worker: asked to start actor '{}' again while it runs", plan_.actors[id].name);
    return false;
  }
  try {
    logger_->flush();
    const internal::Spawner::Spawned child =
        spawner_->spawn(id, incarnation, std::chrono::seconds(10));
    if (at == ids_.end()) {
      // Re-placed here from a lost host.
      ids_.push_back(id);
      handles_.push_back(std::make_shared<internal::ProcessHandle>());
      incarnations_.push_back(incarnation);
    }
    handles_[i]->respawned(child.pid, child.pidfd);
    incarnations_[i] = incarnation;
    ++running_;
    logger_->info("worker: started actor '{}' (incarnation {}, pid {})", plan_.actors[id].name,
                  incarnation, child.pid);
    return true;
  } catch (const std::exception& e) {
    logger_->error("worker: could not start actor '{}': {}", plan_.actors[id].name, e.what());
    return false;
  }
}

internal::WExit WorkerSession::exit_frame(std::size_t i) {
  internal::WExit exit;
  exit.actor = ids_[i];
  exit.incarnation = incarnations_[i];
  exit.exitcode = *handles_[i]->exitcode;
  if (const auto in = internal::read_inflight(ids_[i])) {
    exit.in_recv = true;
    exit.edge = in->edge;
    exit.sender = in->sender;
    exit.sender_incarnation = in->sender_incarnation;
    exit.seq = in->seq;
    exit.size = in->size;
    // read_inflight() copied the bytes; they must live until the frame is
    // sent, so keep them in the session.
    head_ = in->head;
    exit.head = internal::Bin{head_};
  }
  return exit;
}

void run_worker(internal::Plan& plan, const WorkerConfig& config,
                const WorkerSession::ForkActor& fork_actor,
                const WorkerSession::RunActor& run_actor,
                const std::shared_ptr<spdlog::logger>& logger) {
  WorkerSession session(plan, config, logger);
  session.join_and_fork(fork_actor, run_actor);
  session.serve();
}

}  // namespace relay::workers
