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

class Relay {
 public:
  // `maxsize` bounds how many messages each sender may have waiting in the
  // next group (sent, not yet taken by a receiver): send() blocks instead. It
  // is split evenly over the receivers, at least one each, so an edge of n
  // senders and m receivers holds at most n * max(maxsize, m) waiting
  // messages, plus one per receiver inside recv(). Unset, each
  // sender/receiver pair may have 1000 waiting. `log` names the spdlog logger
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

  // The logger name actors' records are written under.
  const std::string& log_name() const noexcept;

 private:
  void connect_groups(std::vector<Group> groups);
  std::unique_ptr<internal::RelayState> state_;
};

}  // namespace relay
