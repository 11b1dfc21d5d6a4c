// relay/runtime/inflight.h: which message each supervised actor is inside
// recv() with, in memory the driver shares with its actor processes.
//
// A supervised actor writes its slot before recv() and clears it after; when
// the process dies (an exception, abort, SIGSEGV, SIGKILL), the slot still
// names the message it died on, so the supervisor can count that message's
// attempts and, once they are used up, make it a dead letter. Written by one
// process, read by the driver only after that process has exited.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "broker/supervisor.h"

namespace relay::internal {

struct InFlightSlot {
  std::atomic<std::uint32_t> busy{0};  // 1 while recv() runs
  std::uint32_t edge = 0;
  std::uint32_t sender = 0;
  std::uint32_t sender_incarnation = 0;
  std::uint64_t seq = 0;
  std::uint32_t size = 0;       // the message's size (msgpack bytes)
  std::uint32_t head_size = 0;  // how many of them are in head
  char head[224] = {};
};

using broker::InRecv;

// Maps one slot per actor, shared with every process forked afterwards; the
// driver calls it before it forks. Throws relay::Error if mmap fails.
void create_inflight_table(std::size_t actors);
// Unmaps it (in the driver, after the run).
void destroy_inflight_table() noexcept;
// Actor `id`'s slot, or nullptr without a table.
InFlightSlot* inflight_slot(std::uint32_t id) noexcept;
// What actor `id` was inside recv() with when it died, if anything.
std::optional<InRecv> read_inflight(std::uint32_t id) noexcept;

}  // namespace relay::internal
