#include "broker/broker.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <algorithm>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "relay/internal/codec.h"
#include "relay/internal/process.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"

namespace relay::broker {

using internal::Bin;
using internal::ControlFrame;
using internal::Ctl;
using internal::encode;

namespace {

constexpr std::uint64_t kNotAnnounced = std::numeric_limits<std::uint64_t>::max();
// How long a bye or failure report waits for its announced log records.
constexpr auto kLogWait = std::chrono::seconds(2);
// At most one plan record this often, however many monitors subscribe.
constexpr auto kPlanEvery = std::chrono::milliseconds(100);

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Broker::Broker(zmq::context_t& ctx, const internal::Plan& plan,
               std::shared_ptr<spdlog::logger> logger, Hooks hooks)
    : ctx_(ctx),
      plan_(plan),
      logger_(std::move(logger)),
      hooks_(std::move(hooks)),
      reports_(plan.actors.size()),
      logs_expected_(plan.actors.size(), kNotAnnounced),
      ack_since_(plan.actors.size()),
      supervisor_(plan) {
  control_ = make_control_socket(ctx_);
  if (plan_.key) {
    zap_.emplace(ctx_, *plan_.key, [logger = logger_](const std::string& address) {
      logger->warn("refused a connection from {}: it does not hold the cluster key", address);
    });
    internal::curve_server(control_, *plan_.key);
  }
  if (hooks_.control_listener != nullptr && hooks_.control_listener->bound()) {
    hooks_.control_listener->bind(control_);
  } else {
    control_.bind(plan_.control_endpoint);
  }
  if (!plan_.listen_endpoint.empty()) {
    try {
      internal::bind_retrying(control_, plan_.listen_endpoint);
    } catch (const zmq::error_t& e) {
      throw Error("listen: cannot bind " + plan_.listen_endpoint + ": " + e.what());
    }
  }
  bind_and_listen();
}

Broker::Broker(zmq::context_t& ctx, const internal::Plan& plan,
               std::shared_ptr<spdlog::logger> logger, zmq::socket_t& control,
               zmq::socket_t& monitor)
    : ctx_(ctx),
      plan_(plan),
      logger_(std::move(logger)),
      control_(std::move(control)),
      reports_(plan.actors.size()),
      logs_expected_(plan.actors.size(), kNotAnnounced),
      ack_since_(plan.actors.size()),
      supervisor_(plan),
      monitor_(std::move(monitor)),
      standalone_(true) {
  hooks_.signal_actor = [](std::uint32_t, int) {};  // every actor's host stops its own
  try {
    bind_and_listen();
  } catch (...) {
    control = std::move(control_);
    monitor = std::move(monitor_);
    throw;
  }
}

zmq::socket_t Broker::make_monitor_socket(zmq::context_t& ctx, const std::string& endpoint,
                                          const std::optional<internal::CurveKey>& key) {
  zmq::socket_t s = internal::make_socket(ctx, zmq::socket_type::xpub);
  // Every subscription, also a second one to the same topic: each new
  // monitor gets the plan (watch_monitor()).
  s.set(zmq::sockopt::xpub_verbose, 1);
  if (key) internal::curve_server(s, *key);
  try {
    // Briefly: a monitor port is the user's, not the last run's, so a busy
    // one is someone else's and the answer should come at once.
    internal::bind_retrying(s, endpoint, std::chrono::milliseconds(200));
  } catch (const zmq::error_t& e) {
    throw Error("monitor: cannot bind " + endpoint + ": " + e.what());
  }
  return s;
}

zmq::socket_t Broker::make_control_socket(zmq::context_t& ctx) {
  zmq::socket_t s = internal::make_socket(ctx, zmq::socket_type::router);
  s.set(zmq::sockopt::rcvhwm, 0);
  // A ROUTER drops what it cannot queue: frames to a member (the driver's
  // queue puts and log records, with a standalone broker) must not be.
  s.set(zmq::sockopt::sndhwm, 0);
  // A worker reconnects with the routing id it joined with.
  s.set(zmq::sockopt::router_handover, 1);
  return s;
}

// The log endpoint(s), the monitor, and the rest of the set-up both share.
void Broker::bind_and_listen() {
  logs_ = internal::make_socket(ctx_, zmq::socket_type::sub);
  logs_.set(zmq::sockopt::rcvhwm, 0);
  logs_.set(zmq::sockopt::subscribe, "");
  if (plan_.key) internal::curve_server(logs_, *plan_.key);
  if (hooks_.log_listener != nullptr && hooks_.log_listener->bound()) {
    hooks_.log_listener->bind(logs_);
  } else if (!plan_.log_endpoint.empty()) {
    logs_.bind(plan_.log_endpoint);
  }
  if (!plan_.listen_endpoint.empty()) {
    if (plan_.broker_ports) {
      try {
        log_tcp_endpoint_ = internal::bind_in_range(
            logs_, plan_.data_host, plan_.broker_ports->first, plan_.broker_ports->last);
      } catch (const Error& e) {
        throw Error("listen: cannot bind the log endpoint: " + std::string(e.what()));
      }
    } else {
      try {
        logs_.bind("tcp://" + plan_.data_host + ":*");
      } catch (const zmq::error_t& e) {
        throw Error("listen: cannot bind a log endpoint on " + plan_.data_host + ": " + e.what());
      }
      log_tcp_endpoint_ = logs_.get(zmq::sockopt::last_endpoint);
    }
  }
  if (!plan_.monitor_endpoint.empty() && !monitor_) {
    monitor_ = make_monitor_socket(ctx_, plan_.monitor_endpoint, plan_.key);
  }
  if (monitor_) {
    monitor_bound_ = monitor_.get(zmq::sockopt::last_endpoint);
    logger_->info("monitor stream at {}", monitor_bound_);
  }
  actor_worker_.assign(plan_.actors.size(), -1);
  began_ = std::chrono::steady_clock::now();
  next_ping_ = began_;
  // The driver forked its actors just before; remote ones (and with a
  // standalone broker, all) start when they are assigned.
  bool any_assigned = standalone_;
  for (std::uint32_t id = 0; id < plan_.actors.size(); ++id) any_assigned |= plan_.remote(id);
  if (!any_assigned) start_by_ = began_ + internal::start_wait();
  abort_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (abort_fd_ < 0) throw Error(std::string("broker: eventfd: ") + std::strerror(errno));
}

Broker::~Broker() {
  if (abort_fd_ >= 0) ::close(abort_fd_);
}

void Broker::watch(int fd, std::function<bool()> on_readable) {
  watches_.push_back({fd, std::move(on_readable)});
}

void Broker::request_abort(const std::string& reason) {
  {
    std::lock_guard lock(abort_mu_);
    if (requested_abort_.empty()) requested_abort_ = reason;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(abort_fd_, &one, sizeof one);
}

bool Broker::all_exited() const {
  for (const ActorReport& r : reports_) {
    if (!r.exitcode) return false;
  }
  return undecided_.empty();
}

void Broker::interrupt(int sig, const std::string& reason) {
  interrupted_ = sig;
  abort(reason);
  decide_exits();
}

// An actor killed by SIGTERM while nothing stopped the run is a failure,
// unless the same SIGTERM reached the driver: `timeout`, systemd and a shell's
// kill of the process group signal every process at once, and the actor may
// die before the driver's handler has run. Its verdict waits kSignalVerdict
// for the driver's interruption.
void Broker::decide_exits() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = undecided_.begin(); it != undecided_.end();) {
    const auto [id, deadline] = *it;
    if (interrupted_ != 0) {
      reports_[id].stopped = true;
    } else if (now < deadline) {
      ++it;
      continue;
    } else {
      report_bad_exit(id);
    }
    it = undecided_.erase(it);
  }
}

void Broker::run() {
  std::vector<zmq::pollitem_t> items;
  while (!all_exited()) {
    items.clear();
    items.push_back({control_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({logs_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, abort_fd_, ZMQ_POLLIN, 0});
    items.push_back({nullptr, pending_puts_.empty() ? -1 : hooks_.queue_space_fd, ZMQ_POLLIN, 0});
    for (const Watch& w : watches_) items.push_back({nullptr, w.fd, ZMQ_POLLIN, 0});
    internal::poll(items, std::chrono::milliseconds(100));

    // Control and logs first: an actor's last report is read before its exit
    // is handled.
    zmq::message_t from;
    zmq::message_t frame;
    // Bounded batches, so that pings and the other checks keep their pace
    // under a flood.
    for (int i = 0; i < 1000 && control_.recv(from, zmq::recv_flags::dontwait); ++i) {
      if (!from.more() || !control_.recv(frame, zmq::recv_flags::dontwait)) {
        reject("control message without a frame");
        continue;
      }
      if (frame.more()) {
        zmq::message_t rest;
        while (control_.recv(rest, zmq::recv_flags::dontwait) && rest.more()) {
        }
        reject("multipart control message");
        continue;
      }
      handle_control(from, frame);
    }
    for (int i = 0; i < 1000 && logs_.recv(frame, zmq::recv_flags::dontwait); ++i) {
      handle_log(frame);
    }
    settle_pending_acks(false);
    if (items[2].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] ssize_t r = ::read(abort_fd_, &n, sizeof n);
      std::string reason;
      {
        std::lock_guard lock(abort_mu_);
        reason = requested_abort_;
      }
      abort(reason);
    }
    if (items[3].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      [[maybe_unused]] ssize_t r = ::read(hooks_.queue_space_fd, &n, sizeof n);
      retry_puts();
    }
    for (std::size_t i = watches_.size(); i-- > 0;) {
      if (items[4 + i].revents & ZMQ_POLLIN) {
        if (!watches_[i].on_readable()) watches_.erase(watches_.begin() + static_cast<long>(i));
      }
    }
    if (!plan_.listen_endpoint.empty()) check_workers();
    check_stuck_senders();
    check_start();
    check_restarts();
    decide_exits();
    watch_monitor();
    if (kill_at_ && std::chrono::steady_clock::now() >= *kill_at_) {
      kill_at_.reset();
      for (std::uint32_t id = 0; id < reports_.size(); ++id) {
        if (!reports_[id].exitcode) hooks_.signal_actor(id, SIGKILL);
      }
    }
  }
  // Whatever log records are still in the pipe belong to the run (and go to
  // the driver before its result).
  zmq::message_t frame;
  for (int i = 0; i < 100000 && logs_.recv(frame, zmq::recv_flags::dontwait); ++i) {
    handle_log(frame);
  }
  say_end();
  watch_monitor();  // every actor's last state, before the end
  if (monitor_) {
    // And the final counts, the same for every monitor whatever came last.
    for (std::uint32_t id = 0; id < reports_.size(); ++id) publish_actor(id);
    for (std::uint32_t e = 0; e < plan_.edges.size(); ++e) publish_edge(e);
    publish(
        internal::MonitorEnd{!abort_reason_.has_value(), abort_reason_.value_or(std::string())});
    monitor_.set(zmq::sockopt::linger, 1000);
  }
}

// Tells every worker (and a standalone broker's driver, with the result) how
// the run ended, and repeats it until each has taken it (wend) or kEndWait has
// passed: a worker that missed it would stop its actors and report the driver
// lost although the run ended well.
void Broker::say_end() {
  if (workers_.empty()) return;
  const std::string end =
      encode(internal::End{!abort_reason_.has_value(), abort_reason_.value_or(std::string())});
  std::string result_frame;
  if (standalone_) {
    const std::string packed = pack_result(result());
    result_frame = encode(internal::Result{Bin{packed}});
  }
  // The last round goes out even though the socket closes right after it
  // (an embedded broker's does).
  if (!standalone_) control_.set(zmq::sockopt::linger, 2000);
  const auto deadline = std::chrono::steady_clock::now() + kEndWait;
  for (;;) {
    bool waiting = false;
    for (const WorkerReport& w : workers_) {
      if (w.lost || w.ended) continue;
      waiting = true;
      if (w.driver) send_to_worker(w.routing_id, result_frame);
      send_to_worker(w.routing_id, end);
    }
    if (!waiting || std::chrono::steady_clock::now() >= deadline) break;
    zmq::pollitem_t items[] = {{control_.handle(), 0, ZMQ_POLLIN, 0}};
    internal::poll(items, 1, std::chrono::milliseconds(250));
    zmq::message_t from;
    zmq::message_t frame;
    while (control_.recv(from, zmq::recv_flags::dontwait)) {
      if (!from.more() || !control_.recv(frame, zmq::recv_flags::dontwait)) continue;
      if (frame.more()) {
        zmq::message_t rest;
        while (control_.recv(rest, zmq::recv_flags::dontwait) && rest.more()) {
        }
        continue;
      }
      if (from.size() != 9 || from.data<char>()[0] != 'W') continue;  // actors are gone
      handle_control(from, frame);
    }
  }
}

void Broker::handle_control(zmq::message_t& from, zmq::message_t& frame) {
  if (from.size() == 9 && from.data<char>()[0] == 'W' && !plan_.listen_endpoint.empty()) {
    try {
      msgpack::zone zone;
      ControlFrame f = internal::decode_control(zone, frame.data<char>(), frame.size());
      const std::string rid = from.to_string();
      if (queue_for_next_run(rid, frame, internal::kind_of(f))) return;
      handle_worker(rid, f);
    } catch (const std::exception& e) {
      reject(std::string("bad message from a worker: ") + e.what());
    }
    return;
  }
  const auto peer = internal::parse_actor_routing_id(from.data(), from.size());
  if (!peer || peer->id >= reports_.size()) {
    reject("control message from an unknown peer");
    return;
  }
  const std::optional<std::uint32_t> id = peer->id;
  ActorReport& r = reports_[*id];
  // A restarted actor's predecessor, gone: what it still had on its way
  // (stats, a late report) is not its successor's.
  if (peer->incarnation != r.incarnation) return;
  const internal::ActorSlot& slot = plan_.actors[*id];
  try {
    msgpack::zone zone;
    ControlFrame f = internal::decode_control(zone, frame.data<char>(), frame.size());
    switch (internal::kind_of(f)) {
      case Ctl::hello: {
        internal::Hello& hello = std::get<internal::Hello>(f);
        if (r.hello) throw EncodeError("second hello");
        if (hello.incarnation != r.incarnation) throw EncodeError("hello of another incarnation");
        r.hello = true;
        r.hello_by.reset();
        r.pid = hello.pid;
        r.host = std::move(hello.host);
        r.endpoint = std::move(hello.data_endpoint);
        if ((plan_.remote(*id) || actor_worker_[*id] >= 0) && hooks_.remote_started) {
          hooks_.remote_started(*id, r.pid);
        }
        // `restarted`: for this actor alone, restarted during the run.
        auto start_frame = [&](bool restarted) {
          internal::Start start;
          for (const ActorReport& x : reports_) {
            start.endpoints.push_back(x.endpoint);
            start.incarnations.push_back(x.incarnation);
          }
          if (restarted) {
            const auto it = puts_taken_.find(*id);
            if (it != puts_taken_.end()) start.taken = it->second.flat();
          }
          return encode(start);
        };
        if (r.incarnation > 0 && started_) {
          // A restarted actor: the run is under way. It gets the endpoints;
          // everyone else learns where it is, and its senders resume.
          if (abort_reason_) return;
          send_to(*id, start_frame(true));
          internal::Restarted news{*id, r.incarnation, r.endpoint, std::move(dead_pending_[*id])};
          dead_pending_.erase(*id);
          const std::string frame = encode(news);
          for (std::uint32_t k = 0; k < reports_.size(); ++k) {
            if (k != *id && reports_[k].hello && !reports_[k].exitcode) send_to(k, frame);
          }
          logger_->info("[{}] ({}) restarted (pid {}, restart {})", slot.group_name, slot.name,
                        r.pid, r.incarnation);
          return;
        }
        // An actor restarted before the start barrier takes its
        // predecessor's place in it (which may have said hello already): the
        // start frame tells everyone its incarnation.
        if (r.in_barrier) return;
        r.in_barrier = true;
        if (++hellos_ == reports_.size() && !abort_reason_) {
          started_ = true;
          const std::string start = start_frame(false);
          for (std::uint32_t k = 0; k < reports_.size(); ++k) send_to(k, start);
        }
        return;
      }
      case Ctl::put: {
        const internal::Put& put = std::get<internal::Put>(f);
        const std::uint64_t queue = put.queue_id;
        const bool bounded = put.bounded;
        const char* data = put.message.bytes.data();
        const std::size_t size = put.message.bytes.size();
        if (put.origin.bytes.size() == internal::Origin::kSize) {
          // From a supervised actor inside recv(): once only, whatever its
          // successors do again.
          const internal::Origin o = internal::Origin::read(put.origin.bytes.data());
          const std::uint64_t limit = internal::origin_limit(plan_, o, *id);
          if (limit == 0) throw EncodeError("put with an unknown origin");
          if (!puts_taken_[*id].insert(o, limit)) {
            if (bounded) send_to(*id, encode(internal::PutAck{queue}));
            return;
          }
        } else if (!put.origin.bytes.empty()) {
          throw EncodeError("put with a malformed origin");
        }
        if (standalone_) {
          // The driver owns the queues; it acknowledges a bounded put (qack)
          // once the message is in.
          if (!driver_rid_.empty()) {
            send_to_worker(driver_rid_, encode(internal::QPut{*id, queue, bounded, put.message}));
          }
          return;
        }
        if (bounded) {
          bool queued_behind = false;
          for (const PendingPut& p : pending_puts_) queued_behind |= p.queue == queue;
          if (queued_behind) {
            pending_puts_.push_back({*id, queue, std::string(data, size)});
            return;
          }
        }
        std::string refusal;
        internal::Delivery d = hooks_.deliver(queue, data, size, refusal);
        if (d == internal::Delivery::full) {
          pending_puts_.push_back({*id, queue, std::string(data, size)});
          return;
        }
        if (d == internal::Delivery::refused) {
          fail_actor(*id, refusal);
          return;
        }
        if (bounded) send_to(*id, encode(internal::PutAck{queue}));
        return;
      }
      case Ctl::fail: {
        internal::Fail& fail = std::get<internal::Fail>(f);
        if (!r.failure) {
          r.failure = std::move(fail.text);
          // Failed before its hello (it could not bind its inbox, say).
          if (r.host.empty()) r.host = host_of(*id);
          logger_->error("[{}] ({}) failed (pid {} on {}): {}", slot.group_name, slot.name, r.pid,
                         r.host, *r.failure);
        }
        logs_expected_[*id] = fail.log_count;
        ack_since_[*id] = std::chrono::steady_clock::now();
        // Supervised: its exit decides (a restart), once it has left.
        if (supervisor_.supervises(*id) && !abort_reason_) return;
        abort("actor '" + slot.name + "' in group '" + slot.group_name + "' failed");
        return;
      }
      case Ctl::stats: {
        const internal::Stats& stats = std::get<internal::Stats>(f);
        for (const auto& [e, counts] : stats.out) {
          if (e >= plan_.edges.size() || plan_.edges[e].from != slot.group) {
            throw EncodeError("stats for an edge that does not leave its group");
          }
        }
        for (const auto& [e, count] : stats.in) {
          if (e >= plan_.edges.size() || plan_.edges[e].to != slot.group) {
            throw EncodeError("stats for an edge that does not enter its group");
          }
        }
        // A pair is an edge of the actor's group and an actor at its other end.
        auto check_pairs = [&](const internal::EdgeCounts& pairs, bool entering) {
          for (const auto& [pair, n] : pairs) {
            const auto [e, peer] = pair;
            if (e >= plan_.edges.size() ||
                (entering ? plan_.edges[e].to : plan_.edges[e].from) != slot.group) {
              throw EncodeError("stats for a pair of an edge that does not " +
                                std::string(entering ? "enter" : "leave") + " its group");
            }
            const internal::GroupSlot& other =
                plan_.groups[entering ? plan_.edges[e].from : plan_.edges[e].to];
            if (peer < other.first || peer >= other.first + other.size) {
              throw EncodeError("stats for a pair with an actor not at the edge's other end");
            }
          }
        };
        check_pairs(stats.before, true);
        check_pairs(stats.settled, false);
        r.sent_total = stats.sent;
        r.received_total = stats.received;
        r.waiting = stats.waiting;
        for (const auto& [e, counts] : stats.out) r.edge_out[e] = counts;
        for (const auto& [e, count] : stats.in) r.edge_in[e] = count;
        PairCounts before(stats.before.begin(), stats.before.end());
        PairCounts settled(stats.settled.begin(), stats.settled.end());
        // Those pairs change only when a restart touches them; then the
        // actors at their other ends count differently too.
        std::set<std::uint32_t> peers;
        if (before != r.taken_before || settled != r.settled_now) {
          for (const PairCounts* pairs : {&before, &settled, &r.taken_before, &r.settled_now}) {
            for (const auto& [pair, n] : *pairs) peers.insert(pair.second);
          }
        }
        r.taken_before = std::move(before);
        r.settled_now = std::move(settled);
        publish_actor(*id);
        for (std::uint32_t peer : peers) publish_actor(peer);
        for (const auto& [e, counts] : stats.out) publish_edge(e);
        for (const auto& [e, count] : stats.in) publish_edge(e);
        return;
      }
      case Ctl::bye: {
        const internal::Bye& bye = std::get<internal::Bye>(f);
        if (r.bye) throw EncodeError("second bye");
        if (bye.outputs.size() != plan_.outputs(slot.group).size()) {
          throw EncodeError("bye with counts for another number of outputs");
        }
        r.bye = true;
        logs_expected_[*id] = bye.log_count;
        ack_since_[*id] = std::chrono::steady_clock::now();
        for (const auto& [pair, count] : bye.sent) r.sent[pair] = count;
        for (const auto& [pair, count] : bye.received) r.received[pair] = count;
        for (const auto& [pair, count] : bye.settled) r.settled[pair] = count;
        for (const auto& [pair, count] : bye.not_sent) r.not_sent[pair] = count;
        r.outputs = bye.outputs;
        r.rejected = bye.rejected;
        // Its stream has ended and every receiver took all of it: nothing of
        // it waits any more, whatever credits were still to come back.
        publish_actor(*id);
        for (std::uint32_t e = 0; e < plan_.edges.size(); ++e) {
          if (plan_.edges[e].from == slot.group) publish_edge(e);
        }
        return;
      }
      default:
        throw EncodeError(std::string("unexpected control frame ") + internal::name_of(f));
    }
  } catch (const std::exception& e) {
    reject(std::string("bad control message from ") + slot.name + ": " + e.what());
  }
}

void Broker::handle_log(const zmq::message_t& frame) {
  try {
    msgpack::zone zone;
    // Strict: a short record must not pass as actor 0's and count as one of its records.
    const auto [id, level, text] =
        internal::decode<internal::LogRecord>(zone, frame.data<char>(), frame.size());
    if (id >= reports_.size()) throw EncodeError("unknown actor id");
    if (level > static_cast<std::uint8_t>(Level::critical)) throw EncodeError("bad level");
    const internal::ActorSlot& slot = plan_.actors[id];
    logger_->log(static_cast<spdlog::level::level_enum>(level), "[{}] ({}) {}", slot.group_name,
                 slot.name, text);
    publish(internal::MonitorLog{slot.group_name, slot.name, level, text, unix_ms()});
    if (standalone_ && !driver_rid_.empty()) {
      send_to_worker(driver_rid_, encode(internal::DLog{id, level, text}));
    }
    ++reports_[id].logs_received;
  } catch (const std::exception& e) {
    reject(std::string("bad log record: ") + e.what());
  }
}

void Broker::settle_pending_acks(bool force) {
  const auto now = std::chrono::steady_clock::now();
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    if (logs_expected_[id] == kNotAnnounced) continue;
    ActorReport& r = reports_[id];
    const bool late = force || now - ack_since_[id] > kLogWait;
    if (r.logs_received < logs_expected_[id] && !late) continue;
    if (r.logs_received < logs_expected_[id]) {
      logger_->warn("[{}] ({}) {} log record(s) did not arrive", plan_.actors[id].group_name,
                    plan_.actors[id].name, logs_expected_[id] - r.logs_received);
    }
    logs_expected_[id] = kNotAnnounced;
    send_to(id, encode(internal::Ack{}));
  }
}

void Broker::retry_puts() {
  std::set<std::uint64_t> still_full;
  for (auto it = pending_puts_.begin(); it != pending_puts_.end();) {
    if (still_full.count(it->queue)) {
      ++it;
      continue;
    }
    std::string refusal;
    const internal::Delivery d =
        hooks_.deliver(it->queue, it->bytes.data(), it->bytes.size(), refusal);
    if (d == internal::Delivery::full) {
      still_full.insert(it->queue);
      ++it;
      continue;
    }
    if (d == internal::Delivery::refused) {
      fail_actor(it->actor, refusal);
    } else {
      send_to(it->actor, encode(internal::PutAck{it->queue}));
    }
    it = pending_puts_.erase(it);
  }
}

void Broker::fail_actor(std::uint32_t id, const std::string& reason) {
  ActorReport& r = reports_[id];
  const internal::ActorSlot& slot = plan_.actors[id];
  if (abort_reason_) {
    // The run is stopping already (a handler that threw, Ctrl-C, another
    // failure) and the abort ends this actor too: its put is only one more
    // thing the stop leaves undone, not its failure, which would hide the
    // real reason.
    logger_->warn("[{}] ({}) a put was dropped as the run stops: {}", slot.group_name, slot.name,
                  reason);
    return;
  }
  // Also once the actor has ended: a driver's answer to an unbounded put can
  // come after the actor's bye, and the put is lost all the same.
  if (!r.failure) {
    r.failure = reason;
    logger_->error("[{}] ({}) failed (pid {} on {}): {}", slot.group_name, slot.name, r.pid, r.host,
                   reason);
  }
  abort("actor '" + slot.name + "' in group '" + slot.group_name + "' failed");
}

// Standalone: a driver's join while another driver's run is served, and a
// worker's join too late for it, wait for the next run (kept alive by pings);
// so do their pings. Returns whether the frame was taken.
bool Broker::queue_for_next_run(const std::string& rid, const zmq::message_t& frame, Ctl kind) {
  if (!standalone_) return false;
  const auto now = std::chrono::steady_clock::now();
  for (QueuedJoin& q : queued_) {
    if (q.routing_id == rid) {
      q.last_seen = now;
      return true;
    }
  }
  const bool known = std::any_of(workers_.begin(), workers_.end(),
                                 [&](const WorkerReport& w) { return w.routing_id == rid; });
  const bool later = (kind == Ctl::dhello && !driver_rid_.empty()) ||
                     (kind == Ctl::whello && (assigned_ || abort_reason_));
  if (known || !later) return false;
  constexpr std::size_t kMostQueued = 256;
  if (queued_.size() >= kMostQueued) {
    reject("too many joins waiting for the next run");
    return true;
  }
  queued_.push_back({rid, std::string(frame.data<char>(), frame.size()), now});
  logger_->info("a {} joined; it waits for the next run", kind == Ctl::dhello ? "driver" : "worker");
  return true;
}

void Broker::handle_worker(const std::string& rid, ControlFrame& frame) {
  const Ctl kind = internal::kind_of(frame);
  auto it = std::find_if(workers_.begin(), workers_.end(),
                         [&](const WorkerReport& w) { return w.routing_id == rid; });
  if (it != workers_.end() && it->lost) {
    // Taken for lost, and its supervised actors started elsewhere: whatever
    // of its own still runs must stop.
    send_to_worker(rid, encode(internal::Abort{"this host was taken for lost (no word from it for " +
                                               std::to_string(internal::kHostTimeout.count()) +
                                               " ms)"}));
    return;
  }
  if (it != workers_.end() && !it->ready) {
    // Heard from again after its assignment: its new socket is connected.
    it->ready = true;
    for (const std::string& f : it->backlog) send_to_worker(rid, f);
    it->backlog.clear();
  }
  if (kind == Ctl::whello || kind == Ctl::dhello) {
    if (it != workers_.end()) {
      it->last_seen = std::chrono::steady_clock::now();
      return;  // the same worker, reconnected after forking its actors
    }
    const bool driver = kind == Ctl::dhello;
    if (driver && (!standalone_ || !driver_rid_.empty())) {
      send_to_worker(rid, encode(internal::End{false, "this broker already serves a driver"}));
      return;
    }
    if (abort_reason_ || (assigned_ && (driver || !takes_late_workers()))) {
      send_to_worker(rid, encode(internal::End{false, "the run needs no more workers"}));
      return;
    }
    WorkerReport w;
    w.routing_id = rid;
    if (driver) {
      internal::DHello& hello = std::get<internal::DHello>(frame);
      w.host = std::move(hello.host);
      w.pid = hello.pid;
      w.address = std::move(hello.address);
      w.driver = true;
      driver_rid_ = rid;
      logger_->info("driver joined: {} ({}), pid {}", w.host, w.address, w.pid);
    } else {
      internal::WHello& hello = std::get<internal::WHello>(frame);
      w.host = std::move(hello.host);
      if (hello.fingerprint != plan_.fingerprint()) {
        // Say which parts differ.
        const auto& theirs = hello.parts;
        std::vector<std::string> differ;
        for (const auto& [name, text] : plan_.parts()) {
          auto it = std::find_if(theirs.begin(), theirs.end(),
                                 [&name = name](const auto& p) { return p.first == name; });
          if (it == theirs.end() || it->second == text) continue;
          differ.push_back(name + " ('" + it->second + "' against the driver's '" + text + "')");
        }
        const std::string why =
            "its program built a different relay (" + hello.description + ") than the driver's (" +
            plan_.describe() + "): " +
            (differ.empty() ? std::string("they differ in a way it does not say (another version?)")
                            : "they differ in " + fmt::format("{}", fmt::join(differ, "; ")));
        logger_->warn("turned away the worker on {} ({}): {}", w.host, hello.address, why);
        send_to_worker(rid, encode(internal::End{false, why}));
        return;
      }
      w.labels = std::move(hello.labels);
      w.pid = hello.pid;
      w.address = std::move(hello.address);
      logger_->info("worker joined: {} ({}), pid {}{}", w.host, w.address, w.pid,
                    w.labels.empty() ? "" : ", labels " + fmt::format("{}", fmt::join(w.labels, ",")));
    }
    w.last_seen = std::chrono::steady_clock::now();
    workers_.push_back(std::move(w));
    if (assigned_) {
      // Mid-run: it stands by to take supervised actors of a lost host.
      WorkerReport& late = workers_.back();
      send_to_worker(rid, encode(internal::Assign{{}, plan_.listen_endpoint, log_tcp_endpoint_}));
      late.ready = false;
      logger_->info("worker {} joined mid-run: it takes actors of lost hosts", late.host);
      place_waiting();
      return;
    }
    const std::size_t joined = workers_.size() - (driver_rid_.empty() ? 0 : 1);
    if (joined >= plan_.expect_workers && (!standalone_ || !driver_rid_.empty())) {
      assign_workers();
    }
    return;
  }
  if (it == workers_.end()) throw EncodeError("message from a worker that did not join");
  it->last_seen = std::chrono::steady_clock::now();
  switch (kind) {
    case Ctl::ping:
      return;
    case Ctl::wend:
      it->ended = true;
      return;
    case Ctl::wexit: {
      const internal::WExit& exit = std::get<internal::WExit>(frame);
      const std::uint32_t id = exit.actor;
      if (id >= actor_worker_.size() || actor_worker_[id] != it - workers_.begin()) {
        throw EncodeError("exit of an actor that is not this worker's");
      }
      // An earlier incarnation's (its successor may be running already).
      if (exit.incarnation != reports_[id].incarnation || reports_[id].exitcode) return;
      if (exit.in_recv) {
        remote_in_recv_[id] = InRecv{exit.edge, exit.sender, exit.sender_incarnation, exit.seq,
                                     exit.size, std::string(exit.head.bytes)};
      }
      // The driver's handle first: a supervised actor's report starts over
      // in actor_exited().
      reports_[id].exitcode = exit.exitcode;
      actor_ended_remotely(id);
      actor_exited(id, exit.exitcode);
      return;
    }
    case Ctl::dabort:
    case Ctl::qack:
      if (!it->driver) throw EncodeError("a driver's message from a worker");
      handle_driver(*it, frame);
      return;
    default:
      throw EncodeError(std::string("unexpected frame from a worker: ") + internal::name_of(frame));
  }
}

void Broker::handle_driver(WorkerReport& driver, ControlFrame& frame) {
  if (const auto* dabort = std::get_if<internal::DAbort>(&frame)) {
    const std::string& reason = dabort->reason;
    const int sig = dabort->signal;
    logger_->warn("the driver on {} stops the run: {}", driver.host, reason);
    // Interrupted by a signal: actors killed by the same SIGTERM of their
    // process group are part of it. Else its handler threw.
    if (sig != 0) {
      interrupt(sig, reason);
    } else {
      abort(reason);
    }
    return;
  }
  // qack: a bounded put is in the driver's queue, or (with an error) a put
  // the driver cannot deliver, which fails its actor.
  const internal::QAck& qack = std::get<internal::QAck>(frame);
  const std::uint32_t id = qack.actor;
  if (id >= reports_.size()) throw EncodeError("put acknowledged for an unknown actor");
  if (!qack.error.empty()) {
    fail_actor(id, qack.error);
    return;
  }
  send_to(id, encode(internal::PutAck{qack.queue_id}));
}

// Tells whoever holds handles on the driver's side that a remote actor ended.
void Broker::actor_ended_remotely(std::uint32_t id) {
  const ActorReport& r = reports_[id];
  if (hooks_.remote_ended) hooks_.remote_ended(id, r.pid, *r.exitcode);
  if (standalone_ && !driver_rid_.empty() &&
      (actor_worker_[id] < 0 || workers_[static_cast<std::size_t>(actor_worker_[id])].routing_id !=
                                    driver_rid_)) {
    send_to_worker(driver_rid_, encode(internal::REnded{id, r.pid, *r.exitcode}));
  }
}

void Broker::assign_workers() {
  assigned_ = true;
  start_by_ = std::chrono::steady_clock::now() + internal::start_wait();
  std::vector<std::vector<std::uint32_t>> given(workers_.size());
  for (const internal::GroupSlot& g : plan_.groups) {
    std::vector<std::size_t> fit;
    std::string label;
    if (!plan_.remote(g.first)) {
      if (!standalone_) continue;  // forked by the driver, which hosts this broker
      // On the driver's host: the driver runs them.
      for (std::size_t w = 0; w < workers_.size(); ++w) {
        if (workers_[w].driver) fit.push_back(w);
      }
    } else {
      label = *plan_.placement[g.first];
      for (std::size_t w = 0; w < workers_.size(); ++w) {
        const auto& labels = workers_[w].labels;
        if (workers_[w].driver) continue;
        if (label.empty() || std::find(labels.begin(), labels.end(), label) != labels.end()) {
          fit.push_back(w);
        }
      }
    }
    if (fit.empty()) {
      abort(label.empty() ? "group '" + g.name + "' is placed on workers, but none joined"
                          : "group '" + g.name + "' is placed on workers labelled '" + label +
                                "', and none of the " + std::to_string(workers_.size()) +
                                " that joined has that label");
      return;
    }
    for (std::uint32_t i = 0; i < g.size; ++i) {
      const std::size_t w = fit[i % fit.size()];
      given[w].push_back(g.first + i);
      actor_worker_[g.first + i] = static_cast<int>(w);
    }
  }
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    workers_[w].actors = given[w];
    send_to_worker(workers_[w].routing_id,
                   encode(internal::Assign{given[w], plan_.listen_endpoint, log_tcp_endpoint_}));
    workers_[w].ready = false;
    std::vector<std::string> names;
    for (std::uint32_t id : given[w]) names.push_back(plan_.actors[id].name);
    logger_->info("{} {} runs {}", workers_[w].driver ? "driver" : "worker", workers_[w].host,
                  names.empty() ? "nothing" : fmt::format("{}", fmt::join(names, ", ")));
  }
}

