// relay/internal/wire.h: the frames relay's processes exchange: the data
// channel's here, the others in frames.h.
//
// Control channel (each actor's DEALER to the broker's ROUTER; workers and a
// standalone broker's driver on the same ROUTER), log channel (each actor's
// XPUB to the broker's SUB) and monitor stream (broker PUB -> relay-monitor
// SUB): every frame kind is defined, with its fields, in frames.h. A control
// frame is a msgpack array whose first element is a Ctl kind (below).
//
// Data channel: a sender's DEALER per edge and receiver (routing id = its
// actor id, 4 bytes, then the edge number, 2 bytes: data_routing_id()) to the
// receiver's ROUTER, so that every count below is per pair of one edge. One
// frame, whose first byte is its kind:
//   'D' + msgpack array   a message              sender -> receiver
//   'E' + msgpack uint    end of stream: how many 'D' were sent on this pair
//   'C' + msgpack uint    credits: the total number of 'D' the receiver has
//                         taken from this sender so far (cumulative, so a lost
//                         one is made good by the next; the sender credits the
//                         difference from the last total it saw)
//   'A'                   end of stream taken: every 'D' before it was read (the
//                         broker, not the receiver, checks the counts)
//   'B' + count (2 bytes, big-endian) + count x (length (2 bytes) + frame)
//                         a batch: `count` (>= 1) small message frames ('D',
//                         or 'O' and 'S' below) of one pair in one ZeroMQ
//                         frame, each taken as if it had come alone (credits,
//                         end of stream and accounting count messages, not
//                         frames). A frame that is not exactly this (a wrong
//                         count, a truncated member, bytes after the last) is
//                         refused whole; a member that is not a message frame
//                         is refused alone
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace relay::internal {

enum class Ctl : std::uint8_t {
  hello = 1,
  put = 2,
  fail = 3,
  bye = 4,
  stats = 6,
  start = 101,
  put_ack = 102,
  ack = 103,
  abort = 105,
  restarted = 106,
  whello = 20,
  wexit = 21,
  ping = 22,
  assign = 120,
  spawn = 121,
  pong = 122,
  end = 123,
  wend = 23,
  dhello = 30,
  dabort = 31,
  qack = 32,
  qput = 130,
  dlog = 131,
  rended = 132,
  result = 133,
};

// How often workers and the broker tell each other they are alive, and how
// long a silence means the other side is gone.
inline constexpr std::chrono::milliseconds kPingPeriod{500};
inline constexpr std::chrono::milliseconds kHostTimeout{2500};

inline constexpr char kData = 'D';
inline constexpr char kEos = 'E';
inline constexpr char kCredit = 'C';
inline constexpr char kEosAck = 'A';
inline constexpr char kBatch = 'B';
inline constexpr std::size_t kBatchHeader = 3;  // 'B', count
// A sender batches frames of at most this many bytes, and at most this many
// frames or (about) this many bytes in one batch.
inline constexpr std::size_t kBatchMemberAtMost = 4096;
inline constexpr std::uint32_t kBatchCountAtMost = 256;
inline constexpr std::size_t kBatchBytesAtMost = 32768;
// Pairs whose receiver is supervised (Relay::restart()) carry sequence
// numbers, so that a restarted receiver is given again what it had not
// finished, and takes nothing twice:
//   'S' + seq (8 bytes, big-endian) + flags (1 byte) + msgpack array
//                         a message, numbered from 1 on the pair; flag 1: a
//                         delivery again (Message::redelivered())
//   'R' + msgpack [incarnation, base, [skipped seq...]]
//                         to a restarted receiver (that incarnation): what
//                         follows starts after seq `base`; earlier frames of
//                         the pair are not taken; the skipped seqs are dead
//                         letters and do not come
//   'C' + msgpack uint + msgpack uint + msgpack uint
//                         credits on such a pair: the seq up to which every
//                         message was taken, the receiver's incarnation, and
//                         the seq up to which every message is finished (its
//                         recv() returned, and what it sent was taken)
// A supervised receiver acknowledges end of stream ('A') only once its own
// stream has ended, so that its senders keep what they sent until then.
// From a supervised actor, each message carries its origin (internal/dedup.h,
// 28 bytes; outside recv() a loop origin): after the 'S' header when flag 2
// is set, or as
//   'O' + origin + msgpack array   a message, to an unsupervised receiver
// A restarted one asks each receiver what it took from its predecessors:
//   'Q'                            sender -> receiver
//   'L' + msgpack [uint...]        receiver -> sender: DedupTable::flat()
inline constexpr char kOriginData = 'O';
inline constexpr char kQuery = 'Q';
inline constexpr char kTakenList = 'L';
inline constexpr std::uint8_t kFlagOrigin = 2;
inline constexpr char kSeqData = 'S';
inline constexpr char kResume = 'R';
inline constexpr std::size_t kSeqHeader = 10;  // 'S', seq, flags
inline constexpr std::uint8_t kFlagRedelivered = 1;

// Exit status of an actor process that found its driver gone (nobody reaps
// it), or whose abort by SIGTERM did not take.
inline constexpr int kAbortedStatus = 3;

// Routing ids are the actor id as 4 big-endian bytes, then, for an actor
// started again by its supervisor (incarnation 1 on), the incarnation as 4
// more: a restarted actor's connections must not be taken for its
// predecessor's, which ZeroMQ may not have seen close yet.
inline std::string be32(std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  return std::string(b, 4);
}
inline std::uint32_t read_be32(const void* data) {
  unsigned char b[4];
  std::memcpy(b, data, 4);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}
inline void write_be32(char* out, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (24 - 8 * i));
}
inline void write_be64(char* out, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (56 - 8 * i));
}
inline std::uint64_t read_be64(const char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline void write_be16(char* out, std::uint16_t v) noexcept {
  out[0] = static_cast<char>(v >> 8);
  out[1] = static_cast<char>(v);
}
inline std::uint16_t read_be16(const char* p) noexcept {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(p[0]) << 8 |
                                    static_cast<unsigned char>(p[1]));
}

