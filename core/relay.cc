#include "relay/relay.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "broker/broker.h"
#include "workers/worker.h"
#include "relay/internal/frames.h"
#include "relay/runtime/actor_runtime.h"
#include "relay/runtime/inlet_channel.h"
#include "relay/runtime/overrides.h"
#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/runtime/queue_state.h"
#include "relay/internal/security.h"
#include "relay/runtime/inflight.h"
#include "relay/runtime/signals.h"
#include "relay/runtime/spawner.h"
#include "relay/runtime/stats_feed.h"
#include "relay/internal/transport.h"

namespace relay {
namespace internal {

struct RelayState {
  std::uint64_t serial = 0;  // see live_relays()
  std::optional<std::size_t> maxsize;
  std::string log_name;
  std::vector<Group> groups;
  std::vector<EdgeSlot> edges;  // in the order connect() made them
  bool connected = false;
  bool started = false;
  // Across hosts.
  std::string listen;
  std::vector<std::pair<std::string, Placement>> placements;
  std::vector<std::pair<std::string, Restart>> restarts;
  std::optional<std::size_t> expect_workers;
  std::chrono::milliseconds worker_wait{30000};
  std::string key_file;
  bool insecure = false;
  std::string monitor;
  std::optional<PortRange> ports;  // ports(): where tcp inboxes and logs bind
  std::string broker;         // a standalone relay-broker's endpoint
  std::string monitor_bound;  // set by start() once bound
  std::mutex monitor_mu;
};

// What init() says about this process (from its flags and the environment).
// A program that never calls init() is a driver whatever its environment.
struct ProcessRole {
  std::string worker;  // the driver's endpoint, if a worker
  std::vector<std::string> labels;
  std::string key_file;
};

ProcessRole& role() {
  static ProcessRole r;
  return r;
}

std::vector<std::string> split_labels(const std::string& all) {
  std::vector<std::string> labels;
  for (std::size_t at = 0; at <= all.size();) {
    const std::size_t comma = std::min(all.find(',', at), all.size());
    if (comma > at) labels.push_back(all.substr(at, comma - at));
    at = comma + 1;
  }
  return labels;
}

std::string tcp_host(const std::string& endpoint, const char* call) {
  const std::size_t colon = endpoint.rfind(':');
  if (endpoint.rfind("tcp://", 0) != 0 || colon == std::string::npos || colon < 6 ||
      colon + 1 == endpoint.size()) {
    throw std::invalid_argument(std::string(call) + ": '" + endpoint +
                                "' is not a tcp://ADDRESS:PORT endpoint");
  }
  return endpoint.substr(6, colon - 6);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]" || host == "::1";
}

namespace {

std::atomic<bool> g_running{false};

// The serials of the Relays that exist, so that an actor wired into one that
// has been destroyed can be wired again, and one in a live relay cannot.
struct LiveRelays {
  std::mutex mu;
  std::uint64_t next = 1;
  std::set<std::uint64_t> live;
};
LiveRelays& live_relays() {
  static LiveRelays* r = new LiveRelays;  // used until exit, never destroyed
  return *r;
}

// The names of this process's threads, from /proc/self/task/*/comm.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.push_back(name.empty() ? entry.path().filename().string() : name);
  }
  return names;
}

// Threads a sanitizer runtime starts by itself (ThreadSanitizer's background
// thread), which fork() leaves behind harmlessly.
#if defined(__SANITIZE_THREAD__)
constexpr std::size_t kRuntimeThreads = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr std::size_t kRuntimeThreads = 1;
#else
constexpr std::size_t kRuntimeThreads = 0;
#endif
#else
constexpr std::size_t kRuntimeThreads = 0;
#endif

// "ns::Worker<int>" -> "Worker".
std::string short_class_name(const Actor& a) {
  std::string s = demangle(typeid(a));
  if (auto lt = s.find('<'); lt != std::string::npos) s.resize(lt);
  if (auto colon = s.rfind("::"); colon != std::string::npos) s.erase(0, colon + 2);
  return s;
}