void Broker::check_stuck_senders() {
  // A sender sends end of stream only after shutdown(), and says bye as soon as
  // every receiver has acknowledged it. One still running well after every
  // receiver it feeds, on every edge, has ended cleanly will never finish:
  // something else (an impostor on its routing id, a lost frame) ended those
  // streams. Say so rather than wait for ever.
  if (abort_reason_) return;
  const auto now = std::chrono::steady_clock::now();
  for (std::uint32_t g = 0; g < plan_.groups.size(); ++g) {
    const std::vector<std::uint32_t> out = plan_.edges_from(g);
    if (out.empty()) continue;
    std::optional<std::chrono::steady_clock::time_point> last_end;
    bool all_ended = true;
    for (std::uint32_t e : out) {
      const internal::GroupSlot& next = plan_.groups[plan_.edges[e].to];
      for (std::uint32_t r = next.first; all_ended && r < next.first + next.size; ++r) {
        all_ended = reports_[r].exitcode && reports_[r].bye;
        if (all_ended && (!last_end || reports_[r].ended_at > *last_end)) {
          last_end = reports_[r].ended_at;
        }
      }
    }
    if (!all_ended || !last_end || now - *last_end < kStuckAfter) continue;
    const internal::GroupSlot& from = plan_.groups[g];
    for (std::uint32_t s = from.first; s < from.first + from.size; ++s) {
      if (reports_[s].exitcode || reports_[s].bye) continue;
      reports_[s].failure = "still sending after every actor it sends to ended its stream: "
                            "its end of stream was never acknowledged (another process took "
                            "its place on a receiver?)";
      logger_->error("[{}] ({}) {}", plan_.actors[s].group_name, plan_.actors[s].name,
                     *reports_[s].failure);
      abort("actor '" + plan_.actors[s].name + "' cannot finish its stream");
      return;
    }
  }
}