// The number of members of batch frame p[0, size) ('B' first), or nothing if
// it is not exactly one: every member's length checked against what is left,
// and nothing after the last. Members are not decoded.
inline std::optional<std::uint16_t> batch_count(const char* p, std::size_t size) noexcept {
  if (size < kBatchHeader || p[0] != kBatch) return std::nullopt;
  const std::uint16_t count = read_be16(p + 1);
  if (count == 0) return std::nullopt;
  std::size_t at = kBatchHeader;
  for (std::uint16_t i = 0; i < count; ++i) {
    if (size - at < 2) return std::nullopt;
    const std::size_t n = read_be16(p + at);
    at += 2;
    if (n == 0 || size - at < n) return std::nullopt;
    at += n;
  }
  if (at != size) return std::nullopt;
  return count;
}

inline std::string routing_id(std::uint32_t id, std::uint32_t incarnation = 0) {
  return incarnation == 0 ? be32(id) : be32(id) + be32(incarnation);
}
inline std::optional<std::uint32_t> parse_routing_id(const void* data, std::size_t size) {
  if (size != 4) return std::nullopt;
  return read_be32(data);
}
struct ActorPeer {
  std::uint32_t id = 0;
  std::uint32_t incarnation = 0;
};
inline std::optional<ActorPeer> parse_actor_routing_id(const void* data, std::size_t size) {
  if (size != 4 && size != 8) return std::nullopt;
  const auto* p = static_cast<const char*>(data);
  return ActorPeer{read_be32(p), size == 8 ? read_be32(p + 4) : 0};
}

// A sender's routing id on the data channel: its actor id, the edge (2
// bytes), and from incarnation 1 on its incarnation (4 bytes).
inline std::string data_routing_id(std::uint32_t id, std::uint32_t edge,
                                   std::uint32_t incarnation = 0) {
  std::string rid = be32(id) + std::string{static_cast<char>(edge >> 8), static_cast<char>(edge)};
  return incarnation == 0 ? rid : rid + be32(incarnation);
}

struct DataPeer {
  std::uint32_t id = 0;
  std::uint32_t edge = 0;
  std::uint32_t incarnation = 0;
};

inline std::optional<DataPeer> parse_data_routing_id(const void* data, std::size_t size) {
  if (size != 6 && size != 10) return std::nullopt;
  const auto* p = static_cast<const char*>(data);
  unsigned char e[2];
  std::memcpy(e, p + 4, 2);
  return DataPeer{read_be32(p), static_cast<std::uint32_t>(e[0]) << 8 | e[1],
                  size == 10 ? read_be32(p + 6) : 0};
}

}  // namespace relay::internal
