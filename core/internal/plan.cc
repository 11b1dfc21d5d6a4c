#include "relay/internal/plan.h"

#include <algorithm>

namespace relay::internal {

std::uint32_t Plan::window(std::uint32_t sender_group) const {
  if (!maxsize) return kDefaultWindow;
  const std::size_t receivers = groups[sender_group + 1].size;
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(*maxsize / receivers, 1, 1u << 30));
}

}  // namespace relay::internal