std::string Broker::host_of(std::uint32_t id) const {
  const int w = actor_worker_[id];
  if (w < 0) return internal::host_name();  // forked by this broker's driver
  const WorkerReport& worker = workers_[static_cast<std::size_t>(w)];
  return worker.host + " (" + worker.address + ")";
}

void Broker::check_start() {
  // An actor that cannot reach the broker's control endpoint (a firewall
  // that opens only some ports) never says hello, and every other actor
  // would wait for the start frame for ever.
  if (started_ || abort_reason_ || !start_by_ || std::chrono::steady_clock::now() < *start_by_) {
    return;
  }
  const std::string seconds = fmt::format("{:.1f}", internal::start_wait().count() / 1000.0);
  std::vector<std::string> missing;
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    ActorReport& r = reports_[id];
    if (r.hello || r.exitcode) continue;
    const bool tcp = standalone_ || plan_.remote(id);
    r.host = host_of(id);
    const std::string given = "control " + (tcp ? plan_.listen_endpoint : plan_.control_endpoint) +
                              ", log " + (tcp ? log_tcp_endpoint_ : plan_.log_endpoint);
    r.failure = "did not say hello within " + seconds + " s of the start barrier (given " +
                given + "; can it reach them?)";
    logger_->error("[{}] ({}) on {} {}", plan_.actors[id].group_name, plan_.actors[id].name, r.host,
                   *r.failure);
    missing.push_back(plan_.actors[id].name + " on " + r.host + " (" + given + ")");
  }
  if (missing.empty()) return;  // the rest exited: actor_exited() stopped the run
  const std::string why = "start barrier: " + std::to_string(missing.size()) +
                          " actor(s) did not say hello within " + seconds +
                          " s: " + fmt::format("{}", fmt::join(missing, "; "));
  logger_->error("{}", why);
  abort(why);
}

