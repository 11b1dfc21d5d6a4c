// relay/internal/plan.h: what every process of a run knows about it.
//
// The plan is built in the driver before any actor starts. Local actors inherit
// it at fork; a worker on another host builds the same plan by running the same
// program, so actor ids agree everywhere.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "relay/internal/security.h"

namespace relay::internal {

// Default credit window per sender/receiver pair when no maxsize is given:
// 4096 messages, and 16 MiB. Small messages need many in flight for ZeroMQ's
// I/O threads to move them in large batches (1-1 16 B: 4096 moved about 1.4x
// as many per second as 1000, and more than 8192); large ones must not pile
// up (1000 x 1 MiB was a gigabyte per pair).
inline constexpr std::uint32_t kDefaultWindow = 4096;
inline constexpr std::uint64_t kDefaultWindowBytes = 16ull << 20;

// How long the start barrier may take: the broker stops the run if an actor
// has not said hello this long after it was forked (or assigned to a
// worker), and an actor gives up if it has no log subscription this long
// after it started (or no start frame within twice as long: the broker's
// deadline, which names the actors that never said hello, must come first,
// even when forking a large relay takes a while), or if a tcp connection to a
// receiver's data inbox is not made within it.
inline constexpr std::chrono::milliseconds kStartWait{30000};
// kStartWait, or RELAY_TESTING_START_WAIT_MS from the environment (for
// tests that prove the deadlines fire).
std::chrono::milliseconds start_wait();

struct ActorSlot {
  std::uint32_t id = 0;      // position in the relay, 0..n-1, group by group
  std::uint32_t group = 0;   // index of its group
  std::string name;
  std::string group_name;
};

struct GroupSlot {
  std::string name;
  std::uint32_t first = 0;  // id of its first actor
  std::uint32_t size = 0;
};

// How an edge picks its receivers (relay::Grouping, as a plain number so that
// this header needs no public one).
enum class EdgeGrouping : std::uint8_t { round_robin = 0, by_key = 1, broadcast = 2 };

// One edge of the graph: what group `from` sends to its output `output`
// ("" for the default one) travels to group `to`, grouped as `grouping`
// (by_key: on the message's value `key`). Edges are numbered by their order
// in Plan::edges, which is the order connect() made them in: that number
// travels on the data channel (in each sender's routing id) and in the
// accounting.
struct EdgeSlot {
  std::uint32_t from = 0;
  std::string output;
  std::uint32_t to = 0;
  EdgeGrouping grouping = EdgeGrouping::round_robin;
  std::uint32_t key = 0;
};

// At most this many edges: an edge number is two bytes on the wire.
inline constexpr std::size_t kMostEdges = 1u << 16;

// A relay::Queue alive when start() was called: puts name queues by id, so
// the driver and every worker must have made the same ones in the same order.
struct QueueSlot {
  std::uint64_t id = 0;
  std::optional<std::size_t> maxsize;
};

// A supervised group (Relay::restart(), relay::Restart): its failed actors
// are started again, and what they had not finished is delivered again.
struct Supervision {
  std::uint32_t max_restarts = 3;
  std::chrono::milliseconds within{60000};
  std::uint32_t attempts = 3;
  std::optional<std::uint64_t> dead_letters;  // a queue of Plan::queues
};

// A range of tcp ports, both ends included (Relay::ports()).
struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
};

struct Plan {
  std::vector<GroupSlot> groups;
  std::vector<ActorSlot> actors;
  std::vector<EdgeSlot> edges;
  // By group: set for a supervised one (empty, or one entry per group).
  std::vector<std::optional<Supervision>> supervision;
  std::optional<std::size_t> maxsize;
  // The queues alive at start(), by id (filled from the queue registry).
  std::vector<QueueSlot> queues;
  std::string control_endpoint;  // broker ROUTER: hello, puts, fail, bye
  std::string log_endpoint;      // broker SUB: log records
  std::string data_prefix;       // + actor id: a receiver's data ROUTER (local)
  std::string authkey;
  int driver_pid = 0;  // the process that forked this one's actors
  // The spawner that forks this host's restarted actors (runtime/spawner.h),
  // their parent instead of the driver; 0: none. A spawned actor sets it in
  // its own copy to getppid() (which Spawner has checked) before
  // run_actor_process().
  int spawner_pid = 0;