std::shared_ptr<spdlog::logger> logger_named(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  try {
    return spdlog::stdout_color_mt(name);
  } catch (const spdlog::spdlog_ex&) {
    return spdlog::get(name);  // made meanwhile by another thread
  }
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

// What the handler did, for the outcome.
struct HandlerOutcome {
  std::exception_ptr error;
  std::string abort_reason;  // the reason it asked the broker to stop with
};



// Runs the handler, if any, on this thread; if it throws, asks the run to
// stop with `stop(reason)`.
HandlerOutcome run_handler(Handler* handler, const std::function<void(const std::string&)>& stop) {
  HandlerOutcome out;
  if (handler == nullptr) return out;
  try {
    handler->run();
  } catch (const Closed&) {
    // A queue it read closed because the run is over: run() has ended with
    // the run, which is what it was waiting for. How the run went is the
    // outcome.
  } catch (...) {
    out.error = std::current_exception();
    out.abort_reason = "the handler threw: " + describe_current_exception();
    stop(out.abort_reason);
  }
  return out;
}

// Turns how a run ended into start()'s outcome: returns if it went well. A
// handler's exception is the outcome if it stopped the run (or the run ended
// well otherwise); if the run had stopped for another reason, that reason is
// (the handler's queue then ran dry, and its exception says only that).
void throw_outcome(broker::RunResult result,
                   const std::vector<std::shared_ptr<ProcessHandle>>& handles, int interrupted,
                   const HandlerOutcome& handler, std::exception_ptr other_error,
                   const std::shared_ptr<spdlog::logger>& logger) {
  if (result.rejected > 0) {
    logger->warn("actors turned away {} malformed or foreign frame(s) during the run",
                 result.rejected);
  }
  std::vector<ActorError::Failure> failures;
  for (broker::RunResult::Failure& f : result.failures) {
    const int pid = f.pid != 0 || f.id >= handles.size() ? f.pid : handles[f.id]->pid;
    failures.push_back({std::move(f.group), std::move(f.name), pid, std::move(f.host),
                        std::move(f.reason)});
  }
  if (!failures.empty()) throw ActorError(std::move(failures));
  if (interrupted != 0) throw Interrupted(interrupted);
  if (handler.error && (!result.stopped || *result.stopped == handler.abort_reason)) {
    std::rethrow_exception(handler.error);
  }
  if (other_error) std::rethrow_exception(other_error);
  if (!result.accounting.empty()) {
    throw AccountingError("relay: messages lost or duplicated: " + result.accounting);
  }
  if (result.stopped) throw Error("relay: run stopped: " + *result.stopped);
  if (handler.error) std::rethrow_exception(handler.error);
}

// Forks actor `a` of `plan`: the child runs it and never returns.
// `slot` is the actor's own handle (Actor::process_), set here.
std::shared_ptr<ProcessHandle> fork_actor(const Plan& plan, Actor& a,
                                          std::shared_ptr<ProcessHandle>& slot,
                                          const std::shared_ptr<spdlog::logger>& logger,
                                          const std::vector<PreboundIpc*>& brokers_listeners = {}) {
  // A child inherits unflushed stdio buffers and would print them again.
  logger->flush();
  std::fflush(nullptr);
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (PreboundIpc* l : brokers_listeners) l->close();
    run_actor_process(plan, a);
  }
  if (pid < 0) {
    throw Error("start: fork failed for actor '" + a.name() + "': " + std::strerror(errno));
  }
  auto h = std::make_shared<ProcessHandle>();
  h->authkey = plan.authkey;
  try {
    h->adopt(pid);
  } catch (const Error& e) {
    throw Error("start: actor '" + a.name() + "': " + e.what());
  }
  slot = h;
  return h;
}

