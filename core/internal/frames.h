// relay/internal/frames.h: every control frame, log record and monitor record,
// one typed definition each. The data channel's frames ('D', 'E', 'C', 'A')
// are in wire.h.
//
// Each frame kind is a struct whose fields are named once, in order, by
// RELAY_FRAME_FIELDS; that list is both what encode() writes and what decode()
// reads, so adding a field touches one place. On the wire a control frame is
// a msgpack array [kind, fields...] (kind: the Ctl value as an integer), a log
// record or a monitor record the array [fields...].
//
// decode() is strict: the array must have exactly the fields of its kind, each
// of its exact msgpack type (an int field takes a msgpack integer that fits
// and nothing else, a string a str, a Bin a bin, a bool a bool: no
// conversion), and a control frame the kind asked for (decode_control(): any
// known kind). Anything else throws relay::EncodeError naming the frame and
// the field. Nothing here throws anything else but std::bad_alloc.
//
// Control channel: each actor's DEALER (routing id = 4-byte actor id) to the
// broker's ROUTER, one frame per message:
//   hello   [1, id, pid, host, data_endpoint]        actor -> broker
//   put     [2, queue_id, bounded, bin message]      actor -> broker
//   fail    [3, text, log_count]                     actor -> broker
//   bye     [4, log_count, [[[edge, to], n]...], [[[edge, from], n]...], rejected,
//            [n sent to each output of the group...], [[[edge, to], n settled]...],
//            [[[edge, to], n not sent again]...]]
//   stats   [6, sent, received, waiting, [[edge, [sent, waiting]]...],
//            [[edge, received]...], [[[edge, from], n]...], [[[edge, to], n]...]]
//           every ~500 ms while busy (totals, then per edge leaving and
//           entering the actor's group, then the pairs that restarts
//           touched: taken from a sender's earlier incarnations, and
//           settled by a receiver's earlier ones)
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
//   ping    [22] / pong [122]                        both ways, every 500 ms
//   assign  [120, [actor id...], control, log]       broker -> worker
//   end     [123, ok, reason]                        broker -> worker
//   wend    [23]  end taken; the broker repeats end until it has this
//   (abort  [105, reason] also goes to workers)
//
// A driver using a standalone relay-broker joins as a member of the same kind
// (routing id 'W' + 8 hex digits), runs the actors placed on its own host, and
// receives what an embedded broker would hand it directly:
//   dhello  [30, host, pid, address, bin plan]       driver -> broker
//   dabort  [31, reason, signal]  driver -> broker; signal 0: its handler threw
//   qack    [32, actor id, queue_id, error]  a bounded put is in the driver's
//           queue (error ""), or a put, bounded or not, the driver cannot
//           deliver: error says why, and the broker fails that actor
//   qput    [130, actor id, queue_id, bounded, bin message]  broker -> driver
//   dlog    [131, actor id, level, text]             broker -> driver
//   rended  [132, actor id, pid, exitcode]  an actor on a worker ended
//   result  [133, bin packed RunResult]  before end
//
// Log channel: each actor's XPUB to the broker's SUB; one frame per record:
//   [id, level, text]
//
// Monitor stream (broker PUB -> relay-monitor SUB): two frames, the topic and
// the record:
//   "log"   [group, name, level, text, unix_ms]
//   "stats" [group, name, sent, received, waiting, unix_ms]
//   "edge"  [edge name, sent, received, waiting, unix_ms]  totals of one edge
//   "plan"  [layout, [[group, size]...], [[edge name, from, output, to,
//            grouping, key, window]...], [actor...], window_bytes, unix_ms]
//           to each new subscriber (and at the start barrier): the graph,
//           and every actor as an "actor" record has it
//   "actor" [id, group, name, host, pid, state, incarnation, restarts, unix_ms]
//           whenever an actor's host, pid or state changes
//   "end"   [ok, reason]
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/wire.h"

