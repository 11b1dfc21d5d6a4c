#include "relay/runtime/stats_feed.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <numeric>

namespace relay {

namespace {

std::mutex board_mu;
std::vector<GroupStats>& board() {
  static std::vector<GroupStats> groups;  // guarded by board_mu
  return groups;
}

template <class Map>
std::uint64_t sum_of(const Map& counts) {
  return std::accumulate(counts.begin(), counts.end(), std::uint64_t{0},
                         [](std::uint64_t s, const auto& kv) { return s + kv.second; });
}

}  // namespace

std::vector<GroupStats> group_stats() {
  std::lock_guard lock(board_mu);
  return board();
}

namespace internal {

StatsFeed::StatsFeed(broker::Broker& broker, const Plan& plan, const std::vector<Actor*>& actors)
    : broker_(broker) {
  for (const GroupSlot& g : plan.groups) groups_.push_back(GroupStats{.name = g.name});
  for (const ActorSlot& a : plan.actors) {
    group_of_.push_back(a.group);
    GroupStats& g = groups_.at(a.group);
    ++g.actors;
    if (a.id < actors.size() && actors[a.id] != nullptr && actors[a.id]->receiver()) {
      g.receiver = true;
    }
  }
  carried_.resize(group_of_.size());
  publish();
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) return;
  itimerspec every{};
  every.it_interval.tv_nsec = kPeriodMs * 1000000L;
  every.it_value = every.it_interval;
  ::timerfd_settime(timer_fd_, 0, &every, nullptr);
  broker_.watch(timer_fd_, [this] {
    std::uint64_t expirations = 0;
    [[maybe_unused]] ssize_t n = ::read(timer_fd_, &expirations, sizeof expirations);
    publish();
    return true;
  });
}

StatsFeed::~StatsFeed() {
  // The broker is no longer running (its thread was joined): it polls the
  // timer no more.
  if (timer_fd_ >= 0) ::close(timer_fd_);
}

void StatsFeed::publish() {
  std::vector<GroupStats> now = groups_;
  const std::vector<broker::ActorReport>& reports = broker_.reports();
  for (std::size_t id = 0; id < reports.size() && id < group_of_.size(); ++id) {
    const broker::ActorReport& r = reports[id];
    GroupStats& g = now[group_of_[id]];
    // The end-of-stream report (bye) holds the exact counts; before it, the
    // latest periodic ones.
    // A bye's per-pair counts leave out what came from a sender's earlier
    // processes (after a restart upstream); the totals sent just before it
    // hold everything.
    const std::uint64_t sent = r.bye ? std::max(sum_of(r.sent), r.sent_total) : r.sent_total;
    const std::uint64_t received =
        r.bye ? std::max(sum_of(r.received), r.received_total) : r.received_total;
    // A restarted actor's report starts over: add what its earlier processes
    // counted when last seen (messages delivered again count again).
    Carried& c = carried_[id];
    if (c.incarnation != r.incarnation) {
      c.sent += c.last_sent;
      c.received += c.last_received;
      c.incarnation = r.incarnation;
    }
    c.last_sent = sent;
    c.last_received = received;
    if (r.bye && r.incarnation > 0 && !g.receiver) {
      // A restarted source ran all of loop() again: what its last process
      // sent and what it found taken from the earlier ones, exactly.
      g.sent += sent + sum_of(r.not_sent);
    } else {
      g.sent += c.sent + sent;
    }
    if (r.bye && r.incarnation > 0) {
      // Exact at the end: what its last process took, and what its senders
      // count as finished by its earlier ones (or dead letters).
      std::uint64_t settled = 0;
      for (const broker::ActorReport& sender : reports) {
        for (const auto& [pair, n] : sender.settled) {
          if (pair.second == id) settled += n;
        }
      }
      g.received += sum_of(r.received) + settled;
    } else {
      g.received += c.received + received;
    }
    g.waiting += r.bye ? 0 : r.waiting;
    g.restarts += broker_.supervisor().restarts(static_cast<std::uint32_t>(id));
    if (r.exitcode) ++g.ended;
    if (r.failure || r.stopped || (r.exitcode && *r.exitcode != 0)) ++g.failed;
  }
  std::lock_guard lock(board_mu);
  board() = std::move(now);
}

}  // namespace internal
}  // namespace relay