void Broker::check_workers() {
  const auto now = std::chrono::steady_clock::now();
  if (!assigned_ && !abort_reason_ && now - began_ > plan_.worker_wait) {
    std::vector<std::string> hosts;
    for (const WorkerReport& w : workers_) {
      if (!w.driver) hosts.push_back(w.host);
    }
    abort("waited " + std::to_string(plan_.worker_wait.count() / 1000.0).substr(0, 4) +
          " s for " + std::to_string(plan_.expect_workers) + " worker(s) at " +
          plan_.listen_endpoint + "; " + std::to_string(hosts.size()) + " joined" +
          (hosts.empty() ? "" : " (" + fmt::format("{}", fmt::join(hosts, ", ")) + ")"));
  }
  if (now >= next_ping_) {
    next_ping_ = now + internal::kPingPeriod;
    const std::string ping = encode(internal::Pong{});
    for (const WorkerReport& w : workers_) {
      if (!w.lost) send_to_worker(w.routing_id, ping);
    }
    // Joins for the next run: still there?
    std::erase_if(queued_, [&](const QueuedJoin& q) { return now - q.last_seen > internal::kHostTimeout; });
    for (const QueuedJoin& q : queued_) send_to_worker(q.routing_id, ping);
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    WorkerReport& w = workers_[i];
    if (w.lost || now - w.last_seen <= internal::kHostTimeout) continue;
    bool running = false;
    for (std::uint32_t id : w.actors) running = running || !reports_[id].exitcode;
    // Done with a worker whose actors all ended; never with the driver, which
    // owns the queues and the outcome.
    if (!running && assigned_ && !w.driver) continue;
    w.lost = true;
    const std::string why = "host '" + w.host + "' (" + w.address + ") lost: no word from its " +
                            (w.driver ? "driver" : "worker") + " (pid " + std::to_string(w.pid) +
                            ") for " + std::to_string(internal::kHostTimeout.count()) + " ms";
    // Its actors are lost with it. The run goes on only if every one of them
    // is supervised: they start again on other workers.
    bool unsupervised = w.driver;
    const std::vector<std::uint32_t> lost = w.actors;
    for (std::uint32_t id : lost) {
      if (!reports_[id].exitcode && !supervisor_.supervises(id)) unsupervised = true;
    }
    if (unsupervised || abort_reason_) {
      logger_->error("{}", why);
    } else {
      logger_->warn("{}: its actors start again on other workers", why);
    }
    for (std::uint32_t id : lost) {
      if (reports_[id].exitcode) continue;
      reports_[id].failure = why;
      reports_[id].exitcode = -SIGKILL;
      actor_ended_remotely(id);
      if (!unsupervised) actor_exited(id, -SIGKILL);  // supervise() places it again
    }
    if (unsupervised) abort(why);
  }
  const auto waited = std::find_if(unplaced_.begin(), unplaced_.end(),
                                   [&](const auto& u) { return now >= u.second; });
  if (waited != unplaced_.end() && !abort_reason_) {
    const std::uint32_t id = waited->first;
    const internal::ActorSlot& slot = plan_.actors[id];
    const std::optional<std::string>& label = plan_.placement[id];
    std::vector<std::string> hosts;
    for (const WorkerReport& x : workers_) {
      if (x.driver) continue;
      hosts.push_back(x.host + (x.lost ? " (lost)"
                                       : x.labels.empty() ? " (no labels)"
                                                          : " (labels " +
                                                                fmt::format("{}", fmt::join(x.labels, ",")) +
                                                                ")"));
    }
    ActorReport& r = reports_[id];
    r.failure = "lost its host, and no worker that group '" + slot.group_name +
                "''s placement (" +
                (label && !label->empty() ? "workers labelled '" + *label + "'" : "any worker") +
                ") allows was there to start it again within " +
                fmt::format("{:.1f}", plan_.worker_wait.count() / 1000.0) + " s (workers: " +
                (hosts.empty() ? std::string("none") : fmt::format("{}", fmt::join(hosts, ", "))) + ")";
    r.exitcode = -SIGKILL;
    unplaced_.erase(waited);
    logger_->error("[{}] ({}) {}", slot.group_name, slot.name, *r.failure);
    abort("group '" + slot.group_name + "' has no host left that its placement allows");
  }
}