namespace relay::internal {

// Bytes carried as msgpack bin, not copied: when encoding they point at the
// caller's, when decoded into the zone given to decode(), which must outlive
// them.
struct Bin {
  std::string_view bytes;
  bool operator==(const Bin& other) const { return bytes == other.bytes; }
};

// Inside a frame struct: names its fields, in wire order (and gives it ==).
#define RELAY_FRAME_FIELDS(Type, ...)                   \
  bool operator==(const Type&) const = default;         \
  auto fields() { return std::tie(__VA_ARGS__); }       \
  auto fields() const { return std::tie(__VA_ARGS__); } \
  static constexpr const char* kFieldNames = #__VA_ARGS__

// ---- actor <-> broker ----

struct Hello {
  static constexpr Ctl kKind = Ctl::hello;
  static constexpr const char* kName = "hello";
  std::uint32_t id = 0;
  int pid = 0;
  std::string host;
  std::string data_endpoint;
  std::uint32_t incarnation = 0;  // 0, then 1, 2, ... for each restart
  RELAY_FRAME_FIELDS(Hello, id, pid, host, data_endpoint, incarnation);
};

struct Put {
  static constexpr Ctl kKind = Ctl::put;
  static constexpr const char* kName = "put";
  std::uint64_t queue_id = 0;
  bool bounded = false;
  Bin message;  // a packed message (codec.h)
  Bin origin;   // empty, or (from a supervised actor inside recv()) an Origin (dedup.h)
  RELAY_FRAME_FIELDS(Put, queue_id, bounded, message, origin);
};

struct Fail {
  static constexpr Ctl kKind = Ctl::fail;
  static constexpr const char* kName = "fail";
  std::string text;
  std::uint64_t log_count = 0;
  RELAY_FRAME_FIELDS(Fail, text, log_count);
};

// Per pair of an edge, (edge, peer actor id), how many data messages.
using EdgeCounts =
    std::vector<std::pair<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t>>;

struct Bye {
  static constexpr Ctl kKind = Ctl::bye;
  static constexpr const char* kName = "bye";
  std::uint64_t log_count = 0;
  EdgeCounts sent;      // [[edge, to], n]
  EdgeCounts received;  // [[edge, from], n]
  std::uint64_t rejected = 0;
  // Messages sent to each output of the actor's group (Plan::outputs()).
  std::vector<std::uint64_t> outputs;
  // Per pair to a supervised receiver that was restarted: [[edge, to], n],
  // the messages finished by its earlier incarnations or dead letters (not
  // sent again, so not in the receiver's count).
  EdgeCounts settled;
  // Per pair, from a restarted actor: [[edge, to], n], the messages it did
  // not send again because the receiver had taken them from a predecessor
  // (for a round-robin edge, counted at one receiver of the edge). Counted in
  // `outputs`, not in `sent`.
  EdgeCounts not_sent;
  RELAY_FRAME_FIELDS(Bye, log_count, sent, received, rejected, outputs, settled, not_sent);
};

// Per edge leaving the actor's group: (edge, (sent, waiting)); per edge
// entering it: (edge, received).
using EdgesOut = std::vector<std::pair<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>>>;
using EdgesIn = std::vector<std::pair<std::uint32_t, std::uint64_t>>;

// The counters of one process: they start at 0 in each incarnation. `before`
// and `settled` let the broker count over incarnations (the monitor's
// counts): per pair entering the actor's group whose sender was restarted,
// [[edge, from], n], the messages taken from that sender's earlier
// incarnations (in `received` and `in` too, not in the sender's counts);
// per pair to a supervised receiver that was restarted, [[edge, to], n],
// those finished by its earlier incarnations, or dead letters (as Bye's
// `settled`: in `sent`, not in the receiver's counts). Pairs with 0 are
// left out.
struct Stats {
  static constexpr Ctl kKind = Ctl::stats;
  static constexpr const char* kName = "stats";
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t waiting = 0;
  EdgesOut out;
  EdgesIn in;
  EdgeCounts before;
  EdgeCounts settled;
  RELAY_FRAME_FIELDS(Stats, sent, received, waiting, out, in, before, settled);
};

// A message a sender holds for a restarted receiver that is not to be
// delivered again: ((sender, its incarnation), ((edge, seq), reason)).
using DeadLetter =
    std::pair<std::pair<std::uint32_t, std::uint32_t>,
              std::pair<std::pair<std::uint32_t, std::uint64_t>, std::string>>;

// To every running actor: actor `actor` was started again as `incarnation`
// and its data inbox is at `endpoint`. Its senders resume each pair to it
// ('R', then what it had not finished); those named in `dead` drop that
// message and put it to the group's dead letters.
struct Restarted {
  static constexpr Ctl kKind = Ctl::restarted;
  static constexpr const char* kName = "restarted";
  std::uint32_t actor = 0;
  std::uint32_t incarnation = 0;
  std::string endpoint;
  std::vector<DeadLetter> dead;
  RELAY_FRAME_FIELDS(Restarted, actor, incarnation, endpoint, dead);
};

struct Start {
  static constexpr Ctl kKind = Ctl::start;
  static constexpr const char* kName = "start";
  std::vector<std::string> endpoints;  // by actor id
  std::vector<std::uint32_t> incarnations;  // by actor id: each one's current one
  // To a restarted actor: the origins of the puts the broker took from its
  // predecessors (DedupTable::flat()), not to be put again.
  std::vector<std::uint64_t> taken;
  RELAY_FRAME_FIELDS(Start, endpoints, incarnations, taken);
};

struct PutAck {
  static constexpr Ctl kKind = Ctl::put_ack;
  static constexpr const char* kName = "put_ack";
  std::uint64_t queue_id = 0;
  RELAY_FRAME_FIELDS(PutAck, queue_id);
};

struct Ack {
  static constexpr Ctl kKind = Ctl::ack;
  static constexpr const char* kName = "ack";
  RELAY_FRAME_FIELDS(Ack);
};

struct Abort {
  static constexpr Ctl kKind = Ctl::abort;
  static constexpr const char* kName = "abort";
  std::string reason;
  RELAY_FRAME_FIELDS(Abort, reason);
};

// ---- worker <-> broker ----

struct WHello {
  static constexpr Ctl kKind = Ctl::whello;
  static constexpr const char* kName = "whello";
  std::string host;
  std::vector<std::string> labels;
  int pid = 0;
  std::string address;
  std::uint64_t fingerprint = 0;
  std::string description;
  std::vector<std::pair<std::string, std::string>> parts;
  RELAY_FRAME_FIELDS(WHello, host, labels, pid, address, fingerprint, description, parts);
};

// An actor of the worker's ended. For a supervised one, also what its
// in-flight slot (runtime/inflight.h) said it was inside recv() with: the
// supervisor counts that message's attempts (in_recv false: nothing).
struct WExit {
  static constexpr Ctl kKind = Ctl::wexit;
  static constexpr const char* kName = "wexit";
  std::uint32_t actor = 0;
  std::uint32_t incarnation = 0;
  int exitcode = 0;
  bool in_recv = false;
  std::uint32_t edge = 0;
  std::uint32_t sender = 0;
  std::uint32_t sender_incarnation = 0;
  std::uint64_t seq = 0;
  std::uint32_t size = 0;
  Bin head;
  RELAY_FRAME_FIELDS(WExit, actor, incarnation, exitcode, in_recv, edge, sender,
                     sender_incarnation, seq, size, head);
};

struct Ping {
  static constexpr Ctl kKind = Ctl::ping;
  static constexpr const char* kName = "ping";
  RELAY_FRAME_FIELDS(Ping);
};

struct Pong {
  static constexpr Ctl kKind = Ctl::pong;
  static constexpr const char* kName = "pong";
  RELAY_FRAME_FIELDS(Pong);
};

struct Assign {
  static constexpr Ctl kKind = Ctl::assign;
  static constexpr const char* kName = "assign";
  std::vector<std::uint32_t> actors;
  std::string control;
  std::string log;
  RELAY_FRAME_FIELDS(Assign, actors, control, log);
};

// Supervision: the worker starts actor `actor` as `incarnation` (a restart,
// or an actor whose host was lost, re-placed here) through its spawner.
struct Spawn {
  static constexpr Ctl kKind = Ctl::spawn;
  static constexpr const char* kName = "spawn";
  std::uint32_t actor = 0;
  std::uint32_t incarnation = 0;
  RELAY_FRAME_FIELDS(Spawn, actor, incarnation);
};

struct End {
  static constexpr Ctl kKind = Ctl::end;
  static constexpr const char* kName = "end";
  bool ok = false;
  std::string reason;
  RELAY_FRAME_FIELDS(End, ok, reason);
};

struct WEnd {
  static constexpr Ctl kKind = Ctl::wend;
  static constexpr const char* kName = "wend";
  RELAY_FRAME_FIELDS(WEnd);
};

// ---- driver <-> standalone broker ----

struct DHello {
  static constexpr Ctl kKind = Ctl::dhello;
  static constexpr const char* kName = "dhello";
  std::string host;
  int pid = 0;
  std::string address;
  Bin plan;  // pack_broker_plan()
  RELAY_FRAME_FIELDS(DHello, host, pid, address, plan);
};

struct DAbort {
  static constexpr Ctl kKind = Ctl::dabort;
  static constexpr const char* kName = "dabort";
  std::string reason;
  int signal = 0;  // 0: the driver's handler threw
  RELAY_FRAME_FIELDS(DAbort, reason, signal);
};

struct QAck {
  static constexpr Ctl kKind = Ctl::qack;
  static constexpr const char* kName = "qack";
  std::uint32_t actor = 0;
  std::uint64_t queue_id = 0;
  std::string error;  // "": the bounded put is in
  RELAY_FRAME_FIELDS(QAck, actor, queue_id, error);
};

struct QPut {
  static constexpr Ctl kKind = Ctl::qput;
  static constexpr const char* kName = "qput";
  std::uint32_t actor = 0;
  std::uint64_t queue_id = 0;
  bool bounded = false;
  Bin message;
  RELAY_FRAME_FIELDS(QPut, actor, queue_id, bounded, message);
};

struct DLog {
  static constexpr Ctl kKind = Ctl::dlog;
  static constexpr const char* kName = "dlog";
  std::uint32_t actor = 0;
  std::uint8_t level = 0;
  std::string text;
  RELAY_FRAME_FIELDS(DLog, actor, level, text);
};

struct REnded {
  static constexpr Ctl kKind = Ctl::rended;
  static constexpr const char* kName = "rended";
  std::uint32_t actor = 0;
  int pid = 0;
  int exitcode = 0;
  RELAY_FRAME_FIELDS(REnded, actor, pid, exitcode);
};

struct Result {
  static constexpr Ctl kKind = Ctl::result;
  static constexpr const char* kName = "result";
  Bin result;  // broker::pack_result()
  RELAY_FRAME_FIELDS(Result, result);
};

// Any control frame.
using ControlFrame =
    std::variant<Hello, Put, Fail, Bye, Stats, Start, PutAck, Ack, Abort, WHello, WExit, Ping, Pong,
                 Assign, End, WEnd, DHello, DAbort, QAck, QPut, DLog, REnded, Result,
                 Restarted, Spawn>;

// ---- log channel ----

struct LogRecord {
  static constexpr const char* kName = "log record";
  std::uint32_t id = 0;
  std::uint8_t level = 0;  // relay::Level
  std::string text;
  RELAY_FRAME_FIELDS(LogRecord, id, level, text);
};

// ---- monitor stream ----

struct MonitorLog {
  static constexpr const char* kTopic = "log";
  static constexpr const char* kName = "monitor log record";
  std::string group;
  std::string name;
  std::uint8_t level = 0;
  std::string text;
  std::int64_t unix_ms = 0;
  RELAY_FRAME_FIELDS(MonitorLog, group, name, level, text, unix_ms);
};

struct MonitorStats {
  static constexpr const char* kTopic = "stats";
  static constexpr const char* kName = "monitor stats record";
  std::string group;
  std::string name;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t waiting = 0;
  std::int64_t unix_ms = 0;
  RELAY_FRAME_FIELDS(MonitorStats, group, name, sent, received, waiting, unix_ms);
};

// The totals of one edge over all its pairs, published with each stats
// report of an actor at either end.
struct MonitorEdge {
  static constexpr const char* kTopic = "edge";
  static constexpr const char* kName = "monitor edge record";
  std::string edge;  // Plan::edge_name(): "'parse'.'bad' -> 'errors'"
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t waiting = 0;
  std::int64_t unix_ms = 0;
  RELAY_FRAME_FIELDS(MonitorEdge, edge, sent, received, waiting, unix_ms);
};

// What the broker knows of one actor: published whenever its host, pid or
// state changes, and inside every plan record.
struct MonitorActor {
  static constexpr const char* kTopic = "actor";
  static constexpr const char* kName = "monitor actor record";
  std::uint32_t id = 0;
  std::string group;
  std::string name;
  std::string host;   // "" until it said hello
  int pid = 0;        // 0 until it said hello
  std::string state;  // one of kActorStates
  // Which run of the actor this is (0: the first) and how often it was
  // restarted; both 0 as long as actors are not restarted.
  std::uint32_t incarnation = 0;
  std::uint32_t restarts = 0;
  std::int64_t unix_ms = 0;
  RELAY_FRAME_FIELDS(MonitorActor, id, group, name, host, pid, state, incarnation, restarts,
                     unix_ms);
};

// An actor's states: "starting" (forked or assigned, not yet past the start
// barrier), "running", "restarting", then one of "ended" (its stream ended
// cleanly), "failed" (it reported a failure or died), "stopped" (the run
// was stopped under it).
inline constexpr const char* kActorStates[] = {"starting", "running", "restarting",
                                               "ended",    "failed",  "stopped"};
inline bool known_actor_state(std::string_view state) {
  for (const char* s : kActorStates) {
    if (state == s) return true;
  }
  return false;
}

struct MonitorPlanGroup {
  static constexpr const char* kName = "monitor plan group";
  std::string name;
  std::uint32_t size = 0;
  RELAY_FRAME_FIELDS(MonitorPlanGroup, name, size);
};

struct MonitorPlanEdge {
  static constexpr const char* kName = "monitor plan edge";
  std::string name;    // Plan::edge_name(), as in the "edge" records
  std::string from;    // group names
  std::string output;  // "" for the default output
  std::string to;
  std::uint8_t grouping = 0;  // EdgeGrouping: 0 round robin, 1 by key, 2 broadcast
  std::uint32_t key = 0;      // by key: the value index
  std::uint32_t window = 0;   // Plan::window(): credits per (sender, receiver) pair
  RELAY_FRAME_FIELDS(MonitorPlanEdge, name, from, output, to, grouping, key, window);
};

// The whole graph, so that a monitor that subscribes late learns it.
struct MonitorPlan {
  static constexpr const char* kTopic = "plan";
  static constexpr const char* kName = "monitor plan record";
  std::string layout;  // Plan::layout(): "src[1] -> work[4] -> sink[1]"
  std::vector<MonitorPlanGroup> groups;
  std::vector<MonitorPlanEdge> edges;
  std::vector<MonitorActor> actors;  // by id
  std::uint64_t window_bytes = 0;    // Plan::window_bytes()
  std::int64_t unix_ms = 0;
  RELAY_FRAME_FIELDS(MonitorPlan, layout, groups, edges, actors, window_bytes, unix_ms);
};

struct MonitorEnd {
  static constexpr const char* kTopic = "end";
  static constexpr const char* kName = "monitor end record";
  bool ok = false;
  std::string reason;
  RELAY_FRAME_FIELDS(MonitorEnd, ok, reason);
};

#undef RELAY_FRAME_FIELDS

namespace frames_internal {

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};
template <class T>
inline constexpr bool always_false = false;
template <class F, class = void>
struct has_kind : std::false_type {};
template <class F>
struct has_kind<F, std::void_t<decltype(F::kKind)>> : std::true_type {};
// A frame struct nested in another (the plan record's groups, edges, actors):
// an array of its fields, as a record.
template <class T, class = void>
struct has_fields : std::false_type {};
template <class T>
struct has_fields<T, std::void_t<decltype(std::declval<const T&>().fields())>> : std::true_type {};

template <class T>
void write_field(msgpack::packer<Buffer>& pk, const T& v) {
  if constexpr (std::is_same_v<T, Bin>) {
    pk.pack_bin(static_cast<std::uint32_t>(v.bytes.size()));
    pk.pack_bin_body(v.bytes.data(), static_cast<std::uint32_t>(v.bytes.size()));
  } else if constexpr (is_vector<T>::value) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& e : v) write_field(pk, e);
  } else if constexpr (is_pair<T>::value) {
    pk.pack_array(2);
    write_field(pk, v.first);
    write_field(pk, v.second);
  } else if constexpr (std::is_integral_v<T> || std::is_same_v<T, std::string>) {
    pk.pack(v);  // bool as bool, integers as the smallest msgpack integer
  } else if constexpr (has_fields<T>::value) {
    const auto fields = v.fields();
    pk.pack_array(static_cast<std::uint32_t>(std::tuple_size_v<decltype(fields)>));
    std::apply([&](const auto&... field) { (write_field(pk, field), ...); }, fields);
  } else {
    static_assert(always_false<T>, "no wire form for this field type");
  }
}

