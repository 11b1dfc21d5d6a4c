#include "relay/runtime/actor_runtime.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <tuple>

#include "relay/internal/frames.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"
#include "relay/runtime/queue_state.h"
#include "relay/runtime/signals.h"

namespace relay::internal {
namespace {

// Until recv() returns (or throws): a small message's bytes are in the frame
// that goes then. A Message recv() kept shares the Payload, so it must not
// point there after (forwarded later, it is packed again).
class FrameBytesGoWith {
 public:
  explicit FrameBytesGoWith(Payload& payload) noexcept : payload_(payload) {}
  FrameBytesGoWith(const FrameBytesGoWith&) = delete;
  FrameBytesGoWith& operator=(const FrameBytesGoWith&) = delete;
  ~FrameBytesGoWith() {
    if (!payload_.encoded_kept) payload_.encoded = nullptr;
  }

 private:
  Payload& payload_;
};

ActorRuntime* g_current = nullptr;

// Ends this actor's process on the broker's abort, wherever the runtime reads
// it (send(), the receive loop, put()'s wait, the start barrier): right there,
// not by an exception that user code could catch and ignore. It ends as an
// actor stopped from outside does (killed by SIGTERM, even if the user ignores
// or blocks it), so that no exit status has to be reserved for it and the
// broker counts it as stopped, not failed.
[[noreturn]] void end_aborted() noexcept {
  std::fflush(nullptr);
  ::signal(SIGTERM, SIG_DFL);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::pthread_sigmask(SIG_UNBLOCK, &term, nullptr);
  ::raise(SIGTERM);
  ::_exit(kAbortedStatus);
}

void remote_put(std::uint64_t queue_id, bool bounded, const Buffer& message) {
  if (g_current == nullptr) throw Error("Queue::put: the actor runtime is not running");
  g_current->put(queue_id, bounded, message);
}

constexpr auto kPollPeriod = std::chrono::milliseconds(500);
// A receiver with an empty inbox, or a sender out of credit, first waits this
// long on its data socket alone (a blocking recv: a few system calls fewer than
// zmq_poll, and no look at control), then polls data and control together.
constexpr int kBriefWaitMs = 2;
// How often a busy actor looks at control, the driver and its stats.
constexpr auto kHousekeepingPeriod = std::chrono::milliseconds(5);
constexpr auto kBatchAge = std::chrono::milliseconds(1);

// "30.0" for 30000 ms.
std::string seconds(std::chrono::milliseconds ms) {
  return std::to_string(ms.count() / 1000) + "." + std::to_string(ms.count() % 1000 / 100);
}

// Sends a control frame to the broker (frames.h).
template <class F>
void send_ctl(zmq::socket_t& control, const F& frame) {
  Buffer b;
  encode(b, frame);
  (void)send_frame(control, b);
}

// Whether this process's parent is still the one that forked it: the driver
// (or worker), or the spawner. Reparented means that one has died.
bool parent_alive(const Plan& plan) {
  const pid_t parent = ::getppid();
  return parent == plan.driver_pid || (plan.spawner_pid != 0 && parent == plan.spawner_pid);
}

// The header of the msgpack array at `p` (`size` bytes): its length, and how
// many bytes the header takes; nothing if it is not an array.
std::optional<std::pair<std::uint32_t, std::size_t>> array_header(const char* p,
                                                                   std::size_t size) {
  if (size == 0) return std::nullopt;
  const auto b = static_cast<unsigned char>(p[0]);
  if ((b & 0xf0) == 0x90) return std::make_pair(std::uint32_t{b & 0x0fu}, std::size_t{1});
  if (b == 0xdc && size >= 3) {
    return std::make_pair(static_cast<std::uint32_t>(static_cast<unsigned char>(p[1]) << 8 |
                                                     static_cast<unsigned char>(p[2])),
                          std::size_t{3});
  }
  if (b == 0xdd && size >= 5) {
    std::uint32_t n = 0;
    for (int i = 1; i <= 4; ++i) n = (n << 8) | static_cast<unsigned char>(p[i]);
    return std::make_pair(n, std::size_t{5});
  }
  return std::nullopt;
}

// What an exception that escaped a hook says, with its type.
std::string describe(const std::exception& e) { return demangle(typeid(e)) + ": " + e.what(); }

}  // namespace

void run_actor_process(const Plan& plan, Actor& actor, std::uint32_t incarnation) {
  // Die with the driver. PDEATHSIG fires when the forking *thread* ends, and
  // the driver's thread stays inside Relay::start() until every actor ended.
  // An actor restarted by the spawner dies with the spawner, which dies with
  // the driver.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (!parent_alive(plan)) ::_exit(kAbortedStatus);
  // The driver handles Ctrl-C for the whole run and stops actors itself.
  signals_after_fork_in_child();
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGPIPE, SIG_IGN);
  // Large messages: ZeroMQ mallocs every received frame on its I/O thread and
  // this thread frees it, and a sender's blocks outgrow the pool when it runs
  // a window ahead. With glibc's defaults those blocks are mmapped, or trimmed
  // from the heap top, and each new one costs ~256 page faults per MiB; kept
  // in the heap they are reused. Only this actor's process is affected; it
  // may keep up to the trim threshold of freed memory after a burst.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  int status = 0;
  try {
    ActorRuntime runtime(plan, actor, incarnation);
    runtime.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "relay: actor '%s' could not start: %s\n", actor.name().c_str(),
                 e.what());
    status = 1;
  }
  std::fflush(nullptr);
  ::_exit(status);
}

ActorRuntime::ActorRuntime(const Plan& plan, Actor& actor, std::uint32_t incarnation)
    : plan_(plan),
      actor_(actor),
      slot_(plan.actors.at(static_cast<std::size_t>(actor.id_))),
      incarnation_(incarnation),
      supervised_(plan.supervised_group(slot_.group) != nullptr),
      ctx_(1) {
  g_current = this;
  set_remote_put(&remote_put);
  if (supervised_) {
    inflight_ = inflight_slot(slot_.id);
    loop_limit_ = loop_limit(plan_, slot_.group);
  }
  control_ = make_socket(ctx_, zmq::socket_type::dealer);
  control_.set(zmq::sockopt::routing_id, zmq::buffer(routing_id(slot_.id, incarnation_)));
  if (plan_.key) curve_client(control_, *plan_.key);
  control_.connect(plan_.control_endpoint);
  // Only here, in the actor's own process (see codec.h).
  enable_block_pool();
  if (const char* drop = std::getenv("RELAY_TESTING_DROP_NTH_MESSAGE")) {
    drop_nth_ = std::strtoull(drop, nullptr, 10);
  }
  if (const char* drop = std::getenv("RELAY_TESTING_DROP_EVERY_NTH_CREDIT")) {
    drop_credit_every_ = std::strtoull(drop, nullptr, 10);
  }
  drop_first_eos_ack_ = std::getenv("RELAY_TESTING_DROP_FIRST_EOS_ACK") != nullptr;
}

ActorRuntime* ActorRuntime::current() noexcept { return g_current; }

void ActorRuntime::run() {
  try {
    connect();
    actor_.run();
    if (open_upstreams_ > 0) {
      // Its senders would wait forever for their end-of-stream acknowledgement.
      throw Error("actor '" + slot_.name + "' in group '" + slot_.group_name +
                  "' returned from loop() before the end of its stream (" +
                  std::to_string(open_upstreams_) +
                  " sender(s) still open); a receiver that overrides loop() must call "
                  "relay::Actor::loop()");
    }
    if (supervised_) {
      // Its senders keep what they sent it until its own stream has ended:
      // if it fails before, its successor is given all of it again.
      end_stream();
      for (Upstream& u : up_) {
        if (u.eos_held) {
          u.eos_held = false;
          send_eos_ack(u);
        }
      }
      settle_eos_acks();
    } else {
      settle_eos_acks();
      end_stream();
    }
    say_bye();
  } catch (const std::exception& e) {
    fail(describe(e));
  } catch (...) {
    fail("an exception that is not a std::exception");
  }
  // Everything sent was acknowledged: nothing is left to flush.
  std::fflush(nullptr);
  ::_exit(0);
}