// The driver's side of a run with a standalone relay-broker: it joins the
// broker as a member that brings the plan, forks the actors placed on this
// host (before any thread exists), then serves on a thread while the handler
// runs on this one. Queue puts, log records and remote exits arrive from the
// broker; so does the result, which becomes start()'s outcome.
// `slots` are the actors' own handles (Actor::process_), by id.
void run_with_broker(RelayState& state, Plan& plan, const std::vector<Actor*>& actors,
                     const std::vector<std::shared_ptr<ProcessHandle>*>& slots, Handler* handler,
                     const std::shared_ptr<spdlog::logger>& logger) {
  // Placement is the broker's business now; the plan keeps who runs here.
  plan.control_endpoint.clear();
  plan.log_endpoint.clear();
  std::vector<std::shared_ptr<ProcessHandle>> handles;
  for (auto* slot : slots) {
    *slot = std::make_shared<ProcessHandle>();  // replaced if forked here
    handles.push_back(*slot);
  }
  SignalGuard signals;
  workers::WorkerConfig config;
  config.driver = state.broker;
  config.key = plan.key;
  // For the broker's first answer; then it pings while it waits for workers.
  config.join_wait = std::chrono::milliseconds(10000);

  std::optional<broker::RunResult> result;
  std::deque<std::tuple<std::uint32_t, std::uint64_t, std::string>> pending;  // bounded puts
  int interrupted = 0;
  std::mutex abort_mu;
  std::string abort_reason;
  const int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) throw Error(std::string("start: eventfd: ") + std::strerror(errno));
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_wake{wake};

  workers::DriverPart part;
  part.plan = pack_broker_plan(plan);
  auto send = [&](const std::string& frame) {
    if (part.send) part.send(frame);
  };
  // Returns false if a bounded queue is full for now. A put that can never be
  // delivered is answered too, bounded or not: the broker fails its actor,
  // as an embedded broker does.
  auto deliver = [&](std::uint32_t actor, std::uint64_t queue, bool bounded, const char* data,
                     std::size_t size) {
    std::string refusal;
    const Delivery d = deliver_to_queue(queue, data, size, refusal);
    if (d == Delivery::full) return false;
    if (d == Delivery::refused) {
      bool stopping = interrupted != 0;
      {
        std::lock_guard lock(abort_mu);
        stopping = stopping || !abort_reason.empty();
      }
      // This process stops the run already (its handler threw, or a signal):
      // the put is dropped with it, not the putter's failure.
      if (stopping) return true;
      send(encode(QAck{actor, queue, refusal}));
    } else if (bounded) {
      send(encode(QAck{actor, queue, std::string()}));
    }
    return true;
  };
  part.on_frame = [&](const ControlFrame& frame) {
    if (const auto* put = std::get_if<QPut>(&frame)) {
      const std::uint32_t actor = put->actor;
      const std::uint64_t queue = put->queue_id;
      const bool bounded = put->bounded;
      const std::string_view bytes = put->message.bytes;
      if (actor >= plan.actors.size()) throw EncodeError("put from an unknown actor");
      bool behind = false;
      for (const auto& p : pending) behind |= std::get<1>(p) == queue;
      if (behind || !deliver(actor, queue, bounded, bytes.data(), bytes.size())) {
        if (!bounded) throw EncodeError("an unbounded queue is full");
        pending.emplace_back(actor, queue, std::string(bytes));
      }
    } else if (const auto* log = std::get_if<DLog>(&frame)) {
      const std::uint32_t id = log->actor;
      const std::uint8_t level = log->level;
      if (id >= plan.actors.size() || level > static_cast<std::uint8_t>(Level::critical)) {
        throw EncodeError("bad log record");
      }
      logger->log(static_cast<spdlog::level::level_enum>(level), "[{}] ({}) {}",
                  plan.actors[id].group_name, plan.actors[id].name, log->text);
    } else if (const auto* ended = std::get_if<REnded>(&frame)) {
      const std::uint32_t id = ended->actor;
      if (id >= handles.size()) throw EncodeError("exit of an unknown actor");
      ProcessHandle& h = *handles[id];
      // `local` is fixed before this thread starts.
      if (h.local) throw EncodeError("an exit reported for an actor this process runs");
      {
        std::lock_guard lock(h.mu);
        h.pid = ended->pid;
        h.exitcode = ended->exitcode;
      }
      h.ended.notify_all();
    } else if (const auto* done = std::get_if<Result>(&frame)) {
      result = broker::unpack_result(done->result.bytes.data(), done->result.bytes.size());
    } else {
      throw EncodeError("unexpected frame for the driver");
    }
  };
  part.watches.emplace_back(queue_space_fd(), [&] {
    std::uint64_t n;
    [[maybe_unused]] ssize_t r = ::read(queue_space_fd(), &n, sizeof n);
    std::set<std::uint64_t> full;
    for (auto it = pending.begin(); it != pending.end();) {
      auto& [actor, queue, bytes] = *it;
      if (full.count(queue) || !deliver(actor, queue, true, bytes.data(), bytes.size())) {
        full.insert(queue);
        ++it;
      } else {
        it = pending.erase(it);
      }
    }
  });
  part.watches.emplace_back(signals.fd(), [&] {
    if (const int sig = signals.take(); sig != 0 && interrupted == 0) {
      interrupted = sig;
      logger->warn("interrupted by {}: stopping every actor", signal_name(sig));
      send(encode(DAbort{"interrupted by " + signal_name(sig), sig}));
    }
  });
  part.watches.emplace_back(wake, [&] {
    std::uint64_t n;
    [[maybe_unused]] ssize_t r = ::read(wake, &n, sizeof n);
    std::lock_guard lock(abort_mu);
    send(encode(DAbort{abort_reason, 0}));
  });

  // Ctrl-C while waiting for the broker or the workers gives up at once.
  part.while_joining = [&] {
    if (const int sig = signals.take(); sig != 0) throw Interrupted(sig);
  };
  workers::WorkerSession session(plan, config, logger, &part);
  session.join_and_fork([&](std::uint32_t id) {
    handles[id] = fork_actor(plan, *actors[id], *slots[id], logger);
    return handles[id];
  });
  std::vector<int> pidfds;
  for (auto& h : handles) {
    if (h->local) pidfds.push_back(h->pidfd);
  }
  signals.set_pidfds(pidfds);

  set_queue_phase(QueuePhase::running);
  set_handler_running(handler != nullptr, handler != nullptr);
  std::exception_ptr session_error;
  std::thread serving([&] {
    try {
      session.serve();
    } catch (...) {
      session_error = std::current_exception();
    }
    set_queue_phase(QueuePhase::over);
  });
  for (Actor* a : actors) begin_inlet(*a, handler != nullptr);
  const HandlerOutcome handled = run_handler(handler, [&](const std::string& reason) {
    {
      std::lock_guard lock(abort_mu);
      abort_reason = reason;
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(wake, &one, sizeof one);
  });
  for (Actor* a : actors) finish_inlet(*a);
  // Nothing reads a full bounded queue now: the serving thread refuses the
  // puts it holds for one (and those that come).
  set_handler_running(false, handler != nullptr);
  serving.join();
  for (Actor* a : actors) end_inlet(*a);
  logger->flush();
  if (!result) {
    // No word from the broker on how it ended: the session's error says why.
    if (interrupted != 0) throw Interrupted(interrupted);
    if (handled.error) std::rethrow_exception(handled.error);
    if (session_error) std::rethrow_exception(session_error);
    throw Error("relay: the broker at " + state.broker + " ended the run without a result");
  }
  throw_outcome(std::move(*result), handles, interrupted, handled, nullptr, logger);
}

