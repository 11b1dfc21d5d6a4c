#include "relay/internal/plan.h"

#include <algorithm>
#include <cstdlib>
#include <tuple>

#include <msgpack.hpp>

#include "relay/errors.h"
#include "relay/internal/codec.h"

namespace relay::internal {

std::chrono::milliseconds start_wait() {
  if (const char* ms = std::getenv("RELAY_TESTING_START_WAIT_MS")) {
    return std::chrono::milliseconds(std::strtoll(ms, nullptr, 10));
  }
  return kStartWait;
}

std::uint32_t Plan::window(std::uint32_t edge) const {
  if (!maxsize) return kDefaultWindow;
  const EdgeSlot& e = edges[edge];
  const std::size_t receivers = e.grouping == EdgeGrouping::broadcast ? 1 : groups[e.to].size;
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(*maxsize / receivers, 1, 1u << 30));
}

std::vector<std::uint32_t> Plan::edges_from(std::uint32_t g) const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t e = 0; e < edges.size(); ++e) {
    if (edges[e].from == g) out.push_back(e);
  }
  return out;
}

std::vector<std::uint32_t> Plan::edges_into(std::uint32_t g) const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t e = 0; e < edges.size(); ++e) {
    if (edges[e].to == g) out.push_back(e);
  }
  return out;
}

std::vector<std::string> Plan::outputs(std::uint32_t g) const {
  std::vector<std::string> out;
  for (const EdgeSlot& e : edges) {
    if (e.from == g && std::find(out.begin(), out.end(), e.output) == out.end()) {
      out.push_back(e.output);
    }
  }
  return out;
}

std::string Plan::edge_name(std::uint32_t e) const {
  const EdgeSlot& edge = edges[e];
  std::string out = "'" + groups[edge.from].name + "'";
  if (!edge.output.empty()) out += ".'" + edge.output + "'";
  return out + " -> '" + groups[edge.to].name + "'";
}

std::uint64_t Plan::window_bytes() const { return maxsize ? 0 : kDefaultWindowBytes; }