void ActorRuntime::connect() {
  std::string endpoint;
  window_bytes_ = plan_.window_bytes();
  if (actor_.receiver()) {
    // One upstream per sender of every incoming edge.
    std::uint32_t window = 1;
    for (std::uint32_t e : plan_.edges_into(slot_.group)) {
      const GroupSlot& from = plan_.groups[plan_.edges[e].from];
      in_edges_.push_back({e, from.first, up_.size(), from.size});
      const std::uint32_t w = plan_.window(e);
      window = std::max(window, w);
      for (std::uint32_t i = 0; i < from.size; ++i) {
        Upstream u;
        u.id = from.first + i;
        u.edge = e;
        u.credit_return = std::max<std::uint32_t>(1, w / 2);
        u.resumed = !supervised_;  // supervised: once the sender's 'R' came
        u.sender_supervised = plan_.supervised_group(plan_.edges[e].from) != nullptr;
        if (u.sender_supervised) u.loop_limit = loop_limit(plan_, plan_.edges[e].from);
        up_.push_back(u);
      }
    }
    open_upstreams_ = static_cast<std::uint32_t>(up_.size());
    inbox_ = make_socket(ctx_, zmq::socket_type::router);
    // Credits keep each pipe below the window; the margin is for control frames.
    inbox_.set(zmq::sockopt::rcvhwm, static_cast<int>(std::min<std::uint32_t>(window, 1 << 20) + 64));
    inbox_.set(zmq::sockopt::router_mandatory, 1);
    inbox_.set(zmq::sockopt::rcvtimeo, kBriefWaitMs);
    if (plan_.key) {
      zap_.emplace(ctx_, *plan_.key);
      curve_server(inbox_, *plan_.key);
    }
    if (plan_.distributed) {
      // Senders may be on other hosts: bind where they can reach us and tell
      // the broker the port the system chose.
      if (plan_.ports) {
        try {
          endpoint = bind_in_range(inbox_, plan_.data_host, plan_.ports->first, plan_.ports->last);
        } catch (const Error& e) {
          throw Error("actor '" + slot_.name +
                      "' cannot bind its data inbox (ports()): " + e.what());
        }
      } else {
        inbox_.bind("tcp://" + plan_.data_host + ":*");
        endpoint = inbox_.get(zmq::sockopt::last_endpoint);
      }
    } else {
      endpoint = plan_.data_prefix + std::to_string(slot_.id);
      inbox_.bind(endpoint);
    }
  }
  // Fault injection for tests of the start deadlines: an actor that cannot
  // reach the log endpoint, or whose hello never arrives, or a receiver
  // that reports an endpoint nobody can reach.
  std::string log_endpoint = plan_.log_endpoint;
  if (const char* e = std::getenv("RELAY_TESTING_LOG_ENDPOINT")) log_endpoint = e;
  const char* skip_hello = std::getenv("RELAY_TESTING_SKIP_HELLO");
  if (const char* e = std::getenv("RELAY_TESTING_DATA_ENDPOINT"); e && !endpoint.empty()) {
    endpoint = e;
  }
  log_ = make_socket(ctx_, zmq::socket_type::xpub);
  log_.set(zmq::sockopt::xpub_nodrop, 1);
  log_.set(zmq::sockopt::sndhwm, 100000);
  if (plan_.key) curve_client(log_, *plan_.key);
  log_.connect(log_endpoint);

  if (skip_hello == nullptr || slot_.name != skip_hello) {
    send_ctl(control_,
             Hello{slot_.id, static_cast<int>(::getpid()), host_name(), endpoint, incarnation_});
  }
  // Wait for the broker's start (every actor is up) and for its log
  // subscription: a record published before the subscription would be lost.
  // Neither may take for ever: a port a firewall closes would hang the run
  // while the pings stay healthy. The broker stops a run whose hellos do not
  // all come within start_wait() of the forks (and names who is missing), so
  // an actor waits twice as long for the start frame: the broker's verdict
  // comes first even when the driver took long to fork every actor.
  const auto started = std::chrono::steady_clock::now();
  // An actor the driver forked before its workers joined also waits for
  // them (at most worker_wait) before the broker can send start.
  bool any_remote = false;
  for (std::uint32_t id = 0; id < plan_.actors.size(); ++id) any_remote |= plan_.remote(id);
  const auto start_deadline =
      2 * start_wait() +
      (any_remote && !plan_.remote(slot_.id) ? plan_.worker_wait : std::chrono::milliseconds(0));
  bool subscribed = false;
  while (endpoints_.empty() || !subscribed) {
    const auto waited = std::chrono::steady_clock::now() - started;
    if (endpoints_.empty() && waited > start_deadline) {
      throw Error("actor '" + slot_.name + "' had no start from the broker at " +
                  plan_.control_endpoint + " within " + seconds(start_deadline) +
                  " s (is that port reachable from this host?)");
    }
    if (!subscribed && waited > start_wait()) {
      throw Error("actor '" + slot_.name + "' had no log subscription from the broker at " +
                  log_endpoint + " within " + seconds(start_wait()) +
                  " s (is that port reachable from this host?)");
    }
    zmq::pollitem_t items[] = {{control_.handle(), 0, ZMQ_POLLIN, 0},
                               {log_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, kPollPeriod);
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t frame;
      if (control_.recv(frame, zmq::recv_flags::dontwait)) handle_control(frame);
    }
    if (items[1].revents & ZMQ_POLLIN) {
      zmq::message_t sub;
      if (log_.recv(sub, zmq::recv_flags::dontwait) && sub.size() >= 1 &&
          sub.data<char>()[0] == 1) {
        subscribed = true;
      }
    }
    check_driver();
  }
  if (actor_.sender()) {
    // One downstream per receiver of every outgoing edge, each with a DEALER
    // of its own: the edge is in its routing id, so that credits, end of
    // stream and counts are per pair of one edge.
    for (const std::string& name : plan_.outputs(slot_.group)) {
      if (name.empty()) default_output_ = outputs_.size();
      outputs_.push_back({name, {}, 0});
    }
    for (std::uint32_t e : plan_.edges_from(slot_.group)) {
      const EdgeSlot& edge = plan_.edges[e];
      const GroupSlot& to = plan_.groups[edge.to];
      const std::uint32_t window = plan_.window(e);
      // Each sender starts at a different receiver, so that n senders do not
      // all begin with the same one.
      OutEdge out{e, edge.grouping, edge.key, down_.size(), to.size, slot_.id % to.size};
      for (Output& o : outputs_) {
        if (o.name == edge.output) o.edges.push_back(out_edges_.size());
      }
      out_edges_.push_back(out);
      for (std::uint32_t i = 0; i < to.size; ++i) {
        Downstream& d = down_.emplace_back();
        d.id = to.first + i;
        d.edge = e;
        d.window = window;
        d.credit = window;
        d.socket = make_socket(ctx_, zmq::socket_type::dealer);
        d.seq = plan_.supervised_group(edge.to) != nullptr;
        d.receiver_inc = incarnations_.at(d.id);
        d.socket.set(zmq::sockopt::routing_id,
                     zmq::buffer(data_routing_id(slot_.id, e, incarnation_)));
        d.socket.set(zmq::sockopt::sndhwm,
                     static_cast<int>(std::min<std::uint32_t>(window, 1 << 20) + 64));
        d.socket.set(zmq::sockopt::rcvtimeo, kBriefWaitMs);
        if (plan_.key) curve_client(d.socket, *plan_.key);
        // Receivers credit in batches of half a window: looking for them
        // more often than every eighth of one finds mostly nothing, and an
        // empty look costs ZeroMQ two system calls.
        finish_read_every_ = std::min(finish_read_every_, std::max<std::uint32_t>(4, window / 8));
        // Receivers return credits before they wait for input, up to two
        // frames per message (a supervised one's taken and finished): read
        // them as they come. Between two reads, up to about a window of them
        // may wait; past the DEALER's receive high-water mark (1000) a
        // receiver's reply() fails and the credit is owed and sent again.
        d.read_every = std::clamp<std::uint32_t>(window / 8, 4, 256);
        // A receiver that waits has returned what it took: this many not
        // yet credited means it is busy, or that the pair is fast enough to
        // have this many on the way in one credit's round trip.
        d.batch_after = std::clamp<std::uint32_t>(window / 2, 1, 32);
      }
    }
    // Across hosts a receiver's port may be unreachable (a firewall): a
    // DEALER would queue messages for it for ever. Watch each connection
    // and start the actor's hooks only once every one is made.
    if (plan_.distributed) {
      wait_for_downstream();
    } else {
      for (Downstream& d : down_) d.socket.connect(endpoints_.at(d.id));
    }
    for (Downstream& d : down_) down_items_.push_back({d.socket.handle(), 0, ZMQ_POLLIN, 0});
    down_items_.push_back({control_.handle(), 0, ZMQ_POLLIN, 0});
    // A supervised receiver takes a pair's frames only after its 'R'.
    for (Downstream& d : down_) {
      if (d.seq) resume(d);
    }
    if (supervised_ && incarnation_ > 0) ask_receivers();
  }
  if (supervised_ && incarnation_ > 0) {
    // H, the newest op outside recv() that any receiver, or the broker, took
    // from a predecessor: when that one made op H, every op before H - X was
    // taken (bound_loop()), and each list covers X ops below its own newest,
    // so from H - X on the lists say exactly what was taken.
    std::optional<std::uint64_t> newest = puts_before_.newest(kLoopEdge, slot_.id, 0);
    for (const Downstream& d : down_) {
      const auto n = d.taken_before.newest(kLoopEdge, slot_.id, 0);
      if (n && (!newest || *n > *newest)) newest = n;
    }
    if (newest && *newest > loop_limit_) loop_floor_ = *newest - loop_limit_;
  }
}

void ActorRuntime::ask_receivers() {
  for (Downstream& d : down_) {
    Buffer q;
    q.put(kQuery);
    (void)send_frame(d.socket, q);
  }
  const auto deadline = std::chrono::steady_clock::now() + start_wait();
  for (;;) {
    bool all = true;
    for (const Downstream& d : down_) {
      all = all && d.listed;
      listed_any_ = listed_any_ || !d.taken_before.empty();
    }
    if (all) return;
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error("actor '" + slot_.name + "' (restarted) had no answer from its receivers within " +
                  seconds(start_wait()) + " s about what its predecessors sent");
    }
    wait_downstream();
  }
}

Origin ActorRuntime::next_origin() {
  loop_op_ = !in_recv_;
  if (in_recv_) {
    const Origin o = current_;
    ++current_.j;
    return o;
  }
  loop_k_ = loop_next_++;
  return loop_origin(slot_.id, loop_k_);
}

std::uint64_t ActorRuntime::origin_limit(const Upstream& u, const Origin& o) const {
  if (o.edge != kLoopEdge) return internal::origin_limit(plan_, o, u.id);
  // Of the sender's own loop (cached: this is per message).
  return o.sender == u.id && o.sender_incarnation == 0 && o.j == 0 ? u.loop_limit : 0;
}