namespace {

// The sum over the pairs of edge `e` in `counts`; with `peer`, of that pair only.
std::uint64_t sum_on_edge(const PairCounts& counts, std::uint32_t e,
                          std::optional<std::uint32_t> peer = std::nullopt) {
  if (peer) {
    const auto it = counts.find({e, *peer});
    return it == counts.end() ? 0 : it->second;
  }
  std::uint64_t n = 0;
  for (auto it = counts.lower_bound({e, 0}); it != counts.end() && it->first.first == e; ++it) {
    n += it->second;
  }
  return n;
}

std::uint64_t total(const PairCounts& counts) {
  std::uint64_t n = 0;
  for (const auto& [pair, count] : counts) n += count;
  return n;
}

}  // namespace

Broker::Counts Broker::actor_counts(std::uint32_t id) const {
  const ActorReport& r = reports_[id];
  const std::uint32_t group = plan_.actors[id].group;
  // Its current process's counts, what its ended ones sent that receivers
  // finished before a restart of theirs, and what they took from it.
  Counts out{r.sent_total + total(r.settled_ended), r.received_total + total(r.taken_before_ended),
             r.bye ? 0 : r.waiting};
  for (std::uint32_t e = 0; e < plan_.edges.size(); ++e) {
    const internal::EdgeSlot& edge = plan_.edges[e];
    if (edge.from == group) {
      const internal::GroupSlot& to = plan_.groups[edge.to];
      for (std::uint32_t t = to.first; t < to.first + to.size; ++t) {
        out.sent += sum_on_edge(reports_[t].taken_before, e, id) +
                    sum_on_edge(reports_[t].taken_before_ended, e, id);
      }
    }
    if (edge.to == group) {
      // Received by its earlier processes: what its senders count settled.
      const internal::GroupSlot& from = plan_.groups[edge.from];
      for (std::uint32_t s = from.first; s < from.first + from.size; ++s) {
        out.received += sum_on_edge(reports_[s].settled_now, e, id) +
                        sum_on_edge(reports_[s].settled_ended, e, id);
      }
    }
  }
  return out;
}