std::string Plan::layout() const {
  std::vector<bool> shown(groups.size(), false);
  // A group, the way the edge `into` reaches it (" by key", " from 'bad'"),
  // and, the first time it is met, everything downstream of it.
  auto render = [&](auto& self, std::uint32_t g, std::string how) -> std::string {
    if (shown[g]) return groups[g].name + how;
    shown[g] = true;
    std::string out = groups[g].name + "[" + std::to_string(groups[g].size) + "]" + how;
    const std::vector<std::uint32_t> out_edges = edges_from(g);
    std::vector<std::string> parts;
    for (std::uint32_t e : out_edges) {
      const EdgeSlot& edge = edges[e];
      std::string via;
      if (edge.grouping == EdgeGrouping::by_key) {
        via = edge.key == 0 ? " by key" : " by key " + std::to_string(edge.key);
      } else if (edge.grouping == EdgeGrouping::broadcast) {
        via = " broadcast";
      }
      if (!edge.output.empty()) via += " from '" + edge.output + "'";
      parts.push_back(self(self, edge.to, via));
    }
    if (parts.size() == 1) {
      out += " -> " + parts[0];
    } else if (parts.size() > 1) {
      out += " -> {";
      for (std::size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : ", ") + parts[i];
      out += "}";
    }
    return out;
  };
  std::string out;
  for (std::uint32_t g = 0; g < groups.size(); ++g) {
    if (!edges_into(g).empty() || shown[g]) continue;
    out += (out.empty() ? "" : "; ") + render(render, g, "");
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Plan::parts() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("layout", layout());
  out.emplace_back("maxsize", maxsize ? "maxsize " + std::to_string(*maxsize) : "no maxsize");
  // The windows follow from maxsize and the group sizes, and without maxsize
  // from this build's defaults: another version of the program may differ.
  std::string windows = "windows";
  for (std::uint32_t e = 0; e < edges.size(); ++e) {
    windows += (e == 0 ? " " : ", ") + std::to_string(window(e));
  }
  windows += " messages, " + std::to_string(window_bytes()) + " bytes";
  out.emplace_back("windows", windows);
  std::string q;
  for (const QueueSlot& slot : queues) {
    q += (q.empty() ? "queues #" : ", #") + std::to_string(slot.id);
    if (slot.maxsize) q += " (maxsize " + std::to_string(*slot.maxsize) + ")";
  }
  out.emplace_back("queues", q.empty() ? "no queues" : q);
  std::string where;
  for (const GroupSlot& g : groups) {
    if (!remote(g.first)) continue;
    const std::string& label = *placement[g.first];
    where += (where.empty() ? "" : ", ") + g.name +
             (label.empty() ? " on workers" : " on workers labelled '" + label + "'");
  }
  out.emplace_back("placement", where.empty() ? "all on the driver's host" : where);
  std::string supervised;
  for (std::uint32_t g = 0; g < groups.size(); ++g) {
    const Supervision* s = supervised_group(g);
    if (s == nullptr) continue;
    supervised += (supervised.empty() ? "restart " : ", ") + groups[g].name + " (" +
                  std::to_string(s->max_restarts) + " in " + std::to_string(s->within.count()) +
                  " ms, " + std::to_string(s->attempts) + " attempts" +
                  (s->dead_letters ? ", dead letters #" + std::to_string(*s->dead_letters) : "") +
                  ")";
  }
  out.emplace_back("supervision", supervised.empty() ? "no restarts" : supervised);
  out.emplace_back(
      "ports", ports ? "ports " + std::to_string(ports->first) + "-" + std::to_string(ports->last)
                     : "any ports");
  std::string names;
  for (const ActorSlot& a : actors) names += (names.empty() ? "" : ", ") + a.name;
  out.emplace_back("actor names", names);
  return out;
}

std::string Plan::describe() const {
  std::string out;
  for (const auto& [name, text] : parts()) {
    // Windows follow from the rest; actor names are too long to show.
    if (name == "windows" || name == "actor names" || (name == "ports" && !ports) ||
        (name == "supervision" && !any_supervised())) {
      continue;
    }
    out += (out.empty() ? "" : "; ") + text;
  }
  return out;
}

std::uint64_t Plan::fingerprint() const {
  // FNV-1a over the names, each followed by a separator and its position,
  // then over every part's text.
  std::uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& text, std::uint32_t n) {
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (int i = 0; i < 4; ++i) h = (h ^ ((n >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  for (const GroupSlot& g : groups) mix(g.name, g.size);
  for (const ActorSlot& a : actors) mix(a.name, a.group);
  std::uint32_t k = 0;
  for (const auto& [name, text] : parts()) mix(name + "=" + text, k++);
  return h;
}

namespace {

using PackedGroup = std::tuple<std::string, std::uint32_t, std::uint32_t>;
using PackedActor = std::tuple<std::uint32_t, std::uint32_t, std::string, std::string>;
// (placed on workers, label); (false, "") is the driver's host.
using PackedPlace = std::pair<bool, std::string>;
// (has a bound, bound)
using PackedBound = std::pair<bool, std::uint64_t>;
using PackedQueue = std::pair<std::uint64_t, PackedBound>;
// (set, first, last)
using PackedPorts = std::tuple<bool, std::uint16_t, std::uint16_t>;
// (message window of each sender group, byte window): checked, not used,
// so that a relay-broker of another version says so instead of turning
// every worker away.
using PackedWindows = std::pair<std::vector<std::uint32_t>, std::uint64_t>;
// (from, output, to, grouping, key)
using PackedEdge =
    std::tuple<std::uint32_t, std::string, std::uint32_t, std::uint8_t, std::uint32_t>;
using PackedPlan = std::tuple<std::vector<PackedGroup>, std::vector<PackedActor>,
                              std::vector<PackedPlace>, std::uint64_t, std::int64_t, PackedBound,
                              std::vector<PackedQueue>, PackedPorts, PackedWindows,
                              std::vector<PackedEdge>>;

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
  std::get<5>(p) = {plan.maxsize.has_value(), plan.maxsize.value_or(0)};
  for (const QueueSlot& q : plan.queues) {
    std::get<6>(p).push_back({q.id, {q.maxsize.has_value(), q.maxsize.value_or(0)}});
  }
  if (plan.ports) std::get<7>(p) = {true, plan.ports->first, plan.ports->last};
  for (std::uint32_t e = 0; e < plan.edges.size(); ++e) {
    std::get<8>(p).first.push_back(plan.window(e));
  }
  std::get<8>(p).second = plan.window_bytes();
  for (const EdgeSlot& e : plan.edges) {
    std::get<9>(p).emplace_back(e.from, e.output, e.to, static_cast<std::uint8_t>(e.grouping),
                                e.key);
  }
  return pack_to_string(p);
}

std::optional<std::string> check_graph(const Plan& plan) {
  const std::size_t n = plan.groups.size();
  std::vector<std::vector<std::uint32_t>> next(n);
  std::vector<bool> touched(n, false);
  for (const EdgeSlot& e : plan.edges) {
    next[e.from].push_back(e.to);
    touched[e.from] = touched[e.to] = true;
  }
  for (std::uint32_t g = 0; g < n; ++g) {
    if (!touched[g]) return "group '" + plan.groups[g].name + "' has no edge";
  }
  // Depth-first, colouring each group: 1 on the current path, 2 done.
  std::vector<int> colour(n, 0);
  std::vector<std::uint32_t> path;
  std::optional<std::string> cycle;
  auto visit = [&](auto& self, std::uint32_t g) -> void {
    colour[g] = 1;
    path.push_back(g);
    for (std::uint32_t t : next[g]) {
      if (cycle) return;
      if (colour[t] == 1) {
        std::string text;
        auto at = std::find(path.begin(), path.end(), t);
        for (; at != path.end(); ++at) text += "'" + plan.groups[*at].name + "' -> ";
        cycle = "a cycle: " + text + "'" + plan.groups[t].name + "'";
        return;
      }
      if (colour[t] == 0) self(self, t);
    }
    path.pop_back();
    colour[g] = 2;
  };
  for (std::uint32_t g = 0; g < n && !cycle; ++g) {
    if (colour[g] == 0) visit(visit, g);
  }
  return cycle;
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
  const auto& [bounded, maxsize] = std::get<5>(p);
  if (bounded && maxsize == 0) throw EncodeError("plan: maxsize 0");
  if (bounded) plan.maxsize = maxsize;
  std::uint64_t last_queue = 0;
  for (const auto& [id, bound] : std::get<6>(p)) {
    if (id <= last_queue) throw EncodeError("plan: queue ids out of order");
    if (bound.first && bound.second == 0) throw EncodeError("plan: a queue of maxsize 0");
    last_queue = id;
    plan.queues.push_back(
        {id, bound.first ? std::optional<std::size_t>(bound.second) : std::nullopt});
  }
  const auto& [has_ports, first_port, last_port] = std::get<7>(p);
  if (has_ports) {
    if (first_port == 0 || first_port > last_port) throw EncodeError("plan: bad port range");
    plan.ports = PortRange{first_port, last_port};
  }
  for (const auto& [from, output, to, grouping, key] : std::get<9>(p)) {
    if (from >= plan.groups.size() || to >= plan.groups.size() || from == to ||
        grouping > static_cast<std::uint8_t>(EdgeGrouping::broadcast) ||
        plan.edges.size() >= kMostEdges) {
      throw EncodeError("plan: an edge that does not join two of its groups");
    }
    plan.edges.push_back({from, output, to, static_cast<EdgeGrouping>(grouping), key});
  }
  if (const std::optional<std::string> why = check_graph(plan)) throw EncodeError("plan: " + *why);
  const auto& [windows, window_bytes] = std::get<8>(p);
  bool same = windows.size() == plan.edges.size() && window_bytes == plan.window_bytes();
  for (std::uint32_t g = 0; same && g < windows.size(); ++g) same = windows[g] == plan.window(g);
  if (!same) {
    throw EncodeError(
        "plan: the driver's credit windows are not the ones this relay-broker computes for the "
        "same plan (another version of relay?)");
  }
  return plan;
}

}  // namespace relay::internal