// The driver's side of a run. Forks every actor first (a ZeroMQ context and
// the broker thread must not exist at fork), then runs the broker on a thread
// and the handler on this one, and turns what the broker saw into the result.
void run_relay(RelayState& state, Handler* handler) {
  Plan plan;
  plan.maxsize = state.maxsize;
  plan.driver_pid = ::getpid();
  const std::string prefix = "ipc://@" + local_socket_prefix() + random_hex(8) + "-";
  plan.control_endpoint = prefix + "control";
  plan.log_endpoint = prefix + "log";
  plan.data_prefix = prefix + "data-";
  plan.authkey = random_hex(64);
  plan.edges = state.edges;
  std::vector<Actor*> actors;
  for (std::uint32_t g = 0; g < state.groups.size(); ++g) {
    const Group& group = state.groups[g];
    plan.groups.push_back(
        {group.name, static_cast<std::uint32_t>(actors.size()),
         static_cast<std::uint32_t>(group.actors.size())});
    for (Actor* a : group.actors) {
      plan.actors.push_back({static_cast<std::uint32_t>(actors.size()), g, a->name(), group.name});
      actors.push_back(a);
    }
  }
  auto logger = logger_named(state.log_name);
  // What a worker must have built the same way: its puts name queues by id.
  plan.queues = live_queues();
  plan.ports = state.ports;
  plan.broker_ports = state.ports;

  // Placement, checked against the groups.
  plan.placement.assign(actors.size(), std::nullopt);
  bool any_remote = false;
  for (const auto& [name, where] : state.placements) {
    auto g = std::find_if(plan.groups.begin(), plan.groups.end(),
                          [&name = name](const GroupSlot& x) { return x.name == name; });
    if (g == plan.groups.end()) {
      throw std::invalid_argument("place: there is no group named '" + name + "'");
    }
    for (std::uint32_t i = 0; i < g->size; ++i) plan.placement[g->first + i] = where.where();
    any_remote = any_remote || where.where().has_value();
  }
  for (Actor* a : actors) {
    if (!is_inlet(*a)) continue;
    const auto id = static_cast<std::uint32_t>(a->id_);
    if (plan.remote(id)) {
      throw std::invalid_argument("place: group '" + a->group() +
                                  "' is an Inlet, fed by the main process: it runs on the "
                                  "driver's host (Placement::local())");
    }
    set_inlet_endpoint(*a, inlet_endpoint(plan.data_prefix, id), plan.maxsize);
  }
  plan.supervision.assign(plan.groups.size(), std::nullopt);
  for (const auto& [name, policy] : state.restarts) {
    const auto g = static_cast<std::uint32_t>(
        std::find_if(plan.groups.begin(), plan.groups.end(),
                     [&name = name](const GroupSlot& x) { return x.name == name; }) -
        plan.groups.begin());
    Supervision s;
    s.max_restarts = static_cast<std::uint32_t>(std::min<std::size_t>(policy.max_restarts, 1u << 30));
    s.within = policy.within;
    s.attempts = static_cast<std::uint32_t>(std::min<std::size_t>(policy.attempts, 1u << 30));
    if (policy.dead_letters != nullptr) {
      const std::uint64_t q = queue_id(*policy.dead_letters);
      if (std::none_of(plan.queues.begin(), plan.queues.end(),
                       [q](const QueueSlot& x) { return x.id == q; })) {
        throw std::invalid_argument("restart: group '" + name +
                                    "': its dead_letters queue is not a queue of this process");
      }
      s.dead_letters = q;
    }
    if (!state.broker.empty()) {
      throw std::invalid_argument("restart: group '" + name +
                                  "': supervision with a standalone broker (broker()) is not "
                                  "built yet; use the embedded broker");
    }
    plan.supervision[g] = s;
  }
  const ProcessRole& me = role();
  const std::string key_file = !me.key_file.empty() ? me.key_file : state.key_file;
  if (!key_file.empty()) plan.key = load_curve_key(key_file);

  if (!me.worker.empty()) {
    workers::WorkerConfig config;
    config.driver = me.worker;
    config.labels = me.labels;
    config.key = plan.key;
    workers::run_worker(
        plan, config,
        [&](std::uint32_t id) {
          return fork_actor(plan, *actors[id], actors[id]->process_, logger);
        },
        [&](std::uint32_t id, std::uint32_t incarnation) {
          run_actor_process(plan, *actors[id], incarnation);
        },
        logger);
    return;
  }

  if (!state.broker.empty()) {
    if (!state.listen.empty() || !state.monitor.empty()) {
      throw std::invalid_argument(
          "start: with a standalone broker (broker()), the broker listens for workers and "
          "publishes the monitor stream (relay-broker --listen, --monitor); do not call "
          "listen() or monitor()");
    }
    plan.expect_workers = state.expect_workers.value_or(any_remote ? 1 : 0);
    plan.worker_wait = state.worker_wait;
    std::vector<std::shared_ptr<ProcessHandle>*> slots;
    for (Actor* a : actors) slots.push_back(&a->process_);
    run_with_broker(state, plan, actors, slots, handler, logger);
    return;
  }
  if (any_remote && state.listen.empty()) {
    throw std::invalid_argument(
        "start: a group is placed on workers, but the relay does not listen for them; call "
        "listen(\"tcp://ADDRESS:PORT\")");
  }
  if (!state.listen.empty()) {
    const std::string host = tcp_host(state.listen, "listen");
    if (!is_loopback(host) && !plan.key && !state.insecure) {
      throw std::invalid_argument(
          "listen: " + state.listen +
          " is not a loopback address, and without a key anyone who reaches it could join, "
          "inject messages and read logs; set a key with secure(FILE) (relay-keygen FILE "
          "makes one), or call allow_insecure_network() if the network is trusted");
    }
    plan.distributed = true;
    plan.data_host = host;
    plan.listen_endpoint = state.listen;
    plan.expect_workers = state.expect_workers.value_or(any_remote ? 1 : 0);
    plan.worker_wait = state.worker_wait;
    if (state.insecure && !plan.key) {
      logger->warn("listening on {} WITHOUT encryption or authentication "
                   "(allow_insecure_network())", state.listen);
    }
  }

  if (!state.monitor.empty()) {
    const std::string host = tcp_host(state.monitor, "monitor");
    if (!is_loopback(host) && !plan.key && !state.insecure) {
      throw std::invalid_argument(
          "monitor: " + state.monitor +
          " is not a loopback address, and without a key anyone who reaches it could read "
          "the logs; set a key with secure(FILE), or call allow_insecure_network()");
    }
    plan.monitor_endpoint = state.monitor;
  }

  SignalGuard signals;
  std::vector<std::shared_ptr<ProcessHandle>> handles;
  // Supervision: the table of what each actor is inside recv() with, and the
  // spawner that forks restarted actors, both before any other fork.
  std::unique_ptr<Spawner> spawner;
  struct InFlightTable {
    bool made = false;
    ~InFlightTable() {
      if (made) destroy_inflight_table();
    }
  } inflight;
  if (plan.any_supervised()) {
    create_inflight_table(actors.size());
    inflight.made = true;
    spawner = Spawner::start([&plan, &actors](std::uint32_t id, std::uint32_t incarnation) {
      plan.spawner_pid = static_cast<int>(::getppid());  // Spawner checked it is the spawner
      run_actor_process(plan, *actors[id], incarnation);
    });
    plan.spawner_pid = spawner->pid();
  }
  // Through the pidfds, and only for actors this process forked and has not
  // reaped: a reaped actor's pid may be another process's by now, and a
  // remote actor's pid is its worker's business. The spawner's children are
  // killed and reaped by it.
  auto kill_all_and_reap = [&] {
    kill_and_reap(handles);
    if (spawner) spawner->stop();
  };

  // The broker's ipc listeners, before the actors (and after the spawner,
  // which has no use for them): an actor's first connect lands.
  PreboundIpc control_listener;
  PreboundIpc log_listener;
  try {
    control_listener = PreboundIpc(plan.control_endpoint);
    log_listener = PreboundIpc(plan.log_endpoint);
  } catch (...) {
    kill_all_and_reap();
    throw;
  }
  const std::vector<PreboundIpc*> listeners{&control_listener, &log_listener};
  for (Actor* a : actors) {
    if (plan.remote(static_cast<std::uint32_t>(a->id_))) {
      a->process_ = std::make_shared<ProcessHandle>();  // lives on a worker
      handles.push_back(a->process_);
      continue;
    }
    try {
      handles.push_back(fork_actor(plan, *a, a->process_, logger, listeners));
    } catch (...) {
      kill_all_and_reap();
      throw;
    }
  }
  std::vector<int> pidfds;
  for (auto& h : handles) {
    if (h->local) pidfds.push_back(h->pidfd);
  }
  signals.set_pidfds(pidfds);

  // Declared before the broker: its sockets must close before the context ends.
  std::optional<zmq::context_t> ctx;
  std::optional<broker::Broker> broker;
  try {
    ctx.emplace(1);
    broker::Broker::Hooks hooks;
    hooks.deliver = deliver_to_queue;
    hooks.queue_space_fd = queue_space_fd();
    hooks.control_listener = &control_listener;
    hooks.log_listener = &log_listener;
    hooks.signal_actor = [&](std::uint32_t id, int sig) { handles[id]->signal(sig); };
    hooks.respawn = [&](std::uint32_t id, std::uint32_t incarnation) {
      logger->flush();
      const Spawner::Spawned child = spawner->spawn(id, incarnation, std::chrono::seconds(10));
      handles[id]->respawned(child.pid, child.pidfd);
    };
    hooks.in_recv = [](std::uint32_t id) { return read_inflight(id); };
    hooks.remote_started = [&](std::uint32_t id, int pid) {
      ProcessHandle& h = *handles[id];
      {
        std::lock_guard lock(h.mu);
        h.pid = pid;
        h.exitcode.reset();
      }
      h.ended.notify_all();
    };
    hooks.remote_ended = [&](std::uint32_t id, int pid, int exitcode) {
      ProcessHandle& h = *handles[id];
      {
        std::lock_guard lock(h.mu);
        h.pid = pid;
        h.exitcode = exitcode;
      }
      h.ended.notify_all();
    };
    broker.emplace(*ctx, plan, logger, std::move(hooks));
  } catch (...) {
    kill_all_and_reap();
    throw;
  }
  {
    std::lock_guard lock(state.monitor_mu);
    state.monitor_bound = broker->monitor_endpoint();
  }
  StatsFeed stats_feed(*broker, plan, actors);  // relay::group_stats(), for a Progress
  int interrupted = 0;
  for (std::uint32_t id = 0; id < handles.size(); ++id) {
    if (!handles[id]->local) continue;  // remote: its worker reports the exit
    broker->watch(handles[id]->pidfd, [&, id] {
      if (!handles[id]->try_reap()) return true;
      broker->actor_exited(id, *handles[id]->exitcode);
      return false;
    });
  }
  if (spawner) {
    broker->watch(spawner->fd(), [&] {
      try {
        for (const Spawner::Exit& e : spawner->take_exits()) {
          if (e.id < handles.size() && handles[e.id]->spawned_exit(e.pid, e.exitcode)) {
            broker->actor_exited(e.id, e.exitcode);
          }
        }
        return true;
      } catch (const std::exception& e) {
        broker->abort(std::string("the process that restarts actors ended: ") + e.what());
        return false;
      }
    });
  }
  broker->watch(signals.fd(), [&] {
    if (const int sig = signals.take(); sig != 0 && interrupted == 0) {
      interrupted = sig;
      logger->warn("interrupted by {}: stopping every actor", signal_name(sig));
      broker->interrupt(sig, "interrupted by " + signal_name(sig));
    }
    return true;
  });

  set_queue_phase(QueuePhase::running);
  set_handler_running(handler != nullptr, handler != nullptr);
  std::exception_ptr broker_error;
  std::thread broker_thread([&] {
    try {
      broker->run();
    } catch (...) {
      broker_error = std::current_exception();
      kill_all_and_reap();
    }
    if (spawner) spawner->stop();
    stats_feed.publish();  // the final counts, before a Handler's get() learns the run is over
    // Nothing more will arrive: a get() waiting on an empty queue must end.
    set_queue_phase(QueuePhase::over);
  });
  for (Actor* a : actors) begin_inlet(*a, handler != nullptr);
  const HandlerOutcome handled = run_handler(
      handler, [&](const std::string& reason) { broker->request_abort(reason); });
  // run() returning ends the stream of every Inlet it did not close.
  for (Actor* a : actors) finish_inlet(*a);
  // Nothing reads a full bounded queue now: the broker refuses the puts it
  // holds for one (and those that come).
  set_handler_running(false, handler != nullptr);
  broker_thread.join();
  for (Actor* a : actors) end_inlet(*a);
  logger->flush();
  throw_outcome(broker->result(), handles, interrupted, handled, broker_error, logger);
}
}  // namespace internal

