// relay/internal/held_frames.h: the frames a sender holds for a supervised
// receiver until that receiver has finished them, oldest first, so that its
// successor can be given them again (DESIGN.md, "Supervision").
//
// A pair holds up to two windows of frames and lets them go in the order they
// were sent, as finished credits come. Holding each in an allocation of its
// own cost a malloc and a free per supervised message; here small frames are
// packed one after another into blocks of kBlockBytes, a block is freed (or
// kept as the spare) once every frame in it has gone, and only a frame above
// kSmallAtMost is kept as a ZeroMQ message of its own, which a send then
// shares without copying its bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

namespace relay::internal {

class HeldFrames {
 public:
  static constexpr std::size_t kBlockBytes = 64 * 1024;
  static constexpr std::size_t kSmallAtMost = 8 * 1024;

  HeldFrames() = default;
  HeldFrames(HeldFrames&&) noexcept = default;
  HeldFrames& operator=(HeldFrames&&) noexcept = default;
  HeldFrames(const HeldFrames&) = delete;
  HeldFrames& operator=(const HeldFrames&) = delete;

  // Room for a frame of `size` bytes (> 0) numbered `seq`, which must be above
  // every seq held; the caller writes the frame there. The pointer stays valid
  // until the frame is popped or erased.
  char* push(std::uint64_t seq, std::size_t size);
  // The newest frame's message if it is kept as one (above kSmallAtMost),
  // else nullptr.
  const zmq::message_t* newest_message() const noexcept;

  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  std::uint64_t front_seq() const noexcept { return entries_.front().seq; }
  std::size_t front_size() const noexcept { return entries_.front().size; }
  void pop_front();

  // A copy of frame `seq`'s bytes, if it is held.
  std::optional<std::string> copy(std::uint64_t seq) const;
  // Lets frame `seq` go now, out of order (a dead letter); returns its size,
  // or 0 if it was not held.
  std::size_t erase(std::uint64_t seq);

  // Calls f(seq, data, size) for every frame held, oldest first.
  template <class F>
  void for_each(F&& f) const {
    for (const Entry& e : entries_) {
      if (!e.gone) f(e.seq, static_cast<const char*>(e.data), std::size_t{e.size});
    }
  }

 private:
  struct Block {
    std::unique_ptr<char[]> bytes;
    std::size_t used = 0;
    std::size_t live = 0;  // frames in it not yet let go
  };
  struct Entry {
    std::uint64_t seq;
    std::uint32_t size;
    bool gone;     // erased, and let go when it reaches the front
    Block* block;  // nullptr: the frame is the oldest of large_ not yet let go
    char* data;
  };
  const Entry* find(std::uint64_t seq) const;
  void release(const Entry& e);
  void drop_gone_front();

  std::deque<Entry> entries_;
  // References into a deque stay valid across push_back and pop_front.
  std::deque<Block> blocks_;
  std::unique_ptr<char[]> spare_;
  std::deque<zmq::message_t> large_;
};

}  // namespace relay::internal