  // ---- Across hosts ----
  // Whether data endpoints are tcp (a run with workers): receivers bind
  // tcp://<data_host>:* and senders connect to what they report.
  bool distributed = false;
  std::string data_host;
  // The driver's broker endpoint for workers and remote actors (tcp).
  std::string listen_endpoint;
  // Where each actor runs: nothing for the driver's host, "" for any worker,
  // else a worker label.
  std::vector<std::optional<std::string>> placement;
  std::size_t expect_workers = 0;
  std::chrono::milliseconds worker_wait{30000};
  // Where the broker publishes logs, counters and the end of the run for
  // relay-monitor (empty: nowhere).
  std::string monitor_endpoint;
  // The cluster key: every socket uses CURVE when set.
  std::optional<CurveKey> key;
  // Relay::ports(): the range every receiver's tcp data inbox binds in, on
  // every host (the first free port of it). Unset: any free port.
  std::optional<PortRange> ports;
  // Where this process's broker binds its tcp log endpoint: the relay's
  // ports with an embedded broker, relay-broker's --ports when standalone
  // (a property of the broker's host, not of the relay: not in the
  // fingerprint, not sent).
  std::optional<PortRange> broker_ports;

  bool remote(std::uint32_t id) const { return id < placement.size() && placement[id]; }
  // Whether group `g` is supervised; whether any is.
  const Supervision* supervised_group(std::uint32_t g) const {
    return g < supervision.size() && supervision[g] ? &*supervision[g] : nullptr;
  }
  bool any_supervised() const {
    for (const auto& s : supervision) {
      if (s) return true;
    }
    return false;
  }

  // The edges leaving group `g` / entering it, as indexes into edges.
  std::vector<std::uint32_t> edges_from(std::uint32_t g) const;
  std::vector<std::uint32_t> edges_into(std::uint32_t g) const;
  // The outputs of group `g` that edges leave, in order of their first edge
  // ("" is the default output).
  std::vector<std::string> outputs(std::uint32_t g) const;
  // An edge, for people: "'parse' -> 'count'", "'parse'.'bad' -> 'errors'".
  std::string edge_name(std::uint32_t e) const;

  // The shape of the relay, for people: "src[1] -> work[4] -> sink[1]" for a
  // chain; a group with several outgoing edges lists them in braces, each
  // with its grouping and output: "src[1] -> parse[4] -> {count[3] by key,
  // errors[1] from 'bad'}"; a group met again is named without its size;
  // several sources are separated by "; ".
  std::string layout() const;
  // Everything a driver and its workers must agree on, part by part, each as
  // (name, text): "layout", "maxsize", "windows", "queues", "placement",
  // "ports" and "actor names".
  std::vector<std::pair<std::string, std::string>> parts() const;
  // The parts people need to tell two relays apart: "src[1] -> work[4] ->
  // sink[1]; maxsize 10; queues #1 (maxsize 5), #2; work on workers" (and
  // "; ports 7000-7010" when set).
  std::string describe() const;
  // A hash of parts(): a driver and a worker that built different relays
  // (other flags, another version of the program) disagree on it, and the
  // worker is turned away.
  std::uint64_t fingerprint() const;

  // Credits a sender holds for each receiver of edge `edge`: how many
  // messages may be sent on that pair and not yet taken by the receiver (a
  // receiver returns credit when it takes a message, before recv() runs).
  // With maxsize, a sender's credits over the receivers of a round-robin or
  // by_key edge add up to maxsize (at least one per receiver): a sender never
  // has more than max(maxsize, receivers) messages waiting on the edge, and an
  // edge with n senders holds at most n * max(maxsize, receivers) waiting
  // messages, plus one per receiver inside recv(). On a broadcast edge every
  // receiver gets every message, so each pair's window is maxsize: at most
  // maxsize messages of one sender wait at each receiver.
  std::uint32_t window(std::uint32_t edge) const;
  // Without maxsize, a pair's window is also bounded in bytes: a sender may
  // have at most this many bytes of frames waiting on one pair (and always at
  // least one message). 0 with maxsize: the bound is the user's, in messages.
  std::uint64_t window_bytes() const;
};

// Why the plan's edges do not make a directed acyclic graph over every group
// ("a cycle: 'a' -> 'b' -> 'a'", "group 'x' has no edge"), or nothing.
std::optional<std::string> check_graph(const Plan& plan);

// What a standalone broker (relay-broker) needs of a driver's plan: groups,
// edges, actors, placement, how many workers to expect and how long to wait for
// them, and what goes into the fingerprint besides (maxsize, the credit
// windows, queues, ports), so that the broker's agrees with the workers'.
// The driver packs it into its join; relay-broker unpacks it and adds its
// own endpoints and key. unpack_broker_plan() throws EncodeError on anything
// malformed or inconsistent, and for windows that this build would not
// compute from the same plan (a relay-broker of another version).
std::string pack_broker_plan(const Plan& plan);
Plan unpack_broker_plan(const char* data, std::size_t size);

}  // namespace relay::internal