Relay::Relay(std::optional<std::size_t> maxsize, std::string log)
    : state_(std::make_unique<internal::RelayState>()) {
  if (maxsize && *maxsize == 0) {
    throw std::invalid_argument("Relay: maxsize must be at least 1 (omit it for no bound)");
  }
  state_->maxsize = maxsize;
  state_->log_name = log.empty() ? "relay" : std::move(log);
  internal::LiveRelays& r = internal::live_relays();
  std::lock_guard lock(r.mu);
  state_->serial = r.next++;
  r.live.insert(state_->serial);
}

Relay::~Relay() {
  internal::LiveRelays& r = internal::live_relays();
  std::lock_guard lock(r.mu);
  r.live.erase(state_->serial);
}

const std::string& Relay::log_name() const noexcept { return state_->log_name; }

namespace internal {
namespace {

std::string group_names(const std::vector<Group>& groups) {
  std::string names;
  for (const Group& g : groups) names += (names.empty() ? "'" : ", '") + g.name + "'";
  return names.empty() ? "none yet" : names;
}

std::string grouping_call(Grouping g) {
  return g == Grouping::by_key ? "by_key()" : "broadcast()";
}

}  // namespace
}  // namespace internal

void Relay::connect_stages(std::vector<Stage> stages) {
  internal::RelayState& st = *state_;
  if (st.started) {
    throw std::invalid_argument("connect: this relay has been started; wire it before start()");
  }
  if (stages.size() < 2) {
    throw std::invalid_argument(
        "connect: an edge needs at least two groups (a sending group and a receiving group); "
        "got " +
        std::to_string(stages.size()));
  }
  // Worked out on copies: a connect() that throws leaves the relay as it was.
  std::vector<Group> groups = st.groups;
  std::vector<internal::EdgeSlot> edges = st.edges;
  const std::size_t old_groups = groups.size();
  std::map<const Actor*, std::string> seen;  // the name each got where first given
  for (const Group& g : groups) {
    for (const Actor* a : g.actors) seen.emplace(a, a->name_);
  }
  auto find = [&](const std::string& name) -> std::optional<std::uint32_t> {
    for (std::uint32_t g = 0; g < groups.size(); ++g) {
      if (groups[g].name == name) return g;
    }
    return std::nullopt;
  };
  std::vector<std::uint32_t> at;  // each stage's group
  for (std::size_t k = 0; k < stages.size(); ++k) {
    Stage& stage = stages[k];
    if (!stage.definition) {
      const std::optional<std::uint32_t> g = find(stage.reference);
      if (!g) {
        throw std::invalid_argument(
            "connect: there is no group named '" + stage.reference + "'" +
            (stage.output.empty() ? "" : " (for its output '" + stage.output + "')") +
            "; a group is defined where it first appears (an actor, a range or "
            "relay::group(name, ...)) and referred to by name afterwards (the groups are " +
            internal::group_names(groups) + ")");
      }
      at.push_back(*g);
      continue;
    }
    Group& group = *stage.definition;
    if (group.name.empty()) group.name = "group-" + std::to_string(groups.size());
    if (find(group.name)) {
      throw std::invalid_argument("connect: group '" + group.name +
                                  "' is defined twice; define a group once and refer to it by "
                                  "its name (\"" + group.name + "\") afterwards");
    }
    if (group.actors.empty()) {
      throw std::invalid_argument("connect: group '" + group.name +
                                  "' is empty; every group needs at least one actor");
    }
    std::set<std::string> actor_names;
    for (std::size_t i = 0; i < group.actors.size(); ++i) {
      const Actor* a = group.actors[i];
      if (a == nullptr) {
        throw std::invalid_argument("connect: group '" + group.name + "' holds a null actor");
      }
      // The name it gets here (an unnamed actor is <Class>-<index>).
      const std::string name =
          a->named_ ? a->name_ : internal::short_class_name(*a) + "-" + std::to_string(i);
      if (const auto [first, fresh] = seen.emplace(a, name); !fresh) {
        throw std::invalid_argument("connect: actor '" + first->second +
                                    "' is given twice (again in group '" + group.name +
                                    "'); each actor runs in exactly one place");
      }
      if (a->relay_serial_ != 0 && a->relay_serial_ != st.serial) {
        internal::LiveRelays& r = internal::live_relays();
        std::lock_guard lock(r.mu);
        if (r.live.count(a->relay_serial_) != 0) {
          throw std::invalid_argument(
              "connect: actor '" + a->name_ + "' (group '" + group.name +
              "') is already in another relay (group '" + a->group_ +
              "'); an actor belongs to one relay at a time: make a new actor, or destroy that "
              "relay first");
        }
      }
      if (!actor_names.insert(name).second) {
        throw std::invalid_argument("connect: two actors of group '" + group.name +
                                    "' are named '" + name +
                                    "'; their log records could not be told apart");
      }
    }
    at.push_back(static_cast<std::uint32_t>(groups.size()));
    groups.push_back(group);
  }
  if (stages.front().grouping != Grouping::round_robin) {
    throw std::invalid_argument("connect: " + internal::grouping_call(stages.front().grouping) +
                                " wraps the receiving side of an edge, not group '" +
                                groups[at.front()].name + "', which starts this connect()");
  }
  if (!stages.back().output.empty()) {
    throw std::invalid_argument("connect: relay::output(\"" + groups[at.back()].name + "\", \"" +
                                stages.back().output +
                                "\") names the start of an edge, not its end");
  }
  for (std::size_t k = 0; k + 1 < stages.size(); ++k) {
    internal::EdgeSlot e;
    e.from = at[k];
    e.output = stages[k].output;
    e.to = at[k + 1];
    e.grouping = static_cast<internal::EdgeGrouping>(stages[k + 1].grouping);
    e.key = static_cast<std::uint32_t>(stages[k + 1].key);
    if (stages[k + 1].key > 0xffff) {
      throw std::invalid_argument("connect: by_key(" + std::to_string(stages[k + 1].key) +
                                  ") for group '" + groups[e.to].name +
                                  "': a message has fewer values than that");
    }
    for (const internal::EdgeSlot& other : edges) {
      if (other.from == e.from && other.output == e.output && other.to == e.to) {
        internal::Plan named;
        named.groups.resize(groups.size());
        for (std::size_t g = 0; g < groups.size(); ++g) named.groups[g].name = groups[g].name;
        named.edges = {e};
        throw std::invalid_argument("connect: the edge " + named.edge_name(0) +
                                    " is given twice; each message would reach its group twice");
      }
    }
    edges.push_back(std::move(e));
  }
  if (edges.size() > internal::kMostEdges) {
    throw std::invalid_argument("connect: a relay has at most " +
                                std::to_string(internal::kMostEdges) + " edges");
  }
  {
    internal::Plan shape;
    for (const Group& g : groups) shape.groups.push_back({g.name, 0, 0});
    shape.edges = edges;
    if (const std::optional<std::string> why = internal::check_graph(shape)) {
      throw std::invalid_argument("connect: " + *why +
                                  "; a relay is a directed acyclic graph of groups");
    }
  }
  // Committed: the new groups' actors take their place.
  std::uint32_t id = 0;
  for (std::size_t g = 0; g < old_groups; ++g) id += static_cast<std::uint32_t>(groups[g].actors.size());
  for (std::size_t g = old_groups; g < groups.size(); ++g) {
    for (std::size_t i = 0; i < groups[g].actors.size(); ++i) {
      Actor& a = *groups[g].actors[i];
      a.group_ = groups[g].name;
      a.id_ = static_cast<int>(id++);
      a.relay_serial_ = st.serial;
      a.process_.reset();  // from a run of an earlier relay
      if (!a.named_) a.name_ = internal::short_class_name(a) + "-" + std::to_string(i);
    }
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    bool sends = false, receives = false;
    for (const internal::EdgeSlot& e : edges) {
      sends = sends || e.from == g;
      receives = receives || e.to == g;
    }
    for (Actor* a : groups[g].actors) {
      a->sender_ = sends;
      a->receiver_ = receives;
    }
  }
  st.groups = std::move(groups);
  st.edges = std::move(edges);
  st.connected = true;
}

