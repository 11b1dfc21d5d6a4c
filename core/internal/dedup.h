// relay/internal/dedup.h: what a receiver took from a supervised sender, by
// origin, so that a restarted sender does not deliver a message twice.
//
// A message sent by a supervised actor inside recv(m) has an origin: the pair
// m came on (edge, sender, that sender's incarnation), m's seq on that pair,
// and j, the index of this send (or put) among recv(m)'s. For a deterministic
// actor the origin is the same when its successor runs m again. A receiver
// keeps, per origin pair, the js it took for the latest parents only: the
// sender of a pair holds at most `window` of its messages, so a parent older
// than the newest seen minus the window was finished and will not come again.
//
// A send or put a supervised actor makes outside recv() (a source's loop(),
// any actor's startup() and shutdown()) has a loop origin instead: the pseudo
// pair (kLoopEdge, the actor's id, 0), seq k (its sends and puts outside
// recv() counted from 0, in every incarnation alike) and j 0. Its actor never
// makes op k while one it sent before k - loop_limit() is not taken, so a
// receiver keeps loop_limit() parents of that pair (see DESIGN.md).
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "relay/internal/plan.h"

namespace relay::internal {

struct Origin {
  std::uint32_t edge = 0;
  std::uint32_t sender = 0;
  std::uint32_t sender_incarnation = 0;
  std::uint64_t seq = 0;
  std::uint64_t j = 0;

  static constexpr std::size_t kSize = 28;
  void write(char* out) const noexcept;
  static Origin read(const char* in) noexcept;
};

// How many messages of a pair into a supervised group its sender may hold
// (sent, not yet finished): twice the pair's credit window. A receiver's
// memory of a parent older than the newest minus this is not needed.
inline std::uint32_t held_limit(const Plan& plan, std::uint32_t edge) {
  return 2 * plan.window(edge) + 1;
}

// The edge of a loop origin: no edge, the actor's own loop().
inline constexpr std::uint32_t kLoopEdge = UINT32_MAX;

// The origin of op k made outside recv() by actor `id`. The incarnation is
// left out on purpose: a successor's op k is its predecessor's op k.
inline Origin loop_origin(std::uint32_t id, std::uint64_t k) {
  return Origin{kLoopEdge, id, 0, k, 0};
}

// How far apart group `group`'s ops outside recv() may be while the older is
// not taken (X): twice what its windows let wait on all its outgoing pairs,
// plus one, so that flow within the windows is not held up by it.
std::uint64_t loop_limit(const Plan& plan, std::uint32_t group);

// How many parents of o's pair a receiver (or the broker, for puts) keeps
// for frames from actor `by`: held_limit() for an origin inside recv(),
// loop_limit() for a loop origin. 0 if `by` cannot have made o (an unknown
// edge, a pair that does not lead into by's group, another actor's loop).
std::uint64_t origin_limit(const Plan& plan, const Origin& o, std::uint32_t by);

class DedupTable {
 public:
  // Records `o`; returns false if it was there already. `window`: how many
  // parents of o's pair may come again.
  bool insert(const Origin& o, std::uint64_t window);
  bool contains(const Origin& o) const;
  // The newest parent recorded for a pair, if any.
  std::optional<std::uint64_t> newest(std::uint32_t edge, std::uint32_t sender,
                                      std::uint32_t incarnation) const;
  bool empty() const noexcept { return pairs_.empty(); }
  // Every entry, flat: edge, sender, incarnation, seq, n, j1 .. jn, edge, ...
  std::vector<std::uint64_t> flat() const;
  // Adds what flat() wrote; throws std::invalid_argument if malformed.
  void add_flat(const std::vector<std::uint64_t>& flat);

 private:
  using PairKey = std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>;
  // One parent: its seq and the js taken below 64 as bits; the rare js from
  // 64 on are kept in Parents::high. Parents arrive nearly in seq order, so
  // a sorted deque takes them at its back and drops them at its front.
  struct Parent {
    std::uint64_t seq = 0;
    std::uint64_t low = 0;
  };
  struct Parents {
    std::uint64_t newest = 0;
    std::deque<Parent> seqs;                                    // sorted by seq
    std::map<std::uint64_t, std::vector<std::uint64_t>> high;  // seq -> sorted js >= 64
  };
  // The parent `seq` of p, or seqs.end().
  static std::deque<Parent>::const_iterator find(const Parents& p, std::uint64_t seq);

  std::map<PairKey, Parents> pairs_;
};

}  // namespace relay::internal
