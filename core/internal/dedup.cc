#include "relay/internal/dedup.h"

#include <algorithm>
#include <stdexcept>

namespace relay::internal {
namespace {

void put32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (24 - 8 * i));
}
void put64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (56 - 8 * i));
}
std::uint32_t get32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint64_t get64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

void Origin::write(char* out) const noexcept {
  put32(out, edge);
  put32(out + 4, sender);
  put32(out + 8, sender_incarnation);
  put64(out + 12, seq);
  put64(out + 20, j);
}

Origin Origin::read(const char* in) noexcept {
  return Origin{get32(in), get32(in + 4), get32(in + 8), get64(in + 12), get64(in + 20)};
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

bool DedupTable::insert(const Origin& o, std::uint64_t window) {
  Parents& p = pairs_[{o.edge, o.sender, o.sender_incarnation}];
  std::vector<std::uint64_t>& js = p.js[o.seq];
  const auto at = std::lower_bound(js.begin(), js.end(), o.j);
  if (at != js.end() && *at == o.j) return false;
  js.insert(at, o.j);
  p.newest = std::max(p.newest, o.seq);
  // Parents that cannot come again.
  while (!p.js.empty() && p.newest - p.js.begin()->first > window) p.js.erase(p.js.begin());
  return true;
}

std::optional<std::uint64_t> DedupTable::newest(std::uint32_t edge, std::uint32_t sender,
                                                std::uint32_t incarnation) const {
  const auto pit = pairs_.find({edge, sender, incarnation});
  if (pit == pairs_.end() || pit->second.js.empty()) return std::nullopt;
  return pit->second.js.rbegin()->first;
}

bool DedupTable::contains(const Origin& o) const {
  const auto pit = pairs_.find({o.edge, o.sender, o.sender_incarnation});
  if (pit == pairs_.end()) return false;
  const auto sit = pit->second.js.find(o.seq);
  return sit != pit->second.js.end() &&
         std::binary_search(sit->second.begin(), sit->second.end(), o.j);
}

std::vector<std::uint64_t> DedupTable::flat() const {
  std::vector<std::uint64_t> out;
  for (const auto& [key, parents] : pairs_) {
    for (const auto& [seq, js] : parents.js) {
      out.push_back(std::get<0>(key));
      out.push_back(std::get<1>(key));
      out.push_back(std::get<2>(key));
      out.push_back(seq);
      out.push_back(js.size());
      out.insert(out.end(), js.begin(), js.end());
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