// "an unsigned integer (uint32)" style: what a field of type T takes.
template <class T>
std::string expected_type() {
  if constexpr (std::is_same_v<T, Bin>) {
    return "bin";
  } else if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "str";
  } else if constexpr (is_vector<T>::value || is_pair<T>::value || has_fields<T>::value) {
    return "array";
  } else {
    return std::string("integer (") + type_name<T>() + ")";
  }
}

[[noreturn]] void wrong_type(const std::string& expected, const msgpack::object& o);
[[noreturn]] void out_of_range(const msgpack::object& o, const std::string& type);

template <class F>
void read_frame(const msgpack::object& o, F& f);

// Reads one field strictly; throws EncodeError saying what is wrong.
template <class T>
void read_field(const msgpack::object& o, T& v) {
  using msgpack::type::object_type;
  if constexpr (std::is_same_v<T, Bin>) {
    if (o.type != object_type::BIN) wrong_type(expected_type<T>(), o);
    v.bytes = std::string_view(o.via.bin.ptr, o.via.bin.size);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (o.type != object_type::BOOLEAN) wrong_type(expected_type<T>(), o);
    v = o.via.boolean;
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (o.type != object_type::STR) wrong_type(expected_type<T>(), o);
    v.assign(o.via.str.ptr, o.via.str.size);
  } else if constexpr (std::is_integral_v<T>) {
    if (o.type == object_type::POSITIVE_INTEGER) {
      if constexpr (sizeof(T) < sizeof(std::uint64_t) || std::is_signed_v<T>) {
        if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
          out_of_range(o, type_name<T>());
        }
      }
      v = static_cast<T>(o.via.u64);
    } else if (o.type == object_type::NEGATIVE_INTEGER) {
      if constexpr (std::is_signed_v<T>) {
        if constexpr (sizeof(T) < sizeof(std::int64_t)) {
          if (o.via.i64 < static_cast<std::int64_t>(std::numeric_limits<T>::min())) {
            out_of_range(o, type_name<T>());
          }
        }
        v = static_cast<T>(o.via.i64);
      } else {
        out_of_range(o, type_name<T>());
      }
    } else {
      wrong_type(expected_type<T>(), o);
    }
  } else if constexpr (is_vector<T>::value) {
    if (o.type != object_type::ARRAY) wrong_type(expected_type<T>(), o);
    v.clear();
    v.resize(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      try {
        read_field(o.via.array.ptr[i], v[i]);
      } catch (const EncodeError& e) {
        throw EncodeError("element " + std::to_string(i) + ": " + e.what());
      }
    }
  } else if constexpr (is_pair<T>::value) {
    if (o.type != object_type::ARRAY || o.via.array.size != 2) {
      wrong_type("array of 2", o);
    }
    read_field(o.via.array.ptr[0], v.first);
    read_field(o.via.array.ptr[1], v.second);
  } else if constexpr (has_fields<T>::value) {
    read_frame(o, v);
  } else {
    static_assert(always_false<T>, "no wire form for this field type");
  }
}

