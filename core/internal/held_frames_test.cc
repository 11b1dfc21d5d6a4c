#include "relay/internal/held_frames.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

using relay::internal::HeldFrames;

// Frame `seq` of `size` bytes: its seq's low byte, over and over.
std::string FrameOf(std::uint64_t seq, std::size_t size) {
  return std::string(size, static_cast<char>(seq & 0xff));
}

void Push(HeldFrames& held, std::uint64_t seq, std::size_t size) {
  const std::string f = FrameOf(seq, size);
  std::memcpy(held.push(seq, size), f.data(), size);
}

std::vector<std::pair<std::uint64_t, std::string>> Contents(const HeldFrames& held) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  held.for_each([&](std::uint64_t seq, const char* data, std::size_t size) {
    out.emplace_back(seq, std::string(data, size));
  });
  return out;
}

std::size_t SizeOf(std::uint64_t seq) { return 40 + seq % 41; }

// Enough frames to fill several blocks, let go in order while more come (the
// freed blocks are used again): every frame keeps its bytes until it goes.
TEST(HeldFrames, KeepsEveryFrameUntilItGoesAcrossBlocks) {
  HeldFrames held;
  std::uint64_t next = 1;
  for (; next <= 5000; ++next) Push(held, next, SizeOf(next));  // about 5 blocks
  for (std::uint64_t s = 1; s < next; ++s) {
    ASSERT_FALSE(held.empty());
    ASSERT_EQ(held.front_seq(), s);
    ASSERT_EQ(held.front_size(), SizeOf(s));
    ASSERT_EQ(held.copy(s), FrameOf(s, SizeOf(s))) << "frame " << s;
    held.pop_front();
    if (s % 1000 == 0 && next < 12000) {
      for (int k = 0; k < 1500; ++k, ++next) Push(held, next, SizeOf(next));
      for (std::uint64_t t = s + 1; t < next; t += 97) {
        ASSERT_EQ(held.copy(t), FrameOf(t, SizeOf(t))) << "frame " << t << " after " << s;
      }
    }
  }
  EXPECT_TRUE(held.empty());
  EXPECT_GT(next, 12000u);
}

TEST(HeldFrames, LargeFramesAreMessagesOfTheirOwn) {
  HeldFrames held;
  Push(held, 1, 100);
  EXPECT_EQ(held.newest_message(), nullptr);
  Push(held, 2, HeldFrames::kSmallAtMost + 1);
  const zmq::message_t* m = held.newest_message();
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->size(), HeldFrames::kSmallAtMost + 1);
  EXPECT_EQ(std::string(m->data<char>(), m->size()), FrameOf(2, HeldFrames::kSmallAtMost + 1));
  Push(held, 3, 50);
  EXPECT_EQ(held.newest_message(), nullptr);
  held.pop_front();
  held.pop_front();  // the large one
  EXPECT_EQ(held.front_seq(), 3u);
  EXPECT_EQ(held.copy(3), FrameOf(3, 50));
}

// A dead letter goes out of order; the others stay, in order, and the front
// is never a frame that went.
TEST(HeldFrames, EraseLetsOneGoOutOfOrder) {
  HeldFrames held;
  for (std::uint64_t s = 10; s < 20; ++s) Push(held, s, s == 15 ? 9000 : 64);
  EXPECT_EQ(held.erase(15), 9000u);
  EXPECT_EQ(held.erase(15), 0u) << "erased twice";
  EXPECT_EQ(held.erase(99), 0u) << "never held";
  EXPECT_FALSE(held.copy(15));
  EXPECT_EQ(held.erase(10), 64u);
  EXPECT_EQ(held.front_seq(), 11u) << "the front moved past what went";
  std::vector<std::uint64_t> seqs;
  for (const auto& [seq, bytes] : Contents(held)) {
    seqs.push_back(seq);
    EXPECT_EQ(bytes, FrameOf(seq, 64));
  }
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{11, 12, 13, 14, 16, 17, 18, 19}));
  for (std::uint64_t s = 11; s <= 14; ++s) held.pop_front();
  EXPECT_EQ(held.front_seq(), 16u) << "the erased one is skipped at the front";
  while (!held.empty()) held.pop_front();
  EXPECT_TRUE(Contents(held).empty());
}

}  // namespace
