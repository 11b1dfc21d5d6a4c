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
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
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

class DedupTable {
 public:
  // Records `o`; returns false if it was there already. `window`: how many
  // parents of o's pair may come again.
  bool insert(const Origin& o, std::uint32_t window);
  bool contains(const Origin& o) const;
  bool empty() const noexcept { return pairs_.empty(); }
  // Every entry, flat: edge, sender, incarnation, seq, n, j1 .. jn, edge, ...
  std::vector<std::uint64_t> flat() const;
  // Adds what flat() wrote; throws std::invalid_argument if malformed.
  void add_flat(const std::vector<std::uint64_t>& flat);

 private:
  using PairKey = std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>;
  struct Parents {
    std::uint64_t newest = 0;
    std::map<std::uint64_t, std::vector<std::uint64_t>> js;  // seq -> js taken
  };
  std::map<PairKey, Parents> pairs_;
};

}  // namespace relay::internal
