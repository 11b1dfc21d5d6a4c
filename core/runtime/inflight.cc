#include "relay/runtime/inflight.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "relay/errors.h"

namespace relay::internal {
namespace {

InFlightSlot* g_table = nullptr;
std::size_t g_size = 0;

}  // namespace

void create_inflight_table(std::size_t actors) {
  destroy_inflight_table();
  const std::size_t bytes = std::max<std::size_t>(1, actors) * sizeof(InFlightSlot);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw Error(std::string("start: mmap: ") + std::strerror(errno));
  g_table = static_cast<InFlightSlot*>(p);
  for (std::size_t i = 0; i < actors; ++i) new (&g_table[i]) InFlightSlot();
  g_size = actors;
}

void destroy_inflight_table() noexcept {
  if (g_table == nullptr) return;
  ::munmap(g_table, std::max<std::size_t>(1, g_size) * sizeof(InFlightSlot));
  g_table = nullptr;
  g_size = 0;
}

InFlightSlot* inflight_slot(std::uint32_t id) noexcept {
  return g_table != nullptr && id < g_size ? &g_table[id] : nullptr;
}

std::optional<InRecv> read_inflight(std::uint32_t id) noexcept {
  InFlightSlot* s = inflight_slot(id);
  if (s == nullptr || s->busy.load(std::memory_order_acquire) == 0) return std::nullopt;
  try {
    InRecv r{s->edge, s->sender, s->sender_incarnation, s->seq, s->size,
             std::string(s->head, std::min<std::size_t>(s->head_size, sizeof s->head))};
    s->busy.store(0, std::memory_order_relaxed);  // read once: the next incarnation starts clean
    return r;
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace relay::internal
