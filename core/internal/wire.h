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
  whello = 20,
  wexit = 21,
  ping = 22,
  assign = 120,
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

// Exit status of an actor process that found its driver gone (nobody reaps
// it), or whose abort by SIGTERM did not take.
inline constexpr int kAbortedStatus = 3;

// Routing ids are the actor id as 4 big-endian bytes.
inline std::string routing_id(std::uint32_t id) {
  const char b[4] = {static_cast<char>(id >> 24), static_cast<char>(id >> 16),
                     static_cast<char>(id >> 8), static_cast<char>(id)};
  return std::string(b, 4);
}
inline std::optional<std::uint32_t> parse_routing_id(const void* data, std::size_t size) {
  if (size != 4) return std::nullopt;
  unsigned char b[4];
  std::memcpy(b, data, 4);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

// A sender's routing id on the data channel: its actor id and the edge.
inline std::string data_routing_id(std::uint32_t id, std::uint32_t edge) {
  return routing_id(id) + std::string{static_cast<char>(edge >> 8), static_cast<char>(edge)};
}
struct DataPeer {
  std::uint32_t id = 0;
  std::uint32_t edge = 0;
};
inline std::optional<DataPeer> parse_data_routing_id(const void* data, std::size_t size) {
  if (size != 6) return std::nullopt;
  const auto id = parse_routing_id(data, 4);
  unsigned char e[2];
  std::memcpy(e, static_cast<const char*>(data) + 4, 2);
  return DataPeer{*id, static_cast<std::uint32_t>(e[0]) << 8 | e[1]};
}

}  // namespace relay::internal