void init(int& argc, char** argv) {
  internal::ProcessRole& r = internal::role();
  // The environment first; flags override it.
  if (const char* w = std::getenv("RELAY_WORKER")) r.worker = w;
  if (const char* k = std::getenv("RELAY_KEY_FILE")) r.key_file = k;
  if (const char* l = std::getenv("RELAY_LABELS")) r.labels = internal::split_labels(l);
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(flag) + " needs a value");
      return std::string(argv[++i]);
    };
    if (arg == "--relay-worker") {
      r.worker = value("--relay-worker");
    } else if (arg == "--relay-key") {
      r.key_file = value("--relay-key");
    } else if (arg == "--relay-labels") {
      r.labels = internal::split_labels(value("--relay-labels"));
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = nullptr;
}

bool is_worker() { return !internal::role().worker.empty(); }

Relay& Relay::broker(std::string endpoint) {
  internal::tcp_host(endpoint, "broker");
  state_->broker = std::move(endpoint);
  return *this;
}

Relay& Relay::listen(std::string endpoint) {
  const std::string host = internal::tcp_host(endpoint, "listen");
  if (host == "*" || host == "0.0.0.0" || host.empty()) {
    throw std::invalid_argument("listen: give the address workers reach this host at (e.g. "
                                "tcp://10.0.0.1:5555), not '" + host + "'");
  }
  state_->listen = std::move(endpoint);
  return *this;
}

