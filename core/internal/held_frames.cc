#include "relay/internal/held_frames.h"

#include <algorithm>
#include <utility>

namespace relay::internal {

char* HeldFrames::push(std::uint64_t seq, std::size_t size) {
  if (size > kSmallAtMost) {
    zmq::message_t& m = large_.emplace_back(size);
    char* data = m.data<char>();
    entries_.push_back({seq, static_cast<std::uint32_t>(size), false, nullptr, data});
    return data;
  }
  if (blocks_.empty() || kBlockBytes - blocks_.back().used < size) {
    Block b;
    b.bytes = spare_ ? std::move(spare_) : std::make_unique<char[]>(kBlockBytes);
    blocks_.push_back(std::move(b));
  }
  Block& b = blocks_.back();
  char* data = b.bytes.get() + b.used;
  b.used += size;
  ++b.live;
  entries_.push_back({seq, static_cast<std::uint32_t>(size), false, &b, data});
  return data;
}

const zmq::message_t* HeldFrames::newest_message() const noexcept {
  if (entries_.empty() || entries_.back().block != nullptr) return nullptr;
  return &large_.back();
}

void HeldFrames::release(const Entry& e) {
  if (e.block == nullptr) {
    large_.pop_front();
    return;
  }
  --e.block->live;
  // Blocks empty in the order they filled; the newest stays for what comes.
  while (blocks_.size() > 1 && blocks_.front().live == 0) {
    if (!spare_) spare_ = std::move(blocks_.front().bytes);
    blocks_.pop_front();
  }
  if (blocks_.size() == 1 && blocks_.front().live == 0) blocks_.front().used = 0;
}

void HeldFrames::pop_front() {
  release(entries_.front());
  entries_.pop_front();
  drop_gone_front();
}

void HeldFrames::drop_gone_front() {
  while (!entries_.empty() && entries_.front().gone) {
    release(entries_.front());
    entries_.pop_front();
  }
}

const HeldFrames::Entry* HeldFrames::find(std::uint64_t seq) const {
  // In seq order: a binary search.
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                                   [](const Entry& e, std::uint64_t s) { return e.seq < s; });
  if (it == entries_.end() || it->seq != seq || it->gone) return nullptr;
  return &*it;
}

std::optional<std::string> HeldFrames::copy(std::uint64_t seq) const {
  const Entry* e = find(seq);
  if (e == nullptr) return std::nullopt;
  return std::string(e->data, e->size);
}

std::size_t HeldFrames::erase(std::uint64_t seq) {
  Entry* e = const_cast<Entry*>(find(seq));
  if (e == nullptr) return 0;
  e->gone = true;
  const std::size_t size = e->size;
  drop_gone_front();
  return size;
}

}  // namespace relay::internal
