#include "relay/relay.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "broker/broker.h"
#include "relay/internal/actor_runtime.h"
#include "relay/internal/overrides.h"
#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/internal/queue_state.h"
#include "relay/internal/signals.h"
#include "relay/internal/transport.h"

namespace relay {
namespace internal {

struct RelayState {
  std::optional<std::size_t> maxsize;
  std::string log_name;
  std::vector<Group> groups;
  bool connected = false;
  bool started = false;
};

namespace {

std::atomic<bool> g_running{false};

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

  SignalGuard signals;
  std::vector<std::shared_ptr<ProcessHandle>> handles;
  auto kill_all_and_reap = [&] {
    for (auto& h : handles) {
      if (h->pid > 0) ::kill(h->pid, SIGKILL);
    }
    for (auto& h : handles) {
      int status = 0;
      if (h->pid > 0 && !h->exitcode) {
        ::waitpid(h->pid, &status, 0);
        std::lock_guard lock(h->mu);
        h->exitcode = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
      }
    }
  };

  // A child inherits unflushed stdio buffers and would print them again.
  logger->flush();
  std::fflush(nullptr);
  std::cout.flush();
  std::cerr.flush();
  for (Actor* a : actors) {
    const pid_t pid = ::fork();
    if (pid == 0) run_actor_process(plan, *a);
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      kill_all_and_reap();
      throw Error("start: fork failed for actor '" + a->name() + "': " + why);
    }
    auto h = std::make_shared<ProcessHandle>();
    h->pid = pid;
    h->authkey = plan.authkey;
    handles.push_back(h);
    a->process_ = h;
  }
  std::vector<int> pidfds;
  for (auto& h : handles) {
    h->pidfd = pidfd_open(h->pid);
    if (h->pidfd < 0) {
      const std::string why = std::strerror(errno);
      kill_all_and_reap();
      throw Error("start: pidfd_open failed: " + why);
    }
    pidfds.push_back(h->pidfd);
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
    hooks.signal_actor = [&](std::uint32_t id, int sig) { handles[id]->signal(sig); };
    broker.emplace(*ctx, plan, logger, std::move(hooks));
  } catch (...) {
    kill_all_and_reap();
    throw;
  }
  int interrupted = 0;
  for (std::uint32_t id = 0; id < handles.size(); ++id) {
    broker->watch(handles[id]->pidfd, [&, id] {
      if (!handles[id]->try_reap()) return true;
      broker->actor_exited(id, *handles[id]->exitcode);
      return false;
    });
  }
  broker->watch(signals.fd(), [&] {
    if (const int sig = signals.take(); sig != 0 && interrupted == 0) {
      interrupted = sig;
      logger->warn("interrupted by {}: stopping every actor", signal_name(sig));
      broker->abort("interrupted by " + signal_name(sig));
    }
    return true;
  });

  set_queues_running(true);
  std::exception_ptr broker_error;
  std::thread broker_thread([&] {
    try {
      broker->run();
    } catch (...) {
      broker_error = std::current_exception();
      kill_all_and_reap();
    }
    // Nothing more will arrive: a get() waiting on an empty queue must end.
    set_queues_running(false);
  });
  std::exception_ptr handler_error;
  if (handler != nullptr) {
    try {
      handler->run();
    } catch (...) {
      handler_error = std::current_exception();
      broker->request_abort("the handler threw: " + describe_current_exception());
    }
  }
  broker_thread.join();
  logger->flush();

