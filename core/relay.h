// relay/relay.h: the umbrella header, and relay::Relay, which wires actors
// into a graph of groups and runs each actor in its own process.
//
//   relay::Relay relay(/*maxsize=*/50, /*log=*/"demo");
//   relay.connect(producer, workers, relay::group("sink", consumer));
//   relay.start();   // forks every actor; blocks until all ended
//
// A group is an Actor&, a range of actors (std::vector<std::unique_ptr<T>>,
// std::vector<T*>, ...), or relay::group("name", ...). Unnamed groups are
// called "group-0", "group-1", ... in the order they are defined. connect()
// wires each group it is given to the next: called once, it builds a chain;
// called several times, a directed acyclic graph, where a group defined once
// is referred to afterwards by its name:
//
//   relay.connect(src, relay::group("parse", parsers),
//                 relay::by_key(relay::group("count", counters)));
//   relay.connect(relay::output("parse", "bad"), relay::group("errors", sink));
//   relay.connect("count", relay::broadcast(relay::group("mirror", mirrors)));
//
// On an edge, each message goes to exactly one actor of the receiving group
// (round robin among those with credit), to the one its key picks
// (relay::by_key), or to every one (relay::broadcast). Every edge leaving an
// output gets each message sent there. An actor's stream ends after every
// sender of every incoming edge finished.
//
// start() returns normally only when every actor ended cleanly and every
// message sent was received. Otherwise it stops the rest and throws:
// relay::ActorError (an actor threw, exited early or was killed),
// relay::AccountingError (counts did not match), relay::Interrupted (SIGINT or
// SIGTERM to the main process). Bad wiring throws std::invalid_argument.
//
// One relay runs at a time in a process. The process must not have other
// threads when start() is called: fork() copies only the calling thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "relay/actor.h"
#include "relay/control.h"
#include "relay/errors.h"
#include "relay/handler.h"
#include "relay/inlet.h"
#include "relay/message.h"
#include "relay/progress.h"
#include "relay/queue.h"

namespace relay {

// A group of actors, as connect() takes it. Made by relay::group() or from
// any group argument.
struct Group {
  std::string name;  // empty: "group-N" in the order groups are defined
  std::vector<Actor*> actors;
};

// How an edge picks the receiving actor(s) of each message.
enum class Grouping : std::uint8_t {
  round_robin,  // exactly one, among those with credit (the default)
  by_key,       // the one a hash of value `key` picks (see by_key())
  broadcast,    // every actor of the group
};

// One place in a connect() call: a group defined here, or one referred to by
// name, with the grouping of the edge that enters it and, when it is the start
// of an edge, the output that edge leaves from. Made by connect()'s arguments,
// relay::by_key(), relay::broadcast() and relay::output().
struct Stage {
  std::optional<Group> definition;  // set: defined here; else `reference`
  std::string reference;            // the name of a group defined earlier
  std::string output;               // the output an edge leaving here starts at ("": default)
  Grouping grouping = Grouping::round_robin;
  std::size_t key = 0;  // by_key: the index of the value hashed
};

namespace internal {

template <class T>
Actor* actor_pointer(T&& member) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_base_of_v<Actor, U>) {
    return &member;
  } else if constexpr (std::is_pointer_v<U>) {
    return member;
  } else if constexpr (requires { *member; }) {
    return &*member;  // unique_ptr, shared_ptr
  } else if constexpr (requires { member.get(); }) {
    return &member.get();  // std::reference_wrapper
  } else {
    static_assert(std::is_base_of_v<Actor, U>, "a group member must be an Actor");
  }
}

template <class T>
void add_members(Group& g, T&& arg) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, Group>) {
    g.actors.insert(g.actors.end(), arg.actors.begin(), arg.actors.end());
  } else if constexpr (std::is_base_of_v<Actor, U> || std::is_pointer_v<U>) {
    g.actors.push_back(actor_pointer(arg));
  } else if constexpr (requires { std::begin(arg); std::end(arg); }) {
    for (auto&& member : arg) g.actors.push_back(actor_pointer(member));
  } else {
    g.actors.push_back(actor_pointer(arg));
  }
}

template <class T>
Group to_group(T&& arg) {
  if constexpr (std::is_same_v<std::remove_cvref_t<T>, Group>) {
    return arg;
  } else {
    Group g;
    add_members(g, std::forward<T>(arg));
    return g;
  }
}

