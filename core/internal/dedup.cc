#include "relay/internal/dedup.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "relay/internal/wire.h"

namespace relay::internal {
void Origin::write(char* out) const noexcept {
  write_be32(out, edge);
  write_be32(out + 4, sender);
  write_be32(out + 8, sender_incarnation);
  write_be64(out + 12, seq);
  write_be64(out + 20, j);
}

Origin Origin::read(const char* in) noexcept {
  return Origin{read_be32(in), read_be32(in + 4), read_be32(in + 8), read_be64(in + 12),
                read_be64(in + 20)};
}

std::uint64_t loop_limit(const Plan& plan, std::uint32_t group) {
  std::uint64_t waiting = 0;
  for (std::uint32_t e = 0; e < plan.edges.size(); ++e) {
    const EdgeSlot& edge = plan.edges[e];
    if (edge.from == group) waiting += std::uint64_t{plan.groups[edge.to].size} * plan.window(e);
  }
  return 2 * waiting + 1;
}

std::uint64_t origin_limit(const Plan& plan, const Origin& o, std::uint32_t by) {
  if (by >= plan.actors.size()) return 0;
  const std::uint32_t group = plan.actors[by].group;
  if (o.edge == kLoopEdge) {
    return o.sender == by && o.sender_incarnation == 0 && o.j == 0 ? loop_limit(plan, group) : 0;
  }
  if (o.edge >= plan.edges.size()) return 0;
  const EdgeSlot& edge = plan.edges[o.edge];
  const GroupSlot& from = plan.groups[edge.from];
  if (edge.to != group || o.sender < from.first || o.sender - from.first >= from.size) return 0;
  return held_limit(plan, o.edge);
}

std::deque<DedupTable::Parent>::const_iterator DedupTable::find(const Parents& p,
                                                               std::uint64_t seq) {
  const auto at = std::lower_bound(p.seqs.begin(), p.seqs.end(), seq,
                                   [](const Parent& e, std::uint64_t s) { return e.seq < s; });
  return at != p.seqs.end() && at->seq == seq ? at : p.seqs.end();
}

bool DedupTable::insert(const Origin& o, std::uint64_t window) {
  Parents& p = pairs_[{o.edge, o.sender, o.sender_incarnation}];
  p.newest = std::max(p.newest, o.seq);
  if (p.newest - o.seq > window) return true;  // cannot come again: not kept
  // Where o's parent is: nearly always the back, or one past it.
  auto at = p.seqs.end();
  if (p.seqs.empty() || p.seqs.back().seq < o.seq) {
    p.seqs.push_back({o.seq, 0});
    at = std::prev(p.seqs.end());
  } else if (p.seqs.back().seq == o.seq) {
    at = std::prev(p.seqs.end());
  } else {
    at = std::lower_bound(p.seqs.begin(), p.seqs.end(), o.seq,
                          [](const Parent& e, std::uint64_t s) { return e.seq < s; });
    if (at->seq != o.seq) at = p.seqs.insert(at, {o.seq, 0});
  }
  if (o.j < 64) {
    const std::uint64_t bit = std::uint64_t{1} << o.j;
    if (at->low & bit) return false;
    at->low |= bit;
  } else {
    std::vector<std::uint64_t>& js = p.high[o.seq];
    const auto j = std::lower_bound(js.begin(), js.end(), o.j);
    if (j != js.end() && *j == o.j) return false;
    js.insert(j, o.j);
  }
  // Parents that cannot come again.
  while (p.newest - p.seqs.front().seq > window) {
    if (!p.high.empty() && p.high.begin()->first == p.seqs.front().seq) p.high.erase(p.high.begin());
    p.seqs.pop_front();
  }
  return true;
}

std::optional<std::uint64_t> DedupTable::newest(std::uint32_t edge, std::uint32_t sender,
                                                std::uint32_t incarnation) const {
  const auto pit = pairs_.find({edge, sender, incarnation});
  if (pit == pairs_.end() || pit->second.seqs.empty()) return std::nullopt;
  return pit->second.seqs.back().seq;
}

bool DedupTable::contains(const Origin& o) const {
  const auto pit = pairs_.find({o.edge, o.sender, o.sender_incarnation});
  if (pit == pairs_.end()) return false;
  const Parents& p = pit->second;
  const auto at = find(p, o.seq);
  if (at == p.seqs.end()) return false;
  if (o.j < 64) return (at->low >> o.j) & 1;
  const auto hit = p.high.find(o.seq);
  return hit != p.high.end() && std::binary_search(hit->second.begin(), hit->second.end(), o.j);
}

std::vector<std::uint64_t> DedupTable::flat() const {
  std::vector<std::uint64_t> out;
  for (const auto& [key, p] : pairs_) {
    for (const Parent& e : p.seqs) {
      const auto hit = p.high.find(e.seq);
      const std::size_t n_high = hit == p.high.end() ? 0 : hit->second.size();
      out.push_back(std::get<0>(key));
      out.push_back(std::get<1>(key));
      out.push_back(std::get<2>(key));
      out.push_back(e.seq);
      out.push_back(static_cast<std::uint64_t>(std::popcount(e.low)) + n_high);
      for (std::uint64_t bits = e.low; bits != 0; bits &= bits - 1) {
        out.push_back(static_cast<std::uint64_t>(std::countr_zero(bits)));
      }
      if (n_high != 0) out.insert(out.end(), hit->second.begin(), hit->second.end());
    }
  }
  return out;
}

void DedupTable::add_flat(const std::vector<std::uint64_t>& flat) {
  for (std::size_t i = 0; i < flat.size();) {
    if (flat.size() - i < 5) throw std::invalid_argument("short dedup entry");
    const std::uint64_t n = flat[i + 4];
    if (n > flat.size() - i - 5) throw std::invalid_argument("dedup entry past the end");
    for (std::uint64_t k = 0; k < n; ++k) {
      Origin o{static_cast<std::uint32_t>(flat[i]), static_cast<std::uint32_t>(flat[i + 1]),
               static_cast<std::uint32_t>(flat[i + 2]), flat[i + 3], flat[i + 5 + k]};
      insert(o, UINT64_MAX);  // kept whole: it is a successor's list, not a window
    }
    i += 5 + n;
  }
}

}  // namespace relay::internal