  std::vector<ActorError::Failure> failures;
  for (std::uint32_t id = 0; id < actors.size(); ++id) {
    if (!broker->failed(id)) continue;
    const broker::ActorReport& r = broker->reports()[id];
    failures.push_back({plan.actors[id].group_name, plan.actors[id].name, handles[id]->pid,
                        r.host, broker->failure_reason(id)});
  }
  if (!failures.empty()) throw ActorError(std::move(failures));
  if (interrupted != 0) throw Interrupted(interrupted);
  if (handler_error) std::rethrow_exception(handler_error);
  if (broker_error) std::rethrow_exception(broker_error);
  std::string mismatch;
  for (const broker::EdgeCount& e : broker->edges()) {
    if (e.mismatches.empty()) continue;
    if (!mismatch.empty()) mismatch += "; ";
    mismatch += "edge '" + plan.groups[e.from_group].name + "' -> '" +
                plan.groups[e.from_group + 1].name + "': sent " + std::to_string(e.sent) +
                ", received " + std::to_string(e.received) + " (";
    for (std::size_t i = 0; i < e.mismatches.size(); ++i) {
      mismatch += (i ? ", " : "") + e.mismatches[i];
    }
    mismatch += ")";
  }
  if (!mismatch.empty()) throw AccountingError("relay: messages lost or duplicated: " + mismatch);
  if (auto reason = broker->abort_reason()) throw Error("relay: run stopped: " + *reason);
}

}  // namespace internal

Relay::Relay(std::optional<std::size_t> maxsize, std::string log)
    : state_(std::make_unique<internal::RelayState>()) {
  if (maxsize && *maxsize == 0) {
    throw std::invalid_argument("Relay: maxsize must be at least 1 (omit it for no bound)");
  }
  state_->maxsize = maxsize;
  state_->log_name = log.empty() ? "relay" : std::move(log);
}

Relay::~Relay() = default;

const std::string& Relay::log_name() const noexcept { return state_->log_name; }

void Relay::connect_groups(std::vector<Group> groups) {
  if (state_->connected) {
    throw std::invalid_argument(
        "connect: this relay is already connected; give every group to one connect() call");
  }
  if (groups.size() < 2) {
    throw std::invalid_argument(
        "connect: a relay needs at least two groups (a source group and a receiving group); "
        "got " + std::to_string(groups.size()));
  }
  std::set<std::string> names;
  std::set<const Actor*> seen;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    Group& group = groups[g];
    if (group.name.empty()) group.name = "group-" + std::to_string(g);
    if (!names.insert(group.name).second) {
      throw std::invalid_argument("connect: two groups are named '" + group.name +
                                  "'; give each group its own name");
    }
    if (group.actors.empty()) {
      throw std::invalid_argument("connect: group '" + group.name +
                                  "' is empty; every group needs at least one actor");
    }
    for (const Actor* a : group.actors) {
      if (a == nullptr) {
        throw std::invalid_argument("connect: group '" + group.name + "' holds a null actor");
      }
      if (!seen.insert(a).second || a->relay_ != nullptr) {
        throw std::invalid_argument("connect: actor '" +
                                    (a->named_ ? a->name_ : internal::short_class_name(*a)) +
                                    "' is given twice (group '" + group.name +
                                    "'); each actor runs in exactly one place");
      }
    }
  }
  std::uint32_t id = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t i = 0; i < groups[g].actors.size(); ++i) {
      Actor& a = *groups[g].actors[i];
      a.group_ = groups[g].name;
      a.receiver_ = g > 0;
      a.sender_ = g + 1 < groups.size();
      a.id_ = static_cast<int>(id++);
      a.relay_ = this;
      if (!a.named_) a.name_ = internal::short_class_name(a) + "-" + std::to_string(i);
    }
  }
  state_->groups = std::move(groups);
  state_->connected = true;
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
      if (!a->receiver() && !internal::overrides_loop(*a)) {
        throw std::invalid_argument("start: actor '" + a->name() + "' in group '" + g.name +
                                    "' has no inbox (first group) and must override loop()");
      }
      if (a->receiver() && !internal::overrides_recv(*a)) {
        throw std::invalid_argument("start: actor '" + a->name() + "' in group '" + g.name +
                                    "' receives messages and must override recv()");
      }
    }
  }
  if (internal::g_running.exchange(true)) {
    throw std::invalid_argument("start: another relay is running in this process");
  }
  state_->started = true;
  struct Release {
    ~Release() { internal::g_running = false; }
  } release;
  internal::run_relay(*state_, handler);
}

}  // namespace relay