// The name of field `index` in a RELAY_FRAME_FIELDS list "a, b, c".
std::string field_name(const char* names, std::size_t index);

// Reads a control frame's kind (its first element), strictly.
Ctl read_kind(const msgpack::object& o);

// The array of a frame, checked: an array of exactly `fields` elements.
const msgpack::object* frame_array(const msgpack::object& o, std::size_t fields, const char* name);

template <class F>
void read_frame(const msgpack::object& o, F& f) {
  auto fields = f.fields();
  constexpr std::size_t n = std::tuple_size_v<decltype(fields)>;
  constexpr std::size_t skip = has_kind<F>::value ? 1 : 0;
  const msgpack::object* a = frame_array(o, n + skip, F::kName);
  if constexpr (has_kind<F>::value) {
    if (read_kind(a[0]) != F::kKind) {
      throw EncodeError(std::string("not a ") + F::kName + " frame but kind " +
                        std::to_string(static_cast<unsigned>(read_kind(a[0]))));
    }
  }
  std::size_t i = 0;
  auto one = [&](auto& field) {
    try {
      read_field(a[skip + i], field);
    } catch (const EncodeError& e) {
      throw EncodeError(std::string(F::kName) + ": field '" + field_name(F::kFieldNames, i) +
                        "': " + e.what());
    }
    ++i;
  };
  std::apply([&](auto&... field) { (one(field), ...); }, fields);
}

}  // namespace frames_internal

