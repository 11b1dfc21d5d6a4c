#include "relay/internal/plan.h"

#include <algorithm>
#include <tuple>

#include <msgpack.hpp>

#include "relay/errors.h"
#include "relay/internal/codec.h"

namespace relay::internal {

std::uint32_t Plan::window(std::uint32_t sender_group) const {
  if (!maxsize) return kDefaultWindow;
  const std::size_t receivers = groups[sender_group + 1].size;
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(*maxsize / receivers, 1, 1u << 30));
}

std::uint64_t Plan::window_bytes() const { return maxsize ? 0 : kDefaultWindowBytes; }

std::string Plan::layout() const {
  std::string out;
  for (const GroupSlot& g : groups) {
    if (!out.empty()) out += " -> ";
    out += g.name + "[" + std::to_string(g.size) + "]";
  }
  return out;
}

std::uint64_t Plan::fingerprint() const {
  // FNV-1a over the names, each followed by a separator and its position.
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& text, std::uint32_t n) {
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (int i = 0; i < 4; ++i) h = (h ^ ((n >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  for (const GroupSlot& g : groups) mix(g.name, g.size);
  for (const ActorSlot& a : actors) mix(a.name, a.group);
  return h;
}

namespace {

using PackedGroup = std::tuple<std::string, std::uint32_t, std::uint32_t>;
using PackedActor = std::tuple<std::uint32_t, std::uint32_t, std::string, std::string>;
// (placed on workers, label); (false, "") is the driver's host.
using PackedPlace = std::pair<bool, std::string>;
using PackedPlan = std::tuple<std::vector<PackedGroup>, std::vector<PackedActor>,
                              std::vector<PackedPlace>, std::uint64_t, std::int64_t>;

}  // namespace

std::string pack_broker_plan(const Plan& plan) {
  PackedPlan p;
  for (const GroupSlot& g : plan.groups) std::get<0>(p).emplace_back(g.name, g.first, g.size);
  for (const ActorSlot& a : plan.actors) {
    std::get<1>(p).emplace_back(a.id, a.group, a.name, a.group_name);
  }
  for (std::size_t id = 0; id < plan.actors.size(); ++id) {
    const bool remote = plan.remote(static_cast<std::uint32_t>(id));
    std::get<2>(p).emplace_back(remote, remote ? *plan.placement[id] : std::string());
  }
  std::get<3>(p) = plan.expect_workers;
  std::get<4>(p) = plan.worker_wait.count();
  return pack_to_string(p);
}

Plan unpack_broker_plan(const char* data, std::size_t size) {
  const auto p = unpack_tuple<PackedPlan>(data, size, "plan");
  Plan plan;
  // Summed wide: sizes near 2^32 must not wrap around to a small total.
  constexpr std::uint64_t kMostActors = 1u << 20;
  std::uint64_t next = 0;
  for (const auto& [name, first, n] : std::get<0>(p)) {
    if (first != next || n == 0 || next + n > kMostActors) {
      throw EncodeError("plan: groups do not tile the actors");
    }
    plan.groups.push_back({name, first, n});
    next += n;
  }
  if (plan.groups.size() < 2 || std::get<1>(p).size() != next ||
      std::get<2>(p).size() != next) {
    throw EncodeError("plan: group, actor and placement counts disagree");
  }
  for (std::uint32_t id = 0; id < next; ++id) {
    const auto& [aid, group, name, group_name] = std::get<1>(p)[id];
    if (aid != id || group >= plan.groups.size() || id < plan.groups[group].first ||
        id >= plan.groups[group].first + plan.groups[group].size ||
        group_name != plan.groups[group].name) {
      throw EncodeError("plan: actor " + std::to_string(id) + " does not fit its group");
    }
    plan.actors.push_back({aid, group, name, group_name});
    const auto& [remote, label] = std::get<2>(p)[id];
    plan.placement.push_back(remote ? std::optional<std::string>(label) : std::nullopt);
  }
  plan.expect_workers = std::get<3>(p);
  if (std::get<4>(p) < 0) throw EncodeError("plan: negative worker wait");
  plan.worker_wait = std::chrono::milliseconds(std::get<4>(p));
  return plan;
}

}  // namespace relay::internal
