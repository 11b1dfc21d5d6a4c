// relay/relay.h: the umbrella header, and relay::Relay, which wires actors
// into a pipeline and runs each in its own process.
//
//   relay::Relay relay(/*maxsize=*/50, /*log=*/"demo");
//   relay.connect(producer, workers, relay::group("sink", consumer));
//   relay.start();   // forks every actor; blocks until all ended
//
// A group is an Actor&, a range of actors (std::vector<std::unique_ptr<T>>,
// std::vector<T*>, ...), or relay::group("name", ...). Unnamed groups are
// called "group-0", "group-1", ... by position. Between two groups every
// topology works: 1-1, 1-n, n-1, n-m. Each message goes to exactly one actor of
// the next group; end of stream reaches every actor after all of its senders
// finished.
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
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "relay/actor.h"
#include "relay/control.h"
#include "relay/errors.h"
#include "relay/handler.h"
#include "relay/message.h"
#include "relay/progress.h"
#include "relay/queue.h"

namespace relay {

// A group of actors, as connect() takes it. Made by relay::group() or from
// any group argument.
struct Group {
  std::string name;  // empty: "group-N" by position
  std::vector<Actor*> actors;
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

class Relay {
 public:
  // `maxsize` bounds how many messages each sender may have waiting in the
  // next group (sent, not yet taken by a receiver): send() blocks instead. It
  // is split evenly over the receivers, at least one each, so an edge of n
  // senders and m receivers holds at most n * max(maxsize, m) waiting
  // messages, plus one per receiver inside recv(). Unset, each
  // sender/receiver pair may have 4096 messages waiting, and a sender sends
  // no more on a pair once 16 MiB wait there (at most 16 MiB plus one message). `log` names the spdlog logger
  // that actors' records are written with ("relay" if empty).
  explicit Relay(std::optional<std::size_t> maxsize = {}, std::string log = {});
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Wires groups in order: each group's actors send to the next group's.
  // Throws std::invalid_argument for fewer than two groups, an empty group, or
  // an actor given twice (here or to another relay).
  template <class... Groups>
  Relay& connect(Groups&&... groups) {
    std::vector<Group> list;
    (list.push_back(internal::to_group(std::forward<Groups>(groups))), ...);
    connect_groups(std::move(list));
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
  void connect_groups(std::vector<Group> groups);
  std::unique_ptr<internal::RelayState> state_;
};

}  // namespace relay
