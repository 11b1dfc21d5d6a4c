// relay/internal/wire.h: the frames relay's processes exchange.
//
// Control channel: each actor's DEALER (routing id = 4-byte actor id) to the
// broker's ROUTER. One frame per message: a msgpack array whose first element
// is a Ctl kind.
//   hello   [1, id, pid, host, data_endpoint]        actor -> broker
//   put     [2, queue_id, bounded, bin message]      actor -> broker
//   fail    [3, text, log_count]                     actor -> broker
//   bye     [4, log_count, [[to, n]...], [[from, n]...], rejected]
//   stats   [6, sent, received, waiting]  every ~500 ms while busy
//           (waiting: credits in use, i.e. sent and not yet credited back;
//           credits return in batches of half a window, so up to that many
//           may show after everything arrived)
//   start   [101, [endpoint of each actor id]]       broker -> actor
//   put_ack [102, queue_id]                          broker -> actor
//   ack     [103]  (answers fail and bye, once every log record has arrived)
//   abort   [105, reason]
//
// Workers (routing id 'W' + 8 hex digits) on the same ROUTER:
//   whello  [20, host, [label...], pid, address, fingerprint, description,
//            [[part, text]...]]  (Plan::describe(), Plan::parts())
//           (Plan::fingerprint(): a worker whose relay differs is turned away)
//   wexit   [21, actor id, exitcode]                 worker -> broker
//   ping    [22] / [122]                             both ways, every 500 ms
//   assign  [120, [actor id...], control, log]       broker -> worker
//   end     [123, ok, reason]                        broker -> worker
//   wend    [23]  end taken; the broker repeats end until it has this
//   (abort  [105, reason] also goes to workers)
//
// A driver using a standalone relay-broker joins as a member of the same kind
// (routing id 'W' + 8 hex digits), runs the actors placed on its own host, and
// receives what an embedded broker would hand it directly:
//   dhello  [30, host, pid, address, plan]           driver -> broker
//   dabort  [31, reason, signal]  driver -> broker; signal 0: its handler threw
//   qack    [32, actor id, queue_id, error]  a bounded put is in the driver's
//           queue (error ""), or a put, bounded or not, the driver cannot
//           deliver: error says why, and the broker fails that actor
//   qput    [130, actor id, queue_id, bounded, bin message]  broker -> driver
//   dlog    [131, actor id, level, text]             broker -> driver
//   rended  [132, actor id, pid, exitcode]  an actor on a worker ended
//   result  [133, packed RunResult]  before end
//
// Log channel: each actor's XPUB to the broker's SUB; one msgpack frame
// [id, level, text] per record.
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

// Monitor stream (broker PUB -> relay-monitor SUB): two frames, a topic and a
// msgpack array.
//   "log"   [group, name, level, text, unix_ms]
//   "stats" [group, name, sent, received, waiting, unix_ms]
//   "end"   [ok, reason]

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