bool ActorRuntime::taken_before(const Downstream& d) const {
  if (loop_op_ && loop_k_ < loop_floor_) return true;
  return listed_any_ && d.taken_before.contains(origin_);
}

void ActorRuntime::bound_loop(std::uint64_t k) {
  // Credits come back in sending order on each pair, so the front of each
  // pair's list is its oldest op not yet taken. The oldest over all pairs
  // only grows: a look is needed only once k has gone X past it.
  while (k > loop_oldest_ + loop_limit_) {
    std::uint64_t oldest = k;
    for (Downstream& d : down_) {
      while (!d.loop_out.empty() && d.loop_out.front().first <= d.taken()) d.loop_out.pop_front();
      if (!d.loop_out.empty()) oldest = std::min(oldest, d.loop_out.front().second);
    }
    loop_oldest_ = oldest;
    if (k <= loop_oldest_ + loop_limit_) return;
    wait_downstream();
  }
}

void ActorRuntime::wait_for_downstream() {
  // One monitor per DEALER, reporting when its handshake (ZMTP, and CURVE
  // with a key) with the receiver succeeded.
  std::vector<zmq::socket_t> monitors;
  for (std::size_t i = 0; i < down_.size(); ++i) {
    const std::string address = "inproc://relay-connect-" + std::to_string(i);
    if (zmq_socket_monitor(down_[i].socket.handle(), address.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
      throw Error(std::string("cannot watch a data connection: ") + zmq_strerror(zmq_errno()));
    }
    monitors.push_back(make_socket(ctx_, zmq::socket_type::pair));
    monitors.back().connect(address);
    down_[i].socket.connect(endpoints_.at(down_[i].id));
  }
  std::vector<bool> connected(down_.size(), false);
  std::size_t missing = down_.size();
  const auto deadline = std::chrono::steady_clock::now() + start_wait();
  while (missing > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::string which;
      for (std::size_t i = 0; i < down_.size(); ++i) {
        if (connected[i]) continue;
        which += (which.empty() ? "" : ", ") + plan_.actors[down_[i].id].name + " at " +
                 endpoints_.at(down_[i].id);
      }
      throw Error("actor '" + slot_.name + "' could not connect to the data inbox of " + which +
                  " within " + seconds(start_wait()) +
                  " s (is that port reachable from this host?)");
    }
    std::vector<zmq::pollitem_t> items;
    for (zmq::socket_t& m : monitors) items.push_back({m.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({control_.handle(), 0, ZMQ_POLLIN, 0});
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    for (std::size_t i = 0; i < monitors.size(); ++i) {
      zmq::message_t event;
      // Two parts: [event (16 bits), value (32 bits)], then the endpoint.
      while (monitors[i].recv(event, zmq::recv_flags::dontwait)) {
        std::uint16_t kind = 0;
        if (event.size() >= sizeof kind) std::memcpy(&kind, event.data(), sizeof kind);
        while (event.more() && monitors[i].recv(event, zmq::recv_flags::dontwait)) {
        }
        if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !connected[i]) {
          connected[i] = true;
          --missing;
        }
      }
    }
    if (items.back().revents & ZMQ_POLLIN) {
      zmq::message_t frame;
      while (control_.recv(frame, zmq::recv_flags::dontwait)) handle_control(frame);
    }
    check_driver();
  }
  for (Downstream& d : down_) zmq_socket_monitor(d.socket.handle(), nullptr, 0);
}

namespace {

std::string output_list(const std::vector<std::string>& outputs) {
  std::string out;
  for (const std::string& o : outputs) {
    out += (out.empty() ? "" : ", ") + (o.empty() ? std::string("the default one") : "'" + o + "'");
  }
  return out.empty() ? "none: no edge leaves the group" : out;
}

}  // namespace

ActorRuntime::Output& ActorRuntime::output_named(std::string_view output, const char* op) {
  for (Output& o : outputs_) {
    if (o.name == output) return o;
  }
  throw Error(std::string(op) + ": group '" + slot_.group_name +
              "' has no edge from an output named '" + std::string(output) +
              "' (its outputs: " + output_list(plan_.outputs(slot_.group)) +
              "); connect(relay::output(\"" + slot_.group_name + "\", \"" + std::string(output) +
              "\"), ...) makes one");
}

void ActorRuntime::send(Buffer& frame) {
  if (!default_output_) {
    throw Error("send: actor '" + slot_.name + "' in group '" + slot_.group_name +
                "' has no edge from its group's default output (its outputs: " +
                output_list(plan_.outputs(slot_.group)) + ")");
  }
  send_output(outputs_[*default_output_], frame);
}

void ActorRuntime::send_to(std::string_view output, Buffer& frame) {
  send_output(output_named(output, "send_to"), frame);
}

void ActorRuntime::forward(const std::string_view* output, const Payload* payload) {
  Output* out = nullptr;
  if (output != nullptr) {
    out = &output_named(*output, "send_to");
  } else if (default_output_) {
    out = &outputs_[*default_output_];
  } else {
    send(forward_frame_);  // throws: no default output
  }
  forward_frame_.clear();
  forward_frame_.put(kData);
  if (payload == nullptr) {
    msgpack::pack(forward_frame_, std::tuple<>{});  // an empty message: []
    send_output(*out, forward_frame_);
    return;
  }
  const Payload& message = *payload;
  // No origin to add (an unsupervised actor): the received frame goes on as
  // it is, shared by reference count with every receiver, its header byte
  // made a plain data frame's (written once: ZeroMQ may still be sending the
  // frame of an earlier forward of the same message).
  if (message.tag_room && !supervised_) {
    char* at = const_cast<char*>(message.encoded) - 1;
    if (*at != kData) *at = kData;
    // The hold is let go on ZeroMQ's I/O thread. ZeroMQ hands the message
    // over inside libzmq, where ThreadSanitizer does not see it: the flag
    // makes that hand-over one it sees (release here, acquire there).
    struct Hold {
      std::shared_ptr<void> frame;
      std::atomic<bool> handed{false};
    };
    auto* keep = new Hold{message.bytes};
    keep->handed.store(true, std::memory_order_release);
    zmq::message_t frame(
        at, message.encoded_size + 1,
        [](void*, void* hint) {
          auto* hold = static_cast<Hold*>(hint);
          (void)hold->handed.load(std::memory_order_acquire);
          delete hold;
        },
        keep);
    forward_ = &frame;
    try {
      send_output(*out, forward_frame_);
    } catch (...) {
      forward_ = nullptr;
      throw;
    }
    forward_ = nullptr;
    return;
  }
  if (message.encoded != nullptr) {
    forward_frame_.write(message.encoded, message.encoded_size);
  } else {
    msgpack::pack(forward_frame_, message.array);  // its bytes are gone: packed again
  }
  send_output(*out, forward_frame_);
}

bool ActorRuntime::has_room(const Downstream& d) const noexcept {
  // The byte bound is checked before this frame is added: with less than half
  // of it uncredited, the receiver holds nothing back, whatever this frame's
  // size.
  if (d.seq) {
    // Flow control as on any pair (what is not yet taken), and what is held
    // for a restart (not yet finished) within twice that.
    return d.sent - d.taken_seq < d.window && d.held.size() < 2 * std::size_t{d.window} &&
           !(window_bytes_ != 0 && d.bytes_out >= 2 * window_bytes_ && !d.held.empty());
  }
  return d.credit > 0 && !(window_bytes_ != 0 && d.bytes_out >= window_bytes_ &&
                           !d.sizes.empty());
}

void ActorRuntime::send_held(Downstream& d, const char* frame, std::size_t size) {
  // The held frame stays until the receiver has finished it. A large one is
  // a ZeroMQ message of its own, whose buffer the copy shares by a reference
  // count; a small one (its pair is idle, or it would have gone in a batch)
  // is copied.
  if (const zmq::message_t* held = d.held.newest_message()) {
    zmq::message_t m;
    m.copy(const_cast<zmq::message_t&>(*held));
    (void)d.socket.send(m, zmq::send_flags::none);
    return;
  }
  (void)d.socket.send(zmq::const_buffer(frame, size), zmq::send_flags::none);
}

void ActorRuntime::emit(Downstream& d, Buffer& frame, bool last) {
  while (!has_room(d)) wait_downstream();
  // The frame: `frame`, or the received one forward() passes on as it came.
  const char* bytes = forward_ != nullptr ? forward_->data<char>() : frame.data();
  const std::size_t n = forward_ != nullptr ? forward_->size() : frame.size();
  if (d.seq) {
    // To a supervised receiver: numbered, and held until it is finished.
    const std::size_t origin = with_origin_ ? Origin::kSize : 0;
    const std::size_t size = kSeqHeader + origin + n - 1;
    const std::uint64_t seq = d.sent + 1;
    // Held before it goes: reading credits below lets go only of seqs up to
    // d.sent, never of this one.
    char* out = d.held.push(seq, size);
    out[0] = kSeqData;
    write_be64(out + 1, seq);
    out[9] = static_cast<char>(with_origin_ ? kFlagOrigin : 0);
    if (with_origin_) std::memcpy(out + kSeqHeader, origin_bytes_, Origin::kSize);
    std::memcpy(out + kSeqHeader + origin, bytes + 1, n - 1);
    if (window_bytes_ != 0) d.bytes_out += size;
    if (++total_sent_ != drop_nth_) {
      if (batching(d, size)) {
        std::memcpy(add_member(d, size), out, size);
        close_member(d);
      } else {
        flush_batch(d);  // in order
        send_held(d, out, size);
      }
    }
    ++d.sent;
    if (loop_op_) d.loop_out.emplace_back(d.sent, loop_k_);
    if (++d.unread >= d.read_every) read_downstream(d);
    if ((++stats_tick_ & 15) == 0) housekeeping();
    return;
  }
  const bool goes = ++total_sent_ != drop_nth_;
  std::uint64_t size = n;
  const std::size_t member = with_origin_ ? n + Origin::kSize : n;  // 'O' + origin or 'D'
  if (batching(d, member)) {
    if (goes) {
      char* out = add_member(d, member);
      out[0] = with_origin_ ? kOriginData : kData;
      if (with_origin_) std::memcpy(out + 1, origin_bytes_, Origin::kSize);
      std::memcpy(out + (member - n) + 1, bytes + 1, n - 1);
      close_member(d);
    }
    size = member + 2;
  } else if (forward_ != nullptr && !with_origin_) {
    flush_batch(d);  // in order
    // Shared with the received frame and any other receiver: no copy.
    if (goes) {
      zmq::message_t share;
      share.copy(const_cast<zmq::message_t&>(*forward_));
      (void)d.socket.send(share, zmq::send_flags::none);
    }
  } else {
    flush_batch(d);  // in order
    Buffer* out = &frame;
    if (with_origin_) {
      // 'O' + origin + the message.
      copy_.clear();
      copy_.put(kOriginData);
      copy_.write(origin_bytes_, Origin::kSize);
      copy_.write(bytes + 1, n - 1);
      out = &copy_;
    } else if (!last) {
      // Another receiver takes this frame too: this one gets a copy.
      copy_.clear();
      copy_.write(frame.data(), frame.size());
      out = &copy_;
    }
    size = out->size();  // before send_frame() takes the buffer
    if (goes) (void)send_frame(d.socket, *out);
  }
  // Only what went out: a frame the receiver never sees is never credited,
  // and would hold the pair's byte window for ever.
  if (goes && window_bytes_ != 0) {
    d.sizes.push_back(size);
    d.bytes_out += size;
  }
  --d.credit;
  ++d.sent;
  if (loop_op_) d.loop_out.emplace_back(d.sent, loop_k_);
  if (++d.unread >= d.read_every) read_downstream(d);
  if ((++stats_tick_ & 15) == 0) housekeeping();
}

bool ActorRuntime::batching(Downstream& d, std::size_t size) {
  // With batch_after not yet credited the receiver is busy (an idle one has
  // credited what it took, before it waited), and this frame can wait for
  // others to go with them in one ZeroMQ frame. A lone message on an idle
  // pair goes alone, at once.
  if (size > kBatchMemberAtMost) return false;
  if (d.batched > 0) return true;  // in order
  if (d.sent - d.taken() < d.batch_after) return false;
  read_downstream(d);  // the credits that say so may be here already
  return d.sent - d.taken() >= d.batch_after;
}

char* ActorRuntime::add_member(Downstream& d, std::size_t size) {
  if (d.batched == 0) {
    d.batch.clear();
    const char header[kBatchHeader] = {kBatch, 0, 0};  // the count goes in at the flush
    d.batch.write(header, kBatchHeader);
    if (open_batches_++ == 0) batch_opened_ = std::chrono::steady_clock::now();
  }
  write_be16(d.batch.extend(2), static_cast<std::uint16_t>(size));
  return d.batch.extend(size);
}

void ActorRuntime::close_member(Downstream& d) {
  if (++d.batched >= kBatchCountAtMost || d.batch.size() >= kBatchBytesAtMost) flush_batch(d);
}

void ActorRuntime::flush_batch(Downstream& d, zmq::send_flags flags) {
  if (d.batched == 0) return;
  const std::uint32_t count = d.batched;
  d.batched = 0;
  --open_batches_;
  char* b = d.batch.data();
  if (count == 1) {
    // One frame goes as it is.
    (void)d.socket.send(zmq::const_buffer(b + kBatchHeader + 2, d.batch.size() - kBatchHeader - 2),
                        flags);
  } else {
    write_be16(b + 1, static_cast<std::uint16_t>(count));
    (void)send_frame(d.socket, d.batch, flags);
    ++batches_sent_;
    batched_messages_ += count;
  }
  d.batch.clear();
}

void ActorRuntime::flush_aged_batches(std::chrono::steady_clock::time_point now) {
  if (open_batches_ > 0 && now - batch_opened_ >= kBatchAge) flush_batches();
}

void ActorRuntime::before_waiting() {
  return_waited_for_credits();
  flush_batches();
}

void ActorRuntime::flush_batches(zmq::send_flags flags) {
  if (open_batches_ == 0) return;
  for (Downstream& d : down_) flush_batch(d, flags);
}

std::size_t ActorRuntime::key_position(const OutEdge& e, const char* frame,
                                       std::size_t size) const {
  const auto span = value_span(frame + 1, size - 1, e.key);
  if (!span) {
    throw Error("send: the edge " + plan_.edge_name(e.edge) + " is keyed by value " +
                std::to_string(e.key) + " (by_key), and this message has no value " +
                std::to_string(e.key));
  }
  return static_cast<std::size_t>(key_hash(frame + 1 + span->first, span->second) %
                                  e.size);
}

void ActorRuntime::send_output(Output& output, Buffer& frame) {
  with_origin_ = loop_op_ = false;
  if (supervised_) {
    origin_ = next_origin();
    origin_.write(origin_bytes_);
    with_origin_ = true;
  }
  const std::size_t edges = output.edges.size();
  // Key positions first: a message without its key fails before any copy of it
  // went out on another edge.
  keyed_.resize(edges);
  for (std::size_t k = 0; k < edges; ++k) {
    const OutEdge& e = out_edges_[output.edges[k]];
    if (e.grouping == EdgeGrouping::by_key) {
      keyed_[k] = forward_ != nullptr
                      ? key_position(e, forward_->data<char>(), forward_->size())
                      : key_position(e, frame.data(), frame.size());
    }
  }
  if (loop_op_ && loop_k_ >= loop_floor_) bound_loop(loop_k_);
  // A restarted actor does not send again what a receiver took from its
  // predecessors. That is decided per edge (round robin: whichever of its
  // receivers took it) and, for broadcast, per receiver: a predecessor may
  // have died between two of the pairs one message goes to.
  const bool check = with_origin_ && (listed_any_ || loop_floor_ > 0);
  auto taken = [&](Downstream& d) {
    if (!check || !taken_before(d)) return false;
    ++d.not_sent;
    ++suppressed_;
    return true;
  };
  for (std::size_t k = 0; k < edges; ++k) {
    OutEdge& e = out_edges_[output.edges[k]];
    const bool last_edge = k + 1 == edges;
    switch (e.grouping) {
      case EdgeGrouping::round_robin: {
        // Not sent again if any receiver of the edge took it (counted at
        // the first that says so; older than any list holds: the first).
        bool skip = false;
        for (std::size_t i = 0; check && !skip && i < e.size; ++i) skip = taken(down_[e.first + i]);
        if (skip) break;
        for (;;) {
          std::size_t pick = e.size;
          for (std::size_t j = 0; j < e.size; ++j) {
            const std::size_t i = (e.next + j) % e.size;
            if (has_room(down_[e.first + i])) {
              pick = i;
              break;
            }
          }
          if (pick != e.size) {
            e.next = pick + 1;
            emit(down_[e.first + pick], frame, last_edge);
            break;
          }
          wait_downstream();
        }
        break;
      }
      case EdgeGrouping::by_key: {
        if (taken(down_[e.first + keyed_[k]])) break;
        emit(down_[e.first + keyed_[k]], frame, last_edge);
        break;
      }
      case EdgeGrouping::broadcast:
        for (std::size_t i = 0; i < e.size; ++i) {
          if (taken(down_[e.first + i])) continue;
          emit(down_[e.first + i], frame, last_edge && i + 1 == e.size);
        }
        break;
    }
  }
  loop_op_ = false;
  ++output.sent;
}

void ActorRuntime::read_credit(Downstream& d, const zmq::message_t& frame) {
  const char* p = frame.data<char>();
  if (frame.size() >= 1 && p[0] == kCredit && d.seq) {
    try {
      msgpack::zone zone(64);
      std::size_t off = 1;
      const auto taken = msgpack::unpack(zone, p, frame.size(), off).as<std::uint64_t>();
      const auto inc = msgpack::unpack(zone, p, frame.size(), off).as<std::uint32_t>();
      const auto finished = msgpack::unpack(zone, p, frame.size(), off).as<std::uint64_t>();
      if (off != frame.size()) throw EncodeError("trailing bytes");
      if (taken > d.sent || finished > taken) throw EncodeError("credit for more than was sent");
      // A predecessor's credit may still be on its way: only the incarnation
      // the frames were last given to counts.
      if (inc == d.receiver_inc) {
        d.taken_seq = std::max(d.taken_seq, taken);
        while (!d.held.empty() && d.held.front_seq() <= finished) {
          if (window_bytes_ != 0) d.bytes_out -= d.held.front_size();
          d.held.pop_front();
        }
        d.credited = std::max(d.credited, finished);
      }
    } catch (const std::exception& e) {
      reject(std::string("bad credit frame: ") + e.what());
    }
  } else if (frame.size() >= 1 && p[0] == kCredit) {
    try {
      // A credit is one small uint: a 64-byte first chunk will do, rather
      // than msgpack's default of 8 KiB.
      msgpack::zone zone(64);
      const auto total = decode_value(zone, p + 1, frame.size() - 1).as<std::uint64_t>();
      // A total, not an increment: a lost credit frame is made good by the
      // next, and a stale or repeated one adds nothing.
      if (total > d.sent) throw EncodeError("credit for more than was sent");
      if (total > d.credited) {
        const std::uint64_t n = total - d.credited;
        if (window_bytes_ != 0) {
          if (n > d.sizes.size()) throw EncodeError("credit for more than went out");
          for (std::uint64_t k = 0; k < n; ++k) {
            d.bytes_out -= d.sizes.front();
            d.sizes.pop_front();
          }
        }
        d.credited = total;
        d.credit += n;
      }
    } catch (const std::exception& e) {
      reject(std::string("bad credit frame: ") + e.what());
    }
  } else if (frame.size() >= 1 && p[0] == kTakenList) {
    try {
      msgpack::zone zone;
      d.taken_before.add_flat(
          decode_value(zone, p + 1, frame.size() - 1).as<std::vector<std::uint64_t>>());
      d.listed = true;
    } catch (const std::exception& e) {
      reject(std::string("bad list of taken messages: ") + e.what());
    }
  } else if (frame.size() == 1 && p[0] == kEosAck) {
    d.acked = true;
  } else {
    reject("unexpected frame from a receiver");
  }
  if (frame.more()) drain_multipart(d.socket);
}

void ActorRuntime::read_downstream(Downstream& d) {
  d.unread = 0;
  zmq::message_t frame;
  while (d.socket.recv(frame, zmq::recv_flags::dontwait)) read_credit(d, frame);
  if (!pending_.empty()) advance_finished();
}

void ActorRuntime::read_all_downstream() {
  for (Downstream& d : down_) read_downstream(d);
}

void ActorRuntime::read_finished_credits() {
  finish_tick_ = 0;
  read_all_downstream();
}

void ActorRuntime::finish(std::size_t up, std::uint64_t seq) {
  Upstream& u = up_[up];
  // Finished at once when everything sent so far has been taken (a sink
  // always): the common case costs one pass over the downstream pairs.
  bool taken = pending_.empty();
  for (std::size_t i = 0; taken && i < down_.size(); ++i) {
    const Downstream& d = down_[i];
    taken = (d.seq ? d.settled() : d.credited) >= d.sent;
  }
  if (taken) {
    u.done = seq;
    if (u.done - u.credited_done >= u.credit_return) return_credit(u);
    return;
  }
  pending_.push_back(Pending{up, u.sender_inc, seq});
  for (const Downstream& d : down_) pending_marks_.push_back(d.sent);
}

void ActorRuntime::advance_finished() {
  while (!pending_.empty()) {
    const Pending& p = pending_.front();
    for (std::size_t i = 0; i < down_.size(); ++i) {
      const Downstream& d = down_[i];
      if ((d.seq ? d.settled() : d.credited) < pending_marks_[i]) return;
    }
    Upstream& u = up_[p.up];
    // A message of a sender's predecessor: its successor sends it again.
    if (u.sender_inc == p.sender_inc) {
      u.done = p.seq;
      if (u.done - u.credited_done >= u.credit_return) return_credit(u);
    }
    pending_.pop_front();
    pending_marks_.erase(pending_marks_.begin(),
                         pending_marks_.begin() + static_cast<std::ptrdiff_t>(down_.size()));
  }
}

void ActorRuntime::wait_downstream() {
  flush_batches();  // what the receivers wait for, while this actor waits
  if (down_.size() == 1) {
    // One receiver: its credit usually comes within a moment, so wait on its
    // socket alone first (rcvtimeo kBriefWaitMs).
    Downstream& d = down_[0];
    zmq::message_t frame;
    if (d.socket.recv(frame)) {
      read_credit(d, frame);
      read_downstream(d);
      housekeeping();
      return;
    }
  }
  for (zmq::pollitem_t& item : down_items_) item.revents = 0;
  zmq::poll(down_items_.data(), down_items_.size(), kPollPeriod);
  for (std::size_t i = 0; i < down_.size(); ++i) {
    if (down_items_[i].revents & ZMQ_POLLIN) read_downstream(down_[i]);
  }
  housekeeping((down_items_.back().revents & ZMQ_POLLIN) != 0);
}

void ActorRuntime::housekeeping(bool force) {
  const auto now = std::chrono::steady_clock::now();
  flush_aged_batches(now);
  if (!force && now < next_housekeeping_) return;
  next_housekeeping_ = now + kHousekeepingPeriod;
  flush_batches();
  zmq::message_t frame;
  while (control_.recv(frame, zmq::recv_flags::dontwait)) handle_control(frame);
  // A sender whose credit was lost may have none left, and then sends
  // nothing that would make this receiver send another.
  if (!pending_.empty()) read_all_downstream();
  for (Upstream& u : up_) {
    if (u.owed || credit_waited_for(u)) return_credit(u);
    if (u.ack_owed) send_eos_ack(u);
  }
  report_stats();
  check_driver();
}

bool ActorRuntime::credit_waited_for(const Upstream& u) const noexcept {
  // Supervised: what is finished goes back when idle too, or a sender
  // holding less than a batch would wait for ever.
  // A supervised sender counts a message finished only once what it sent
  // for it was taken: a credit held back for a batch would hold it up.
  // Any sender: one that sees half a window uncredited batches what it
  // sends (batching()), and must see a receiver that waits as idle.
  return (supervised_ && (u.done > u.credited_done || u.taken > u.credited)) ||
         ((u.sender_supervised || !u.ended) && u.taken > u.credited);
}

void ActorRuntime::return_waited_for_credits() {
  for (Upstream& u : up_) {
    if (credit_waited_for(u)) return_credit(u);
  }
}

void ActorRuntime::end_stream() {
  flush_batches();
  for (Downstream& d : down_) {
    (void)send_tagged(d.socket, kEos, d.sent);
    d.eos_sent = true;
  }
  auto all_acked = [&] {
    for (const Downstream& d : down_) {
      if (!d.acked) return false;
    }
    return true;
  };
  while (!all_acked()) wait_downstream();
}

void ActorRuntime::receive_loop() {
  zmq::message_t from;
  zmq::message_t frame;
  std::vector<zmq::pollitem_t> items;
  while (open_upstreams_ > 0) {
    if (!pending_.empty()) {
      // Finished messages wait for credits from downstream, which let their
      // senders go on. While data is there, take it; only an empty inbox
      // waits, for data and credits together.
      if (inbox_.recv(from, zmq::recv_flags::dontwait)) {
        if (!from.more() || !inbox_.recv(frame, zmq::recv_flags::dontwait)) {
          reject("frame without routing id");
          continue;
        }
        if (frame.more()) drain_multipart(inbox_);
        handle_inbound(from, frame);
        if (++finish_tick_ >= finish_read_every_) read_finished_credits();
        continue;
      }
      if (items.empty()) {
        items.push_back({inbox_.handle(), 0, ZMQ_POLLIN, 0});
        for (Downstream& d : down_) items.push_back({d.socket.handle(), 0, ZMQ_POLLIN, 0});
      }
      for (zmq::pollitem_t& item : items) item.revents = 0;
      return_waited_for_credits();  // as before any wait for input (below)
      flush_batches();
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(kBriefWaitMs));
      read_all_downstream();
      if ((items[0].revents & ZMQ_POLLIN) == 0) {
        housekeeping();
        continue;
      }
    }
    // Waits up to kBriefWaitMs (rcvtimeo) for the next message. Before it
    // blocks, what it took goes back as credit (held back for a batch of
    // half a window, a sender would take this receiver for a busy one, and
    // a supervised sender would stall until housekeeping, ms later), and its
    // open batches go: their receivers wait for them.
    const bool got = static_cast<bool>(inbox_.recv(from, zmq::recv_flags::dontwait));
    if (!got) {
      return_waited_for_credits();
      flush_batches();
    }
    if (got || inbox_.recv(from)) {
      // A ROUTER delivers [routing id][frame...]; the parts of one message
      // arrive together.
      if (!from.more() || !inbox_.recv(frame, zmq::recv_flags::dontwait)) {
        reject("frame without routing id");
        continue;
      }
      if (frame.more()) drain_multipart(inbox_);
      handle_inbound(from, frame);
      // Finished messages wait for credits from downstream: take them in
      // often, so that senders can let go of what they hold.
      if (!pending_.empty() && ++finish_tick_ >= finish_read_every_) read_finished_credits();
      continue;
    }
    // Idle for a while: look after the rest, then wait for data or control.
    housekeeping(true);
    if (!pending_.empty()) {
      // Wake up for credits too.
      std::vector<zmq::pollitem_t> items{{inbox_.handle(), 0, ZMQ_POLLIN, 0},
                                         {control_.handle(), 0, ZMQ_POLLIN, 0}};
      for (Downstream& d : down_) items.push_back({d.socket.handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items.data(), items.size(), kPollPeriod);
      read_all_downstream();
      continue;
    }
    zmq::pollitem_t items[] = {{inbox_.handle(), 0, ZMQ_POLLIN, 0},
                               {control_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, kPollPeriod);
    if ((items[1].revents & ZMQ_POLLIN) != 0) housekeeping(true);
  }
}

void ActorRuntime::report_stats(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now < next_stats_) return;
  next_stats_ = now + std::chrono::milliseconds(500);
  Stats stats;
  for (const OutEdge& e : out_edges_) {
    std::uint64_t sent = 0, waiting = 0;
    for (std::size_t i = e.first; i < e.first + e.size; ++i) {
      const Downstream& d = down_[i];
      sent += d.sent;
      waiting += d.seq ? d.sent - std::min(d.sent, d.taken_seq)
                       : d.window - std::min<std::uint64_t>(d.credit, d.window);
    }
    stats.sent += sent;
    stats.waiting += waiting;
    stats.out.push_back({e.edge, {sent, waiting}});
  }
  for (const InEdge& e : in_edges_) {
    std::uint64_t received = 0;
    // From a sender's earlier incarnations too: what the group took in all.
    for (std::size_t i = e.first; i < e.first + e.size; ++i) {
      received += up_[i].received + up_[i].received_before;
    }
    stats.received += received;
    stats.in.push_back({e.edge, received});
  }
  // What restarts moved out of one process's counts, per pair, so that the
  // broker can count over incarnations.
  for (const Upstream& u : up_) {
    if (u.received_before > 0) stats.before.push_back({{u.edge, u.id}, u.received_before});
  }
  for (const Downstream& d : down_) {
    const std::uint64_t settled = settled_before(d);
    if (settled > 0) stats.settled.push_back({{d.edge, d.id}, settled});
  }
  send_ctl(control_, stats);
}

std::uint64_t ActorRuntime::settled_before(const Downstream& d) noexcept {
  const auto dead = static_cast<std::uint64_t>(
      std::count_if(d.dead.begin(), d.dead.end(), [&](std::uint64_t q) { return q > d.base; }));
  return d.base + dead;
}

bool ActorRuntime::reply(const Upstream& sender, Buffer& frame) {
  try {
    if (!inbox_.send(zmq::buffer(data_routing_id(sender.id, sender.edge, sender.sender_inc)),
                     zmq::send_flags::sndmore)) {
      return false;
    }
    return send_frame(inbox_, frame);
  } catch (const zmq::error_t& e) {
    // A sender that is not connected (gone, or reconnecting): the caller
    // decides whether to try again; whether it ended well is for the
    // supervisor to judge, not for this receiver.
    if (e.num() != EHOSTUNREACH) throw;
    return false;
  }
}

void ActorRuntime::send_eos_ack(Upstream& u) {
  if (drop_first_eos_ack_) {
    drop_first_eos_ack_ = false;
    u.ack_owed = true;
    return;
  }
  Buffer ack;
  ack.put(kEosAck);
  u.ack_owed = !reply(u, ack);
}

void ActorRuntime::settle_eos_acks() {
  // A sender reconnecting when its end of stream was taken is back within
  // ZeroMQ's reconnect interval; one that is gone for good is the broker's
  // to judge (it reports a sender that cannot finish its stream).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    bool owed = false;
    for (Upstream& u : up_) {
      if (u.ack_owed) send_eos_ack(u);
      owed = owed || u.ack_owed;
    }
    if (!owed || std::chrono::steady_clock::now() >= deadline) return;
    housekeeping(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void ActorRuntime::return_credit(Upstream& u) {
  Buffer credit;
  credit.put(kCredit);
  if (supervised_) {
    // [taken, incarnation, finished], by seq: `taken` is flow control,
    // `finished` lets the sender drop what it holds for a restart.
    const std::uint64_t taken = u.next_seq - 1;
    msgpack::pack(credit, taken);
    msgpack::pack(credit, incarnation_);
    msgpack::pack(credit, u.done);
    u.owed = !reply(u, credit);
    if (!u.owed) {
      u.credited = u.taken;
      u.credited_done = u.done;
    }
    return;
  }
  msgpack::pack(credit, u.taken);
  const bool dropped = drop_credit_every_ != 0 && ++credit_replies_ % drop_credit_every_ == 0;
  // Not sent (a sender reconnecting, or gone): owed, and retried from
  // housekeeping() until it goes out or the sender ends its stream.
  u.owed = dropped || !reply(u, credit);
  if (u.owed) return;
  u.credited = u.taken;
  u.unreturned_bytes = 0;
}

std::shared_ptr<Payload> ActorRuntime::decode_inbound(zmq::message_t& frame,
                                                      std::size_t header) {
  // Small frames are copied into the decoder's zone; large ones are kept
  // and referred to, without a copy.
  constexpr std::size_t kKeepFrameAtLeast = 1024;
  const std::size_t body = frame.size() - header;
  if (frame.size() >= kKeepFrameAtLeast) {
    std::shared_ptr<Payload> payload = payload_for(body);
    auto owner = std::make_shared<zmq::message_t>(std::move(frame));
    const char* q = owner->data<char>() + header;
    decode_message_into(*payload, q, body, std::move(owner));
    payload->tag_room = true;  // header >= 1: the byte before the message
    return payload;
  }
  return decode_small(frame.data<char>() + header, body);
}

std::shared_ptr<Payload> ActorRuntime::decode_small(const char* data, std::size_t size) {
  std::shared_ptr<Payload> payload = payload_for(size);
  decode_message_into(*payload, data, size, nullptr);
  payload->encoded = data;  // until recv() returns (FrameBytesGoWith)
  payload->encoded_size = size;
  return payload;
}

void ActorRuntime::take(Upstream& u, std::size_t size, std::shared_ptr<Payload> payload) {
  // The credit goes back as soon as the message is off the wire, before
  // recv() runs: a recv() that blocks in send() on the next edge must not
  // hold up this one, so edges do not chain their round trips.
  u.unreturned_bytes += size;
  if (++u.taken - u.credited >= u.credit_return ||
      (window_bytes_ != 0 && u.unreturned_bytes >= window_bytes_ / 2)) {
    return_credit(u);
  }
  if (!payload) return;
  ++u.received;
  {
    const Message message(payload);
    const FrameBytesGoWith guard(*payload);
    actor_.recv(message);
  }
  // A slow recv() must not hold what it sent (housekeeping comes every 16).
  if (open_batches_ > 0) flush_aged_batches(std::chrono::steady_clock::now());
  payload.reset();
  // Not kept: let a large frame go now rather than at the next message.
  if (spare_unshared()) spare_->bytes.reset();
  if ((++stats_tick_ & 15) == 0) housekeeping();
}

bool ActorRuntime::spare_unshared() const noexcept {
  // use_count() == 1: no Message refers to it any more (recv() did not keep
  // one). The count is read relaxed; the fence orders what follows after the
  // last release by a thread of the user's that may have held a copy.
  if (!spare_ || spare_.use_count() != 1) return false;
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
}

std::shared_ptr<Payload> ActorRuntime::payload_for(std::size_t size) {
  const std::size_t chunk = zone_chunk_for(size);
  if (spare_unshared() && spare_->chunk >= chunk) {
    spare_->zone.clear();
    spare_->bytes.reset();
    spare_->array = msgpack::object();
    spare_->redelivered = false;
    return spare_;
  }
  spare_ = std::make_shared<Payload>(chunk);
  return spare_;
}

void ActorRuntime::handle_inbound(zmq::message_t& from, zmq::message_t& frame) {
  const auto peer = parse_data_routing_id(from.data(), from.size());
  const InEdge* in = nullptr;
  if (peer) {
    for (const InEdge& e : in_edges_) {
      if (e.edge == peer->edge) in = &e;
    }
  }
  if (in == nullptr || peer->id < in->sender_first || peer->id - in->sender_first >= in->size) {
    reject("frame from a peer that is not a sender of an edge into this group");
    return;
  }
  const std::size_t up = in->first + (peer->id - in->sender_first);
  Upstream& u = up_[up];
  const char* p = frame.data<char>();
  const std::size_t size = frame.size();
  if (size == 0) {
    reject("empty frame from actor " + plan_.actors[u.id].name);
    return;
  }
  if (peer->incarnation != u.sender_inc) {
    // A predecessor's frame, still on its way: not taken, so never credited,
    // and its successor sends it again if it is still to be sent.
    if (peer->incarnation < u.sender_inc) return;
    new_sender_incarnation(u, peer->incarnation);
  }
  if (p[0] != kBatch) {
    handle_data(u, up, InFrame{p, size, &frame});
    return;
  }
  const std::optional<std::uint16_t> count = batch_count(p, size);
  if (!count) {
    reject("a malformed batch from actor " + plan_.actors[u.id].name);
    return;
  }
  for (std::size_t i = 0, at = kBatchHeader; i < *count; ++i) {
    const std::size_t n = read_be16(p + at);
    const char* member = p + at + 2;
    at += 2 + n;
    if (member[0] != kData && member[0] != kOriginData && member[0] != kSeqData) {
      reject("a batch member that is not a message, from actor " + plan_.actors[u.id].name);
      continue;
    }
    handle_data(u, up, InFrame{member, n, nullptr});
  }
}

std::shared_ptr<Payload> ActorRuntime::decode_frame(const InFrame& f, std::size_t header) {
  if (f.whole != nullptr) return decode_inbound(*f.whole, header);
  return decode_small(f.p + header, f.size - header);
}

void ActorRuntime::handle_data(Upstream& u, std::size_t up, const InFrame& f) {
  const char* p = f.p;
  const std::size_t size = f.size;
  if (p[0] == kQuery) {
    // A restarted sender asks what this receiver took from its predecessors.
    Buffer list;
    list.put(kTakenList);
    msgpack::pack(list, u.dedup.flat());
    if (!reply(u, list)) reject("could not answer a restarted sender's query");
    return;
  }
  if (supervised_) {
    if (p[0] == kResume) {
      try {
        msgpack::zone zone(64);
        auto [inc, base, skip] =
            decode_value(zone, p + 1, size - 1)
                .as<std::tuple<std::uint32_t, std::uint64_t, std::vector<std::uint64_t>>>();
        if (inc != incarnation_) return;  // for a predecessor of this process
        u.resumed = true;
        u.next_seq = base + 1;
        u.done = u.credited_done = base;
        u.taken = u.credited = 0;
        u.skip = std::move(skip);
      } catch (const std::exception& e) {
        reject(std::string("bad resume frame: ") + e.what());
      }
      return;
    }
    // Before the pair's 'R', frames were meant for a predecessor: the sender
    // holds them and sends them again after it.
    if (!u.resumed) return;
    if (p[0] == kSeqData) {
      handle_seq_data(u, up, f);
      return;
    }
    if (p[0] == kEos) {
      if (u.ended) return;  // sent again after a resume
      u.ended = true;
      u.eos_held = true;
      --open_upstreams_;
      return;
    }
    reject("unexpected frame kind from actor " + plan_.actors[u.id].name +
           " (this actor is supervised)");
    return;
  }
  std::size_t header = 1;
  if (p[0] == kOriginData) {
    if (size < 1 + Origin::kSize + 1) {
      reject("short frame from actor " + plan_.actors[u.id].name);
      return;
    }
    header = 1 + Origin::kSize;
    const Origin o = Origin::read(p + 1);
    const std::uint64_t limit = origin_limit(u, o);
    if (limit == 0) {
      reject("a message from actor " + plan_.actors[u.id].name + " with an origin it cannot have");
      return;
    }
    if (!u.ended && !u.dedup.insert(o, limit)) {
      // Taken already, from the sender's predecessor.
      ++duplicates_;
      ++u.received;
      ++u.taken;
      u.unreturned_bytes += size;
      if (u.taken - u.credited >= u.credit_return) return_credit(u);
      return;
    }
  }
  if (p[0] == kData || p[0] == kOriginData) {
    if (u.ended) {
      reject("data after end of stream from actor " + plan_.actors[u.id].name);
      return;
    }
    std::shared_ptr<Payload> payload;
    try {
      payload = decode_frame(f, header);
    } catch (const EncodeError& e) {
      reject(std::string("from actor ") + plan_.actors[u.id].name + ": " + e.what());
    }
    take(u, f.whole != nullptr ? size : size + 2, std::move(payload));
  } else if (p[0] == kEos) {
    if (u.ended) {
      reject("second end of stream from actor " + plan_.actors[u.id].name);
      return;
    }
    u.ended = true;
    u.owed = false;  // it sends nothing more
    --open_upstreams_;
    // The count is checked by the broker against what the sender reports.
    send_eos_ack(u);
  } else {
    reject("unknown frame kind from actor " + plan_.actors[u.id].name);
  }
}

void ActorRuntime::new_sender_incarnation(Upstream& u, std::uint32_t incarnation) {
  // The sender was started again: its pair starts over (counts, credits,
  // end of stream); what its predecessor had sent is not counted against it.
  u.received_before += u.received;
  u.received = 0;
  u.taken = u.credited = 0;
  u.unreturned_bytes = 0;
  u.owed = u.ack_owed = false;
  u.sender_inc = incarnation;
  if (u.ended) {
    u.ended = false;
    ++open_upstreams_;
  }
  u.eos_held = false;
  u.resumed = !supervised_;
  u.next_seq = 1;
  u.done = u.credited_done = 0;
  u.skip.clear();
  next_stats_ = {};  // received_before changed: as in on_restarted()
}

void ActorRuntime::handle_seq_data(Upstream& u, std::size_t up, const InFrame& f) {
  const char* p = f.p;
  const std::size_t size = f.size;
  if (u.ended) {
    reject("data after end of stream from actor " + plan_.actors[u.id].name);
    return;
  }
  if (size < kSeqHeader + 1) {
    reject("short frame from actor " + plan_.actors[u.id].name);
    return;
  }
  const std::uint64_t seq = read_be64(p + 1);
  const auto flags = static_cast<unsigned char>(p[9]);
  const bool again = (flags & kFlagRedelivered) != 0;
  const std::size_t header = (flags & kFlagOrigin) != 0 ? kSeqHeader + Origin::kSize : kSeqHeader;
  if (size < header + 1) {
    reject("short frame from actor " + plan_.actors[u.id].name);
    return;
  }
  // Dead letters the sender dropped do not come.
  while (!u.skip.empty() && u.skip.front() < seq && u.skip.front() == u.next_seq) {
    u.skip.erase(u.skip.begin());
    ++u.next_seq;
  }
  if (seq < u.next_seq) return;  // taken already (sent again after a resume)
  if (seq > u.next_seq) {
    reject("message " + std::to_string(seq) + " from actor " + plan_.actors[u.id].name +
           " where " + std::to_string(u.next_seq) + " was due");
    return;
  }
  ++u.next_seq;
  if (++u.taken - u.credited >= u.credit_return) return_credit(u);
  if ((flags & kFlagOrigin) != 0) {
    const Origin o = Origin::read(p + kSeqHeader);
    const std::uint64_t limit = origin_limit(u, o);
    if (limit == 0) {
      reject("a message from actor " + plan_.actors[u.id].name + " with an origin it cannot have");
      finish(up, seq);  // nothing to run, as for one that does not decode
      return;
    }
    if (!u.dedup.insert(o, limit)) {
      // Taken already, from the sender's predecessor: finished.
      ++duplicates_;
      ++u.received;
      finish(up, seq);
      return;
    }
  }
  if (inflight_ != nullptr) {
    // Read by the supervisor if this process dies inside recv(); written
    // before decoding, while the frame's bytes are still here.
    inflight_->edge = u.edge;
    inflight_->sender = u.id;
    inflight_->sender_incarnation = u.sender_inc;
    inflight_->seq = seq;
    inflight_->size = static_cast<std::uint32_t>(size - header);
    const std::size_t head = std::min(size - header, sizeof inflight_->head);
    std::memcpy(inflight_->head, p + header, head);
    inflight_->head_size = static_cast<std::uint32_t>(head);
  }
  std::shared_ptr<Payload> payload;
  std::optional<Message> message;
  try {
    payload = decode_frame(f, header);
    payload->redelivered = again;
    message.emplace(payload);
  } catch (const EncodeError& e) {
    reject(std::string("from actor ") + plan_.actors[u.id].name + ": " + e.what());
  }
  if (!message) {
    finish(up, seq);  // nothing to run: it is finished
    return;
  }
  ++u.received;
  if (inflight_ != nullptr) inflight_->busy.store(1, std::memory_order_release);
  current_ = Origin{u.edge, u.id, u.sender_inc, seq, 0};
  in_recv_ = true;
  {
    const FrameBytesGoWith guard(*payload);
    actor_.recv(*message);
  }
  in_recv_ = false;
  if (inflight_ != nullptr) inflight_->busy.store(0, std::memory_order_release);
  if (open_batches_ > 0) flush_aged_batches(std::chrono::steady_clock::now());
  message.reset();
  payload.reset();
  if (spare_unshared()) spare_->bytes.reset();
  finish(up, seq);
  if ((++stats_tick_ & 15) == 0) housekeeping();
}

void ActorRuntime::drain_multipart(zmq::socket_t& socket) {
  zmq::message_t part;
  do {
    if (!socket.recv(part, zmq::recv_flags::dontwait)) return;
  } while (part.more());
  reject("unexpected multipart message");
}

Ctl ActorRuntime::handle_control(const zmq::message_t& frame) {
  msgpack::zone zone;
  try {
    ControlFrame f = decode_control(zone, frame.data<char>(), frame.size());
    const Ctl kind = kind_of(f);
    switch (kind) {
      case Ctl::start: {
        Start& start = std::get<Start>(f);
        if (start.endpoints.size() != plan_.actors.size() ||
            start.incarnations.size() != plan_.actors.size()) {
          throw EncodeError("bad endpoint table");
        }
        endpoints_ = std::move(start.endpoints);
        incarnations_ = std::move(start.incarnations);
        puts_before_.add_flat(start.taken);
        return kind;
      }
      case Ctl::restarted:
        // Only once started: until then the start frame has the news.
        if (!endpoints_.empty()) on_restarted(std::get<Restarted>(f));
        return kind;
      case Ctl::put_ack:
        acked_puts_.push_back(std::get<PutAck>(f).queue_id);
        return kind;
      case Ctl::ack:
        return kind;
      case Ctl::abort:
        end_aborted();
      default:
        throw EncodeError(std::string("unexpected control frame ") + name_of(f));
    }
  } catch (const std::exception& e) {
    reject(std::string("bad control frame: ") + e.what());
  }
  return Ctl{0};
}

void ActorRuntime::resume(Downstream& d) {
  // What follows starts after the last seq settled; everything held goes
  // again, marked as a delivery again, then the end of stream if it went.
  d.base = d.settled();
  d.taken_seq = d.base;  // what follows is in flight again
  if (d.batched > 0) {
    // Its frames are held: they go again below, after the 'R'.
    d.batched = 0;
    --open_batches_;
  }
  Buffer r;
  r.put(kResume);
  // Dead letters among what is held are skipped: seqs after `base` that do
  // not come.
  std::vector<std::uint64_t> skip;
  for (std::uint64_t q : d.dead) {
    if (q > d.base) skip.push_back(q);
  }
  std::sort(skip.begin(), skip.end());
  msgpack::pack(r, std::make_tuple(d.receiver_inc, d.base, skip));
  (void)send_frame(d.socket, r);
  d.held.for_each([&](std::uint64_t, const char* frame, std::size_t size) {
    // A fresh copy with the flag (held: it went before). Not the held frame
    // itself: ZeroMQ may still be sending it to the predecessor.
    zmq::message_t again(frame, size);
    char* p = again.data<char>();
    p[9] = static_cast<char>(p[9] | kFlagRedelivered);
    (void)d.socket.send(again, zmq::send_flags::none);
  });
  if (d.eos_sent) {
    (void)send_tagged(d.socket, kEos, d.sent);
    d.acked = false;
  }
}

void ActorRuntime::on_restarted(const Restarted& r) {
  if (r.actor >= plan_.actors.size() || r.actor == slot_.id) return;
  if (r.incarnation <= incarnations_[r.actor]) return;  // old news
  incarnations_[r.actor] = r.incarnation;
  const std::string old = endpoints_[r.actor];
  endpoints_[r.actor] = r.endpoint;
  struct DeadPut {
    const Downstream* d;
    std::uint64_t seq;
    std::string frame;
    std::string reason;
  };
  std::vector<DeadPut> puts;
  for (Downstream& d : down_) {
    if (d.id != r.actor || !d.seq) continue;
    if (old != r.endpoint) {
      // Across hosts the successor's inbox has another port.
      try {
        d.socket.disconnect(old);
      } catch (const zmq::error_t&) {
      }
      d.socket.connect(r.endpoint);
    }
    d.receiver_inc = r.incarnation;
    for (const DeadLetter& dl : r.dead) {
      const auto& [who, what] = dl;
      const auto& [edge_seq, reason] = what;
      if (who.first != slot_.id || who.second != incarnation_ || edge_seq.first != d.edge) continue;
      std::optional<std::string> frame = d.held.copy(edge_seq.second);
      if (!frame) continue;
      d.held.erase(edge_seq.second);
      d.dead.push_back(edge_seq.second);
      if (window_bytes_ != 0) d.bytes_out -= frame->size();
      puts.push_back({&d, edge_seq.second, std::move(*frame), reason});
    }
    resume(d);
    if (supervised_ && incarnation_ > 0 && !d.listed) {
      // Still waiting for its list: the question may have gone to the
      // receiver's predecessor. Its successor's list is what counts now.
      Buffer q;
      q.put(kQuery);
      (void)send_frame(d.socket, q);
    }
  }
  // The puts last: dead_letter() waits for the broker and may handle another
  // restart meanwhile (of this receiver too), which finds every pair already
  // given to this incarnation and moves it on to the next.
  for (const DeadPut& p : puts) dead_letter(*p.d, p.seq, p.frame, p.reason);
  // The pairs' settled counts changed: the broker hears of it soon, not
  // only in 500 ms (this process may not live that long).
  next_stats_ = {};
}

void ActorRuntime::dead_letter(const Downstream& d, std::uint64_t seq, const std::string& held,
                               const std::string& reason) {
  const ActorSlot& to = plan_.actors[d.id];
  const Supervision* s = plan_.supervised_group(to.group);
  if (s == nullptr || !s->dead_letters) return;  // the broker stops the run instead
  // The message follows the seq header and, from a supervised sender, the
  // origin (emit()).
  const char* frame = held.data();
  const std::size_t skip = (static_cast<unsigned char>(frame[9]) & kFlagOrigin) != 0
                               ? kSeqHeader + Origin::kSize
                               : kSeqHeader;
  const char* body = frame + skip;
  const std::size_t size = held.size() - skip;
  const auto header = array_header(body, size);
  if (!header) {
    // Not a message (it was sent by this process): nothing to put, and said.
    log(Level::error, "message " + std::to_string(seq) + " to " + to.name +
                        " is a dead letter but not a msgpack array; it is not put");
    return;
  }
  // [group, reason, the message's values...]: a new array header, then the
  // values as they were.
  Buffer out;
  msgpack::packer<Buffer> pk(out);
  pk.pack_array(header->first + 2);
  pk.pack(to.group_name);
  pk.pack(reason);
  out.write(body + header->second, size - header->second);
  log(Level::warn, "message " + std::to_string(seq) + " to " + to.name + " on edge " +
                       plan_.edge_name(d.edge) + " is a dead letter: " + reason);
  put_message(*s->dead_letters, true, out, false);
}

void ActorRuntime::wait_control(Ctl kind, std::uint64_t queue_id) {
  flush_batches();
  for (;;) {
    if (kind == Ctl::put_ack) {
      auto it = std::find(acked_puts_.begin(), acked_puts_.end(), queue_id);
      if (it != acked_puts_.end()) {
        acked_puts_.erase(it);
        return;
      }
    }
    zmq::message_t frame;
    if (control_.recv(frame, zmq::recv_flags::dontwait)) {
      if (handle_control(frame) == kind && kind != Ctl::put_ack) return;
      continue;
    }
    zmq::pollitem_t items[] = {{control_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, kPollPeriod);
    check_driver();
  }
}

void ActorRuntime::put_message(std::uint64_t queue_id, bool bounded, const Buffer& message,
                               bool user) {
  // A supervised actor waits for every put to be taken, as for a bounded
  // queue: a put still in its socket when it dies would be lost, while the
  // message it came from counts as finished. Being acknowledged, a put is
  // taken once made: it never holds bound_loop() up.
  bounded = bounded || supervised_;
  char origin[Origin::kSize];
  std::string_view origin_bin;
  // A dead letter has none: it comes from a receiver's failures, not from
  // this actor's code, so it would shift the origins of what follows.
  if (supervised_ && user) {
    const bool loop = !in_recv_;
    const Origin o = next_origin();
    loop_op_ = false;
    if ((loop && o.seq < loop_floor_) || (!puts_before_.empty() && puts_before_.contains(o))) {
      ++suppressed_;  // the broker took it from a predecessor
      return;
    }
    if (loop) bound_loop(o.seq);
    o.write(origin);
    origin_bin = std::string_view(origin, sizeof origin);
  }
  send_ctl(control_, Put{queue_id, bounded, Bin{std::string_view(message.data(), message.size())},
                         Bin{origin_bin}});
  if (bounded) wait_control(Ctl::put_ack, queue_id);
}

void ActorRuntime::log(Level level, const std::string& text) noexcept {
  try {
    Buffer b;
    encode(b, LogRecord{slot_.id, static_cast<std::uint8_t>(level), text});
    (void)send_frame(log_, b);
    ++logs_;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "relay: [%s] (%s) log record lost (%s): %s\n", slot_.group_name.c_str(),
                 slot_.name.c_str(), e.what(), text.c_str());
  }
}

void ActorRuntime::say_bye() {
  report_stats(true);
  if (const char* path = std::getenv("RELAY_TESTING_BATCHES_TO")) {
    // For tests that batching takes place: "NAME BATCHES MESSAGES" appended
    // (one small write with O_APPEND: lines of processes do not interleave).
    const std::string line = slot_.name + " " + std::to_string(batches_sent_) + " " +
                             std::to_string(batched_messages_) + "\n";
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  EdgeCounts sent;
  EdgeCounts received;
  std::vector<std::uint64_t> outputs;
  for (const Downstream& d : down_) sent.push_back({{d.edge, d.id}, d.sent});
  for (const Upstream& u : up_) received.push_back({{u.edge, u.id}, u.received});
  for (const Output& o : outputs_) outputs.push_back(o.sent);
  EdgeCounts settled;
  std::uint64_t before = 0;
  for (const Downstream& d : down_) {
    const std::uint64_t n = settled_before(d);
    if (n > 0) settled.push_back({{d.edge, d.id}, n});
  }
  for (const Upstream& u : up_) before += u.received_before;
  EdgeCounts not_sent;
  for (const Downstream& d : down_) {
    if (d.not_sent > 0) not_sent.push_back({{d.edge, d.id}, d.not_sent});
  }
  if (before > 0) {
    log(Level::info, "took " + std::to_string(before) +
                         " message(s) from senders that were started again since");
  }
  if (duplicates_ > 0) {
    log(Level::info, "dropped " + std::to_string(duplicates_) +
                         " message(s) a restarted sender sent again (taken already)");
  }
  if (suppressed_ > 0) {
    log(Level::info, "did not send again " + std::to_string(suppressed_) +
                         " message(s) its predecessors had delivered");
  }
  send_ctl(control_, Bye{logs_, std::move(sent), std::move(received), rejected_, std::move(outputs),
                         std::move(settled), std::move(not_sent)});
  wait_control(Ctl::ack);
}

void ActorRuntime::fail(const std::string& text) noexcept {
  bool acknowledged = false;
  try {
    // What was sent before the failure goes, if it can without waiting.
    flush_batches(zmq::send_flags::dontwait);
    send_ctl(control_, Fail{text, logs_});
    // Wait a little for the broker to take the report (and every log record
    // before it); a broker that is gone must not keep a failed actor alive.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!acknowledged && std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t items[] = {{control_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(100));
      zmq::message_t frame;
      while (control_.recv(frame, zmq::recv_flags::dontwait)) {
        // Anything else (an abort, a stray frame) is not the answer awaited.
        try {
          msgpack::zone zone;
          if (kind_of(decode_control(zone, frame.data<char>(), frame.size())) == Ctl::ack) {
            acknowledged = true;
          }
        } catch (const EncodeError&) {
        }
      }
    }
  } catch (...) {
  }
  if (!acknowledged) {
    std::fprintf(stderr, "relay: [%s] (%s) failed (pid %d): %s\n", slot_.group_name.c_str(),
                 slot_.name.c_str(), static_cast<int>(::getpid()), text.c_str());
  }
  std::fflush(nullptr);
  ::_exit(1);
}

void ActorRuntime::reject(const std::string& what) {
  ++rejected_;
  // Log the first few in full; a flood of hostile frames must not become a
  // flood of log records.
  if (rejected_ <= 10) {
    log(Level::warn, "rejected a frame: " + what);
  } else if (rejected_ == 11) {
    log(Level::warn, "rejected more frames; counting them without logging");
  }
}

void ActorRuntime::check_driver() const {
  if (!parent_alive(plan_)) ::_exit(kAbortedStatus);
}

}  // namespace relay::internal
