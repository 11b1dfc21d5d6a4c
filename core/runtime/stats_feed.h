// relay/runtime/stats_feed.h: feeds relay::group_stats() from the driver's
// embedded broker. Private to relay.
#pragma once

#include <vector>

#include "broker/broker.h"
#include "relay/actor.h"
#include "relay/internal/plan.h"
#include "relay/progress.h"

namespace relay::internal {

// While it lives, the broker's thread publishes the per-group counters to
// group_stats() every kPeriod; publish() does it once more. It publishes the
// plan's groups, all zero, at once. Counters stay published after it is gone.
class StatsFeed {
 public:
  static constexpr int kPeriodMs = 250;

  // Call before the broker runs: it adds a watch (a timer) to it. `actors`
  // are the plan's, by id. Never throws for the timer: without one, only
  // publish() publishes.
  StatsFeed(broker::Broker& broker, const Plan& plan, const std::vector<Actor*>& actors);
  ~StatsFeed();
  StatsFeed(const StatsFeed&) = delete;
  StatsFeed& operator=(const StatsFeed&) = delete;

  // Publishes the broker's counters now: on the broker's thread, or while it
  // is not running.
  void publish();

 private:
  broker::Broker& broker_;
  std::vector<GroupStats> groups_;       // names, receiver, actors
  std::vector<std::uint32_t> group_of_;  // actor id -> group index
  // Per actor id: what its earlier processes (Relay::restart()) counted, as
  // last published, and the incarnation that `last` is of. A restart starts
  // the broker's report over; these keep a group's counts from going back.
  struct Carried {
    std::uint32_t incarnation = 0;
    std::uint64_t sent = 0, received = 0;            // earlier incarnations
    std::uint64_t last_sent = 0, last_received = 0;  // this one, as last seen
  };
  std::vector<Carried> carried_;
  int timer_fd_ = -1;
};

}  // namespace relay::internal