Relay& Relay::ports(unsigned first, unsigned last) {
  if (first == 0 || first > last || last > 65535) {
    throw std::invalid_argument("ports: " + std::to_string(first) + "-" + std::to_string(last) +
                                " is not a range of tcp ports (1-65535, first <= last)");
  }
  state_->ports =
      internal::PortRange{static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last)};
  return *this;
}

Relay& Relay::place(const std::string& group, Placement where) {
  if (!state_->connected) {
    throw std::invalid_argument("place: connect() the groups first, then place them");
  }
  std::string names;
  for (const Group& g : state_->groups) {
    if (g.name == group) {
      state_->placements.emplace_back(group, std::move(where));
      return *this;
    }
    names += (names.empty() ? "'" : ", '") + g.name + "'";
  }
  throw std::invalid_argument("place: there is no group named '" + group + "' (the groups are " +
                              names + ")");
}

Relay& Relay::restart(const std::string& group, Restart policy) {
  if (!state_->connected) {
    throw std::invalid_argument("restart: connect() the groups first, then supervise them");
  }
  if (policy.attempts == 0 || policy.max_restarts == 0) {
    throw std::invalid_argument("restart: group '" + group +
                                "': attempts and max_restarts must be at least 1");
  }
  std::string names;
  for (const Group& g : state_->groups) {
    if (g.name == group) {
      for (Actor* a : g.actors) {
        if (internal::is_inlet(*a)) {
          throw std::invalid_argument("restart: group '" + group +
                                      "' is an Inlet, fed by the main process: it cannot be "
                                      "restarted");
        }
      }
      std::erase_if(state_->restarts, [&](const auto& r) { return r.first == group; });
      state_->restarts.emplace_back(group, policy);
      return *this;
    }
    names += (names.empty() ? "'" : ", '") + g.name + "'";
  }
  throw std::invalid_argument("restart: there is no group named '" + group +
                              "' (the groups are " + names + ")");
}