template <class T>
Stage to_stage(T&& arg) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, Stage>) {
    return std::forward<T>(arg);
  } else if constexpr (std::is_convertible_v<T, std::string_view> && !std::is_base_of_v<Actor, U>) {
    Stage s;
    s.reference = std::string(std::string_view(arg));
    return s;
  } else {
    Stage s;
    s.definition = to_group(std::forward<T>(arg));
    return s;
  }
}

struct RelayState;

}  // namespace internal

// Names a group: relay::group("prep", workers) or relay::group("sink", consumer).
// Several members may be given; ranges are flattened.
template <class... Members>
Group group(std::string name, Members&&... members) {
  Group g{std::move(name), {}};
  (internal::add_members(g, std::forward<Members>(members)), ...);
  return g;
}

// The receiving side of a key-partitioned edge: each message goes to the one
// actor of `g` at position hash(value `key`) % size, where hash is 64-bit
// FNV-1a over the value's msgpack encoding (integers in their shortest form,
// so 7 hashes the same as an int, a long or an unsigned). The same key reaches
// the same position in every run and on every host; a sender waits for that
// actor's credit. `g` is a group definition or the name of one.
template <class G>
Stage by_key(G&& g, std::size_t key = 0) {
  Stage s = internal::to_stage(std::forward<G>(g));
  s.grouping = Grouping::by_key;
  s.key = key;
  return s;
}

// The receiving side of a broadcast edge: every actor of `g` receives every
// message sent on it.
template <class G>
Stage broadcast(G&& g) {
  Stage s = internal::to_stage(std::forward<G>(g));
  s.grouping = Grouping::broadcast;
  return s;
}

// The named output `name` of group `group` (defined earlier) as the start of
// an edge: what the group's actors send with send_to(name, ...) travels it.
inline Stage output(std::string group, std::string name) {
  Stage s;
  s.reference = std::move(group);
  s.output = std::move(name);
  return s;
}

// Where a group's actors run (Relay::place()).
class Placement {
 public:
  // On the driver's host, forked by start(): the default.
  static Placement local() { return Placement(std::nullopt); }
  // Spread round robin over every worker that joined.
  static Placement workers() { return Placement(std::string()); }
  // Spread over the workers started with this label (--relay-labels).
  static Placement label(std::string label) { return Placement(std::move(label)); }
  const std::optional<std::string>& where() const noexcept { return where_; }

 private:
  explicit Placement(std::optional<std::string> where) : where_(std::move(where)) {}
  std::optional<std::string> where_;
};

// Reads relay's own command-line flags and removes them from argv:
//   --relay-worker tcp://HOST:PORT   run as a worker of the driver there
//   --relay-labels a,b               this worker's labels (Placement::label)
//   --relay-key FILE                 the cluster key (relay-keygen makes one)
// The environment variables RELAY_WORKER, RELAY_LABELS and RELAY_KEY_FILE,
// read by init() (flags win), do the same: a program that never calls init()
// is never a worker, whatever its environment. In a worker, Relay::start() joins the driver and runs the actors
// the driver assigns to it; the program is otherwise the same as the driver's.
// Throws std::invalid_argument for a flag without its value.
void init(int& argc, char** argv);
// Whether init() made this process a worker (--relay-worker or RELAY_WORKER).
bool is_worker();

// How a supervised group recovers from failures (Relay::restart()).
struct Restart {
  // Restarts of the group's actors allowed within `within`; one more stops
  // the run (relay::ActorError listing every failure).
  std::size_t max_restarts = 3;
  std::chrono::milliseconds within{60000};
  // Deliveries of one message whose recv() failed before it is dead.
  std::size_t attempts = 3;
  // Where dead messages go, as [group, reason, the message's values...]; a
  // Queue alive when start() is called. None: a dead message fails the run.
  Queue* dead_letters = nullptr;
};

class Relay {
 public:
  // `maxsize` bounds how many messages each sender may have waiting on each
  // edge (sent, not yet taken by a receiver): send() blocks instead. It is
  // split evenly over the edge's receivers, at least one each, so an edge of
  // n senders and m receivers holds at most n * max(maxsize, m) waiting
  // messages, plus one per receiver inside recv(); on a broadcast edge each
  // receiver may hold maxsize of each sender's messages. Unset, each
  // sender/receiver pair may have 4096 messages waiting, and a sender sends
  // no more on a pair once 16 MiB wait there (at most 16 MiB plus one message). `log` names the spdlog logger
  // that actors' records are written with ("relay" if empty).
  explicit Relay(std::optional<std::size_t> maxsize = {}, std::string log = {});
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Adds an edge from each group given to the next: from its default output,
  // or from relay::output(group, name). A group is defined where it first
  // appears and referred to by its name afterwards. May be called several
  // times (before start()) to build a directed acyclic graph. Throws
  // std::invalid_argument, naming the groups, for fewer than two groups, an
  // empty group, an actor given twice (here or to another relay), a group
  // defined twice, a name no earlier connect() defined, or a cycle.
  template <class... Stages>
  Relay& connect(Stages&&... stages) {
    std::vector<Stage> list;
    (list.push_back(internal::to_stage(std::forward<Stages>(stages))), ...);
    connect_stages(std::move(list));
    return *this;
  }