Broker::Counts Broker::edge_counts(std::uint32_t e) const {
  const internal::EdgeSlot& edge = plan_.edges[e];
  const internal::GroupSlot& from = plan_.groups[edge.from];
  const internal::GroupSlot& to = plan_.groups[edge.to];
  Counts out;
  // The same sums as actor_counts(), over the edge's pairs.
  for (std::uint32_t s = from.first; s < from.first + from.size; ++s) {
    const ActorReport& r = reports_[s];
    const std::uint64_t settled = sum_on_edge(r.settled_now, e) + sum_on_edge(r.settled_ended, e);
    out.sent += sum_on_edge(r.settled_ended, e);
    out.received += settled;
    if (auto it = r.edge_out.find(e); it != r.edge_out.end()) {
      out.sent += it->second.first;
      if (!r.bye) out.waiting += it->second.second;
    }
  }
  for (std::uint32_t t = to.first; t < to.first + to.size; ++t) {
    const ActorReport& r = reports_[t];
    out.sent += sum_on_edge(r.taken_before, e) + sum_on_edge(r.taken_before_ended, e);
    out.received += sum_on_edge(r.taken_before_ended, e);
    if (auto it = r.edge_in.find(e); it != r.edge_in.end()) out.received += it->second;
  }
  return out;
}

void Broker::publish_actor(std::uint32_t id) {
  if (!monitor_) return;
  if (monitor_actor_counts_.size() != reports_.size()) {
    monitor_actor_counts_.resize(reports_.size());
  }
  const Counts now = actor_counts(id);
  auto& [sent, received] = monitor_actor_counts_[id];
  sent = std::max(sent, now.sent);
  received = std::max(received, now.received);
  const internal::ActorSlot& slot = plan_.actors[id];
  publish(
      internal::MonitorStats{slot.group_name, slot.name, sent, received, now.waiting, unix_ms()});
}

void Broker::publish_edge(std::uint32_t e) {
  if (!monitor_) return;
  if (monitor_edge_counts_.size() != plan_.edges.size()) {
    monitor_edge_counts_.resize(plan_.edges.size());
  }
  const Counts now = edge_counts(e);
  auto& [sent, received] = monitor_edge_counts_[e];
  sent = std::max(sent, now.sent);
  received = std::max(received, now.received);
  publish(internal::MonitorEdge{plan_.edge_name(e), sent, received, now.waiting, unix_ms()});
}

const char* Broker::actor_state(std::uint32_t id) const {
  const ActorReport& r = reports_[id];
  if (r.exitcode) return failed(id) ? "failed" : r.stopped ? "stopped" : "ended";
  if (r.failure) return "failed";
  if (r.incarnation > 0 && !r.hello) return "restarting";
  return r.hello && started_ ? "running" : "starting";
}

internal::MonitorActor Broker::actor_record(std::uint32_t id) const {
  const ActorReport& r = reports_[id];
  const internal::ActorSlot& slot = plan_.actors[id];
  internal::MonitorActor out;
  out.id = id;
  out.group = slot.group_name;
  out.name = slot.name;
  out.host = r.host;
  out.pid = r.pid;
  out.state = actor_state(id);
  out.incarnation = r.incarnation;
  out.restarts = supervisor_.restarts(id);
  out.unix_ms = unix_ms();
  return out;
}

void Broker::publish_plan() {
  internal::MonitorPlan out{plan_.layout(), {}, {}, {}, plan_.window_bytes(), unix_ms()};
  for (const internal::GroupSlot& g : plan_.groups) out.groups.push_back({g.name, g.size});
  for (std::uint32_t e = 0; e < plan_.edges.size(); ++e) {
    const internal::EdgeSlot& edge = plan_.edges[e];
    out.edges.push_back({plan_.edge_name(e), plan_.groups[edge.from].name, edge.output,
                         plan_.groups[edge.to].name, static_cast<std::uint8_t>(edge.grouping),
                         edge.key, plan_.window(e)});
  }
  for (std::uint32_t id = 0; id < reports_.size(); ++id) out.actors.push_back(actor_record(id));
  publish(out);
}

void Broker::watch_monitor() {
  if (!monitor_) return;
  // An XPUB hands up each subscription as [1, topic...]; the plan goes to
  // whoever subscribes to it (or to everything). Those of kPlanEvery make
  // one plan record: what subscribers can cost the run is bounded.
  try {
    zmq::message_t sub;
    for (int i = 0; i < 1000 && monitor_.recv(sub, zmq::recv_flags::dontwait); ++i) {
      if (sub.size() < 1 || sub.data<unsigned char>()[0] != 1) continue;
      const std::string_view topic(sub.data<char>() + 1, sub.size() - 1);
      if (std::string_view(internal::MonitorPlan::kTopic).substr(0, topic.size()) == topic) {
        plan_wanted_ = true;
      }
    }
  } catch (const zmq::error_t&) {
    // An onlooker's trouble never stops the run.
  }
  if (monitor_published_.size() != reports_.size()) monitor_published_.resize(reports_.size());
  if (started_ && !plan_at_start_) {
    plan_at_start_ = true;
    plan_wanted_ = true;
  }
  // Each round, without allocating unless something changed: the broker
  // thread also serves puts and log records.
  std::vector<std::uint32_t> changed;
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    // An actor killed by SIGTERM waits for its verdict (decide_exits()):
    // failed or stopped is not known yet.
    if (std::any_of(undecided_.begin(), undecided_.end(),
                    [id](const auto& u) { return u.first == id; })) {
      continue;
    }
    MonitorSeen& seen = monitor_published_[id];
    const char* state = actor_state(id);
    const ActorReport& r = reports_[id];
    if (seen.state && std::strcmp(seen.state, state) == 0 && seen.pid == r.pid &&
        seen.host == r.host) {
      continue;
    }
    seen = {state, r.pid, r.host};
    changed.push_back(id);
  }
  const auto now = std::chrono::steady_clock::now();
  if (plan_wanted_ && (now - plan_sent_at_ >= kPlanEvery || all_exited())) {
    plan_wanted_ = false;
    plan_sent_at_ = now;
    publish_plan();  // holds every actor as it is now
    return;
  }
  for (std::uint32_t id : changed) publish(actor_record(id));
}

