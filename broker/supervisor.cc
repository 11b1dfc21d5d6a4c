#include "broker/supervisor.h"

#include <sstream>

#include "relay/internal/codec.h"

namespace relay::broker {

std::string Supervisor::describe_message(const InRecv& m) {
  std::string text;
  if (m.head.size() == m.size) {
    try {
      msgpack::zone zone;
      std::ostringstream out;
      out << internal::decode_value(zone, m.head.data(), m.head.size());
      text = out.str();
      if (text.size() > 200) text = text.substr(0, 197) + "...";
    } catch (const std::exception&) {
      text.clear();
    }
  }
  const std::string size = std::to_string(m.size) + " bytes";
  return text.empty() ? "a message of " + size : "the message " + text + " (" + size + ")";
}

std::uint32_t Supervisor::restarts(std::uint32_t id) const {
  const auto it = restarts_.find(id);
  return it == restarts_.end() ? 0 : it->second;
}

Supervisor::Verdict Supervisor::failed(Failure failure, const std::optional<InRecv>& in_recv) {
  const internal::ActorSlot& slot = plan_.actors.at(failure.id);
  const internal::Supervision& policy = *plan_.supervised_group(slot.group);
  failures_.push_back(failure);
  Verdict verdict;

  if (in_recv) {
    const auto key = std::make_tuple(failure.id, in_recv->edge, in_recv->sender,
                                     in_recv->sender_incarnation, in_recv->seq);
    const std::uint32_t attempts = ++attempts_[key];
    if (attempts >= policy.attempts) {
      const std::string what = describe_message(*in_recv) + " from " +
                               plan_.actors.at(in_recv->sender).name + " on edge " +
                               plan_.edge_name(in_recv->edge);
      if (!policy.dead_letters) {
        verdict.stop = "actor '" + slot.name + "' in group '" + slot.group_name +
                       "': recv() failed " + std::to_string(attempts) + " time(s) on " + what +
                       " (last: " + failure.reason +
                       "); the group has no dead_letters queue (relay::Restart)";
        return verdict;
      }
      ++dead_;
      attempts_.erase(key);
      verdict.dead = internal::DeadLetter{
          {in_recv->sender, in_recv->sender_incarnation},
          {{in_recv->edge, in_recv->seq}, failure.reason}};
    }
  }

  // More than max_restarts failures of the group within `within`.
  std::uint32_t recent = 0;
  for (const Failure& f : failures_) {
    if (plan_.actors.at(f.id).group == slot.group && failure.at - f.at <= policy.within) ++recent;
  }
  if (recent > policy.max_restarts) {
    verdict.dead.reset();
    verdict.stop = "group '" + slot.group_name + "' failed " + std::to_string(recent) +
                   " times within " + std::to_string(policy.within.count()) +
                   " ms, more than its max_restarts (" + std::to_string(policy.max_restarts) +
                   ")";
    return verdict;
  }
  ++restarts_[failure.id];
  verdict.restart = true;
  return verdict;
}

}  // namespace relay::broker