Relay& Relay::expect_workers(std::size_t n, std::chrono::milliseconds timeout) {
  state_->expect_workers = n;
  state_->worker_wait = timeout;
  return *this;
}

Relay& Relay::secure(const std::string& key_file) {
  internal::load_curve_key(key_file);  // fail here, at the call, if it is unusable
  state_->key_file = key_file;
  return *this;
}

Relay& Relay::monitor(std::string endpoint) {
  internal::tcp_host(endpoint, "monitor");
  state_->monitor = std::move(endpoint);
  return *this;
}

std::string Relay::monitor_endpoint() const {
  std::lock_guard lock(state_->monitor_mu);
  return state_->monitor_bound;
}

Relay& Relay::allow_insecure_network() {
  state_->insecure = true;
  return *this;
}

void Relay::start(Handler* handler) {
  if (!state_->connected) throw std::invalid_argument("start: connect() the actors first");
  if (state_->started) {
    throw std::invalid_argument(
        "start: this relay has already been started; a Relay runs once, so build a new Relay "
        "with new actors to run again");
  }
  for (const Group& g : state_->groups) {
    for (const Actor* a : g.actors) {
      if (internal::is_inlet(*a) && (a->receiver() || g.actors.size() != 1)) {
        throw std::invalid_argument(
            "start: group '" + g.name + "' holds Inlet '" + a->name() +
            "': an Inlet is a source fed by the main process, alone in its group, and no edge "
            "may enter that group");
      }
      if (!a->receiver() && !internal::overrides_loop(*a)) {
        throw std::invalid_argument("start: actor '" + a->name() + "' in group '" + g.name +
                                    "' has no inbox (no edge enters its group: a source) and "
                                    "must override loop()");
      }
      if (a->receiver() && !internal::overrides_recv(*a)) {
        throw std::invalid_argument("start: actor '" + a->name() + "' in group '" + g.name +
                                    "' receives messages (an edge enters its group) and must "
                                    "override recv()");
      }
    }
  }
  if (internal::g_running.exchange(true)) {
    throw std::invalid_argument("start: another relay is running in this process");
  }
  // Checked once no other relay can be starting here: another thread's relay
  // is reported as such, not as a thread.
  if (const std::vector<std::string> threads = internal::thread_names();
      threads.size() > 1 + internal::kRuntimeThreads) {
    internal::g_running = false;
    std::string list;
    for (const std::string& t : threads) list += (list.empty() ? "" : ", ") + t;
    throw std::invalid_argument(
        "start: this process runs " + std::to_string(threads.size()) + " threads (" + list +
        "); start() forks every actor, and fork() copies only the calling thread, so call it "
        "before any other thread starts (a thread pool, an asynchronous logger, a ZeroMQ "
        "context), or after they have been joined");
  }
  state_->started = true;
  struct Release {
    ~Release() {
      internal::set_queue_phase(internal::QueuePhase::idle);
      internal::g_running = false;
    }
  } release;
  internal::run_relay(*state_, handler);
}

}  // namespace relay