template <class T>
void Broker::publish(const T& record) {
  if (!monitor_) return;
  try {
    internal::Buffer b;
    encode(b, record);
    monitor_.send(zmq::buffer(std::string_view(T::kTopic)), zmq::send_flags::sndmore);
    (void)internal::send_frame(monitor_, b);
  } catch (const zmq::error_t&) {
    // A monitor is an onlooker: it never stops the run.
  }
}

void Broker::send_to_worker(const std::string& rid, const std::string& frame) {
  for (WorkerReport& w : workers_) {
    if (w.routing_id == rid && !w.ready) {
      w.backlog.push_back(frame);
      return;
    }
  }
  try {
    control_.send(zmq::buffer(rid), zmq::send_flags::sndmore);
    control_.send(zmq::buffer(frame), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    logger_->warn("broker: cannot send to a worker: {}", e.what());
  }
}

void Broker::send_to(std::uint32_t id, const std::string& frame) {
  try {
    control_.send(zmq::buffer(internal::routing_id(id, reports_[id].incarnation)),
                  zmq::send_flags::sndmore);
    control_.send(zmq::buffer(frame), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    logger_->warn("broker: cannot send to actor {}: {}", plan_.actors[id].name, e.what());
  }
}

void Broker::abort(const std::string& reason) {
  if (abort_reason_) return;
  abort_reason_ = reason;
  const std::string frame = encode(internal::Abort{reason});
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    if (reports_[id].exitcode) continue;
    send_to(id, frame);
    // An actor that reported its failure leaves by itself once acknowledged;
    // a signal now could cut off its last log records.
    if (logs_expected_[id] == kNotAnnounced) hooks_.signal_actor(id, SIGTERM);
  }
  for (const WorkerReport& w : workers_) {
    if (!w.lost) send_to_worker(w.routing_id, frame);
  }
  // Remote actors no worker took never ran: they end with the abort.
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    if ((plan_.remote(id) || standalone_) && actor_worker_[id] < 0 && !reports_[id].exitcode) {
      reports_[id].exitcode = -SIGKILL;
      reports_[id].stopped = true;
      actor_ended_remotely(id);
    }
  }
  kill_at_ = std::chrono::steady_clock::now() + kGrace;
}

void Broker::actor_exited(std::uint32_t id, int exitcode) {
  ActorReport& r = reports_[id];
  r.exitcode = exitcode;
  r.ended_at = std::chrono::steady_clock::now();
  logs_expected_[id] = kNotAnnounced;
  const bool clean = r.bye && exitcode == 0;
  if (clean || r.failure) {
    if (r.failure && supervisor_.supervises(id) && !abort_reason_) {
      supervise(id);
    } else if (r.failure) {
      abort("actor '" + plan_.actors[id].name + "' failed");
    }
    return;
  }
  // Stopped by the abort (SIGTERM from the driver or raised by the actor on
  // the broker's word, SIGKILL after the grace period): not a failure.
  if (abort_reason_ && (exitcode == -SIGTERM || exitcode == -SIGKILL)) {
    r.stopped = true;
    return;
  }
  if (exitcode == -SIGTERM) {
    undecided_.emplace_back(id, r.ended_at + kSignalVerdict);
    return;
  }
  report_bad_exit(id);
}

void Broker::report_bad_exit(std::uint32_t id) {
  const int exitcode = *reports_[id].exitcode;
  logger_->error("[{}] ({}) {} (pid {})", plan_.actors[id].group_name, plan_.actors[id].name,
                 failure_reason(id), reports_[id].pid);
  if (supervisor_.supervises(id) && !abort_reason_) {
    supervise(id);
    return;
  }
  abort("actor '" + plan_.actors[id].name + "' in group '" + plan_.actors[id].group_name +
        "' " + internal::describe_exit(exitcode));
}

void Broker::supervise(std::uint32_t id) {
  ActorReport& r = reports_[id];
  const internal::ActorSlot& slot = plan_.actors[id];
  const auto now = std::chrono::steady_clock::now();
  const bool remote = plan_.remote(id) || actor_worker_[id] >= 0;
  std::optional<InRecv> in_recv;
  if (remote) {
    if (const auto it = remote_in_recv_.find(id); it != remote_in_recv_.end()) {
      in_recv = std::move(it->second);
      remote_in_recv_.erase(it);
    }
  } else if (hooks_.in_recv) {
    in_recv = hooks_.in_recv(id);
  }
  const Supervisor::Verdict verdict = supervisor_.failed(
      {id, r.incarnation, r.pid, r.host.empty() ? host_of(id) : r.host, failure_reason(id), now},
      in_recv);
  if (!verdict.restart) {
    logger_->error("[{}] ({}) not restarted: {}", slot.group_name, slot.name, verdict.stop);
    stopped_by_supervisor_ = verdict.stop;
    abort(verdict.stop);
    return;
  }
  if (verdict.dead) {
    logger_->warn("[{}] ({}) {} is a dead letter after {} attempt(s)", slot.group_name,
                  slot.name, Supervisor::describe_message(*in_recv),
                  plan_.supervised_group(slot.group)->attempts);
    dead_pending_[id].push_back(*verdict.dead);
  }
  logger_->warn("[{}] ({}) {} (pid {}): starting it again (restart {} of the actor)",
                slot.group_name, slot.name, failure_reason(id), r.pid, r.incarnation + 1);
  // A new incarnation: the report starts over (its host stays: a restart is
  // on the same host).
  const int exitcode = *r.exitcode;
  ++r.incarnation;
  r.hello = false;
  r.bye = false;
  r.failure.reset();
  r.exitcode.reset();
  r.stopped = false;
  r.logs_received = 0;
  r.sent.clear();
  r.received.clear();
  r.settled.clear();
  r.not_sent.clear();
  r.outputs.clear();
  r.edge_out.clear();
  r.edge_in.clear();
  r.sent_total = r.received_total = r.waiting = 0;
  // What the ended process took from restarted senders, and what it sent
  // that restarted receivers finished before, is in no one's counts now.
  for (const auto& [pair, n] : r.taken_before) r.taken_before_ended[pair] += n;
  for (const auto& [pair, n] : r.settled_now) r.settled_ended[pair] += n;
  r.taken_before.clear();
  r.settled_now.clear();
  logs_expected_[id] = kNotAnnounced;
  r.hello_by = now + internal::start_wait();
  if (remote) {
    place(id);
    return;
  }
  try {
    hooks_.respawn(id, r.incarnation);
  } catch (const std::exception& e) {
    r.exitcode = exitcode;
    r.failure = std::string("could not be started again: ") + e.what();
    logger_->error("[{}] ({}) {}", slot.group_name, slot.name, *r.failure);
    abort("actor '" + slot.name + "' in group '" + slot.group_name + "' could not be restarted");
  }
}

void Broker::check_restarts() {
  if (abort_reason_) return;
  const auto now = std::chrono::steady_clock::now();
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    ActorReport& r = reports_[id];
    if (!r.hello_by || r.hello || r.exitcode || now < *r.hello_by) continue;
    r.hello_by.reset();
    r.failure = "was started again but did not say hello within " +
                fmt::format("{:.1f}", internal::start_wait().count() / 1000.0) + " s";
    logger_->error("[{}] ({}) {}", plan_.actors[id].group_name, plan_.actors[id].name,
                   *r.failure);
    abort("actor '" + plan_.actors[id].name + "' could not be restarted");
    return;
  }
}

std::vector<std::size_t> Broker::workers_for(std::uint32_t group) const {
  const std::optional<std::string>& label = plan_.placement[plan_.groups[group].first];
  std::vector<std::size_t> fit;
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    const WorkerReport& x = workers_[w];
    if (x.driver || x.lost || x.ended) continue;
    if (!label || label->empty() ||
        std::find(x.labels.begin(), x.labels.end(), *label) != x.labels.end()) {
      fit.push_back(w);
    }
  }
  return fit;
}

bool Broker::takes_late_workers() const {
  for (std::uint32_t g = 0; g < plan_.groups.size(); ++g) {
    if (plan_.remote(plan_.groups[g].first) && plan_.supervised_group(g) != nullptr) return true;
  }
  return false;
}