  // Starts every actor, runs `handler->run()` (if given) in this thread, and
  // blocks until every actor has ended. See the header comment for what it
  // throws. Throws std::invalid_argument if called twice or before connect().
  void start(Handler* handler = nullptr);
  void start(Handler& handler) { start(&handler); }

  // ---- Across hosts (see README "Across hosts") ----

  // Accepts workers at `endpoint`, "tcp://ADDRESS:PORT", ADDRESS being where
  // workers reach this host. Data then flows over tcp between hosts. Binding a
  // non-loopback address needs a key (secure()) or allow_insecure_network().
  // Throws std::invalid_argument for a malformed endpoint or a wildcard address.
  Relay& listen(std::string endpoint);
  // Uses the standalone broker at `endpoint` ("tcp://ADDRESS:PORT", a running
  // relay-broker) instead of one inside this process: this process joins it,
  // sends it the plan and runs the actors placed on its own host; workers join
  // the broker too. Queue puts, log records and the outcome reach start() as
  // with an embedded broker. Not with listen() or monitor(): the broker owns
  // those endpoints (relay-broker --listen, --monitor).
  Relay& broker(std::string endpoint);
  // Binds every port relay opens for a distributed run in [first, last]
  // (the first free one): each receiver's data inbox, on whichever host it
  // runs, and the embedded broker's log endpoint. Without it they bind any
  // free port, which a firewall that opens only the listen() port cuts off.
  // A range with no free port left makes start() fail, naming the range and
  // the host. Driver and workers must give the same range (it is part of
  // what they must agree on). Throws std::invalid_argument unless
  // 1 <= first <= last <= 65535.
  Relay& ports(unsigned first, unsigned last);
  // Supervises group `group`: an actor of it that fails (an exception from a
  // hook, an exit, a signal) is started again as a new process with the same
  // name, group and position, which runs startup() again (a source runs
  // loop() again from the start), and every message sent to it that its
  // recv() had not finished is delivered again (Message::redelivered()).
  // Downstream of a restarted actor that is deterministic, a source
  // included, each message is delivered once: what its predecessors'
  // receivers took is not sent again. An actor on a worker restarts on its
  // worker; one whose host is lost starts again on another worker its
  // placement allows. See README "Supervision". Call it after
  // connect(); throws std::invalid_argument for an unknown group, a policy
  // with attempts or max_restarts 0, or an Inlet's group.
  Relay& restart(const std::string& group, Restart policy = {});
  // Runs group `group` where `where` says (default: Placement::local()).
  // Call it after connect(): throws std::invalid_argument if there is no
  // group of that name.
  Relay& place(const std::string& group, Placement where);
  // Waits at most `timeout` in start() for `n` workers before assigning
  // actors; start() fails with an error naming who joined if they do not come.
  // Default: 1 if any group is placed on workers.
  Relay& expect_workers(std::size_t n,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Encrypts and authenticates every connection with the cluster key in
  // `key_file` (ZeroMQ CURVE; peers without the key are refused).
  Relay& secure(const std::string& key_file);
  // Allows listen() on a non-loopback address without a key: traffic is then
  // neither encrypted nor authenticated. Say it only on a network you trust.
  Relay& allow_insecure_network();

  // Publishes logs, per-actor counters (sent, received, waiting) and the end
  // of the run at `endpoint` (tcp://ADDRESS:PORT, PORT may be *) for
  // relay-monitor. The same key rule as listen() applies.
  Relay& monitor(std::string endpoint);
  // The monitor endpoint as bound, once start() has bound it (from a Handler).
  std::string monitor_endpoint() const;

  // The logger name actors' records are written under.
  const std::string& log_name() const noexcept;

 private:
  void connect_stages(std::vector<Stage> stages);
  std::unique_ptr<internal::RelayState> state_;
};

}  // namespace relay