// Appends the frame to `out`.
template <class F>
void encode(Buffer& out, const F& f) {
  msgpack::packer<Buffer> pk(out);
  const auto fields = f.fields();
  constexpr std::size_t n = std::tuple_size_v<decltype(fields)>;
  if constexpr (frames_internal::has_kind<F>::value) {
    pk.pack_array(static_cast<std::uint32_t>(n + 1));
    pk.pack(static_cast<std::uint8_t>(F::kKind));
  } else {
    pk.pack_array(static_cast<std::uint32_t>(n));
  }
  std::apply([&](const auto&... field) { (frames_internal::write_field(pk, field), ...); }, fields);
}

// Returns the frame's bytes.
template <class F>
std::string encode(const F& f) {
  Buffer b;
  encode(b, f);
  return std::string(b.data(), b.size());
}

// Decodes a frame of kind F from `data` (exactly one msgpack value, with
// decode_value()'s limits). Bin fields point into `zone`. Throws EncodeError.
template <class F>
F decode(msgpack::zone& zone, const char* data, std::size_t size) {
  const msgpack::object o = decode_value(zone, data, size);
  F f;
  frames_internal::read_frame(o, f);
  return f;
}

// Decodes a control frame of any kind. Bin fields point into `zone`. Throws
// EncodeError, also for a kind that is not a Ctl.
ControlFrame decode_control(msgpack::zone& zone, const char* data, std::size_t size);
// The same for an already decoded value.
ControlFrame decode_control(const msgpack::object& o);

// Returns the frame's kind.
Ctl kind_of(const ControlFrame& frame);
// Returns the frame's name: "hello", "put"...
const char* name_of(const ControlFrame& frame);

}  // namespace relay::internal