void Broker::place(std::uint32_t id) {
  ActorReport& r = reports_[id];
  const internal::ActorSlot& slot = plan_.actors[id];
  const int at = actor_worker_[id];
  std::optional<std::size_t> pick;
  if (at >= 0 && !workers_[static_cast<std::size_t>(at)].lost) {
    pick = static_cast<std::size_t>(at);  // a restart stays on its host
  } else {
    // The least busy of the workers its placement allows.
    auto busy = [&](std::size_t w) {
      return std::count_if(workers_[w].actors.begin(), workers_[w].actors.end(),
                           [&](std::uint32_t a) { return !reports_[a].exitcode; });
    };
    for (std::size_t w : workers_for(slot.group)) {
      if (!pick || busy(w) < busy(*pick)) pick = w;
    }
  }
  if (at >= 0 && (!pick || *pick != static_cast<std::size_t>(at))) {
    std::erase(workers_[static_cast<std::size_t>(at)].actors, id);
    actor_worker_[id] = -1;
  }
  if (!pick) {
    r.hello_by.reset();
    unplaced_.emplace(id, std::chrono::steady_clock::now() + plan_.worker_wait);
    logger_->warn("[{}] ({}) waits for a worker its placement allows to start it on", slot.group_name,
                  slot.name);
    return;
  }
  WorkerReport& w = workers_[*pick];
  if (actor_worker_[id] < 0) {
    w.actors.push_back(id);
    actor_worker_[id] = static_cast<int>(*pick);
    r.host.clear();  // until its hello from there
    logger_->info("[{}] ({}) starts again on worker {} ({})", slot.group_name, slot.name, w.host,
                  w.address);
  }
  r.hello_by = std::chrono::steady_clock::now() + internal::start_wait();
  send_to_worker(w.routing_id, encode(internal::Spawn{id, r.incarnation}));
}

void Broker::place_waiting() {
  for (auto it = unplaced_.begin(); it != unplaced_.end();) {
    const std::uint32_t id = it->first;
    if (workers_for(plan_.actors[id].group).empty()) {
      ++it;
      continue;
    }
    it = unplaced_.erase(it);
    place(id);
  }
}

bool Broker::failed(std::uint32_t id) const {
  const ActorReport& r = reports_[id];
  if (r.failure) return true;
  if (!r.exitcode || r.stopped) return false;
  return !(r.bye && *r.exitcode == 0);
}

std::string Broker::failure_reason(std::uint32_t id) const {
  const ActorReport& r = reports_[id];
  if (r.failure) return *r.failure;
  if (!r.exitcode) return "still running";
  if (*r.exitcode == 0) return "exited with status 0 before the end of its stream";
  std::string text = internal::describe_exit(*r.exitcode);
  if (!r.bye) text += " before the end of its stream";
  return text;
}

std::vector<EdgeCount> Broker::edges() const {
  std::vector<EdgeCount> out;
  for (std::uint32_t e = 0; e < plan_.edges.size(); ++e) {
    const internal::EdgeSlot& edge = plan_.edges[e];
    EdgeCount count;
    count.edge = e;
    const internal::GroupSlot& a = plan_.groups[edge.from];
    const internal::GroupSlot& b = plan_.groups[edge.to];
    const std::vector<std::string> outputs = plan_.outputs(edge.from);
    const std::size_t output =
        std::find(outputs.begin(), outputs.end(), edge.output) - outputs.begin();
    for (std::uint32_t s = a.first; s < a.first + a.size; ++s) {
      const ActorReport& sender = reports_[s];
      std::uint64_t on_edge = 0;
      bool every_receiver = true;  // broadcast: each got all of the output's messages
      const std::uint64_t to_output =
          output < sender.outputs.size() ? sender.outputs[output] : 0;
      for (std::uint32_t t = b.first; t < b.first + b.size; ++t) {
        const auto sit = sender.sent.find({e, t});
        const auto rit = reports_[t].received.find({e, s});
        const std::uint64_t sent = sit == sender.sent.end() ? 0 : sit->second;
        const auto xit = sender.settled.find({e, t});
        const std::uint64_t received = (rit == reports_[t].received.end() ? 0 : rit->second) +
                                       (xit == sender.settled.end() ? 0 : xit->second);
        count.sent += sent;
        count.received += received;
        // What a restarted sender did not send again went out before.
        const auto nit = sender.not_sent.find({e, t});
        const std::uint64_t out = sent + (nit == sender.not_sent.end() ? 0 : nit->second);
        on_edge += out;
        every_receiver = every_receiver && out == to_output;
        if (sent != received) {
          count.mismatches.push_back(plan_.actors[s].name + " -> " + plan_.actors[t].name +
                                     ": sent " + std::to_string(sent) + ", received " +
                                     std::to_string(received));
        }
      }
      // Only a sender that said bye reported what it sent to its outputs.
      if (!sender.bye) continue;
      if (edge.grouping == internal::EdgeGrouping::broadcast ? !every_receiver
                                                             : on_edge != to_output) {
        count.mismatches.push_back(
            plan_.actors[s].name + ": " + std::to_string(to_output) + " sent to the output, " +
            (edge.grouping == internal::EdgeGrouping::broadcast
                 ? "not that many to each receiver"
                 : std::to_string(on_edge) + " on this edge"));
      }
    }
    out.push_back(std::move(count));
  }
  return out;
}

RunResult Broker::result() const {
  RunResult out;
  for (std::uint32_t id = 0; id < reports_.size(); ++id) {
    out.rejected += reports_[id].rejected;
    if (!failed(id)) continue;
    const ActorReport& r = reports_[id];
    std::string reason = failure_reason(id);
    const auto& history = supervisor_.failures();
    if (!stopped_by_supervisor_.empty() && !history.empty() && history.back().id == id &&
        history.back().incarnation == r.incarnation) {
      reason += "; not restarted: " + stopped_by_supervisor_;
    }
    out.failures.push_back(
        {id, plan_.actors[id].group_name, plan_.actors[id].name, r.pid, r.host, reason});
  }
  if (!out.failures.empty()) {
    // A run that fails lists every failure, also those that were restarted.
    std::vector<RunResult::Failure> earlier;
    for (const Supervisor::Failure& f : supervisor_.failures()) {
      if (f.incarnation == reports_[f.id].incarnation && failed(f.id)) continue;
      earlier.push_back({f.id, plan_.actors[f.id].group_name, plan_.actors[f.id].name, f.pid,
                         f.host, f.reason + " (restarted)"});
    }
    out.failures.insert(out.failures.begin(), earlier.begin(), earlier.end());
  }
  for (const EdgeCount& e : edges()) {
    if (e.mismatches.empty()) continue;
    if (!out.accounting.empty()) out.accounting += "; ";
    out.accounting += "edge " + plan_.edge_name(e.edge) + ": sent " + std::to_string(e.sent) +
                      ", received " + std::to_string(e.received) + " (" +
                      fmt::format("{}", fmt::join(e.mismatches, ", ")) + ")";
  }
  out.stopped = abort_reason_;
  return out;
}

namespace {
using PackedFailure =
    std::tuple<std::uint32_t, std::string, std::string, int, std::string, std::string>;
using PackedResult = std::tuple<std::vector<PackedFailure>, std::string, bool, std::string,
                                std::uint64_t>;
}  // namespace

std::string pack_result(const RunResult& r) {
  PackedResult p;
  for (const RunResult::Failure& f : r.failures) {
    std::get<0>(p).emplace_back(f.id, f.group, f.name, f.pid, f.host, f.reason);
  }
  std::get<1>(p) = r.accounting;
  std::get<2>(p) = r.stopped.has_value();
  std::get<3>(p) = r.stopped.value_or(std::string());
  std::get<4>(p) = r.rejected;
  return internal::pack_to_string(p);
}

RunResult unpack_result(const char* data, std::size_t size) {
  auto p = internal::unpack_tuple<PackedResult>(data, size, "run result");
  RunResult r;
  for (auto& [id, group, name, pid, host, reason] : std::get<0>(p)) {
    r.failures.push_back({id, group, name, pid, host, reason});
  }
  r.accounting = std::get<1>(p);
  if (std::get<2>(p)) r.stopped = std::get<3>(p);
  r.rejected = std::get<4>(p);
  return r;
}

void Broker::reject(const std::string& what) {
  ++rejected_;
  if (rejected_ <= 10) {
    logger_->warn("broker: rejected: {}", what);
  } else if (rejected_ == 11) {
    logger_->warn("broker: rejecting more messages; counting them without logging");
  }
}

}  // namespace relay::broker
