// broker/broker.h: the owner of a run's fabric.
//
// The broker binds the control endpoint (a ROUTER every actor's DEALER joins)
// and the log endpoint (a SUB every actor's XPUB joins). It
//   - holds the start barrier: once every actor said hello it sends each the
//     table of data endpoints, so senders connect straight to receivers;
//   - delivers queue puts to the owning process and acknowledges bounded ones
//     only when there is room; a put that can never be delivered (see
//     internal::Delivery) fails the actor that made it, which stops the run;
//   - writes every log record with spdlog, prefixed "[group] (name)";
//   - acknowledges an actor's bye (end of run, with its counts) or failure
//     report only once every log record it announced has arrived, so nothing
//     is lost when the actor exits;
//   - learns of each actor's exit (from the supervisor through actor_exited()),
//     and on the first failure stops the others: abort over the control
//     channel, SIGTERM to local actors, SIGKILL after a grace period.
// run() returns once every actor has exited; reports() then tells what
// happened to each, and edges() what was sent and received on each edge.
//
// Across hosts: with plan.listen_endpoint set, the broker also binds control
// and logs on tcp (CURVE with a ZAP handler when the plan has a key). Workers
// join there; once plan.expect_workers have joined it assigns each remote
// actor to a worker (round robin over the workers that match its group's
// placement) and the workers fork them. Workers and the broker ping each
// other; a worker silent for kHostTimeout is lost, and so are its actors.
//
// Standalone (relay-broker): the broker is given a control socket already
// bound on the listen endpoint, and the driver joins it like a worker (dhello,
// with its plan): the driver runs the actors placed on its own host, and the
// broker forwards it what an embedded broker hands over in-process: queue
// puts, log records, the exits of actors on workers, and the run's result.
//
// It runs on one thread; every method but request_abort() must be called on
// it (watch callbacks run there).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>
#include <spdlog/logger.h>
#include <zmq.hpp>

#include "relay/internal/plan.h"
#include "relay/internal/security.h"
#include "relay/internal/transport.h"
#include "relay/internal/dedup.h"
#include "relay/internal/delivery.h"
#include "relay/internal/frames.h"
#include "relay/internal/wire.h"
#include "broker/supervisor.h"

namespace relay::broker {

// Per pair of an edge: (edge, the actor at the other end) -> messages.
using PairCounts = std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t>;

// What the broker learned of one actor.
struct ActorReport {
  bool hello = false;
  bool in_barrier = false;  // its hello, or a predecessor's, counted in the start barrier
  int pid = 0;
  std::string host;
  std::string endpoint;
  bool bye = false;
  std::optional<std::string> failure;  // its own report, from its process
  std::optional<int> exitcode;
  bool stopped = false;                // ended because the broker stopped the run
  std::uint64_t logs_received = 0;
  // Per pair of an edge, from its bye: (edge, receiver id) -> messages sent,
  // (edge, sender id) -> messages received.
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> sent;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> received;
  // Messages sent to each output of its group (Plan::outputs()), from its bye.
  std::vector<std::uint64_t> outputs;
  std::uint64_t rejected = 0;
  // Per pair to a supervised receiver, from its bye: (edge, receiver id) ->
  // messages its earlier incarnations finished, or dead letters.
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> settled;
  // Per pair, from a restarted actor's bye: (edge, receiver id) -> messages
  // it did not send again, the receiver having taken them from a predecessor.
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> not_sent;
  // Supervision: 0 for the first process, n after n restarts; when a
  // restarted one must have said hello.
  std::uint32_t incarnation = 0;
  std::optional<std::chrono::steady_clock::time_point> hello_by;
  // The latest counters the actor reported: per edge leaving its group
  // (sent, waiting) and entering it (received), and in all.
  std::map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> edge_out;
  std::map<std::uint32_t, std::uint64_t> edge_in;
  std::uint64_t sent_total = 0;
  std::uint64_t received_total = 0;
  std::uint64_t waiting = 0;
  // From the latest counters too, the pairs restarts touched (Stats' before
  // and settled): (edge, sender id) -> messages taken from the sender's
  // earlier incarnations; (edge, receiver id) -> messages the receiver's
  // earlier incarnations finished, or dead letters.
  PairCounts taken_before;
  PairCounts settled_now;
  // What this actor's ended incarnations had in those, as last reported: a
  // restart starts the counters over, and these are in no one else's.
  PairCounts taken_before_ended;
  PairCounts settled_ended;
  std::chrono::steady_clock::time_point ended_at;
};

// A worker host that joined.
struct WorkerReport {
  std::string routing_id;
  std::string host;
  std::vector<std::string> labels;
  int pid = 0;
  std::string address;
  std::vector<std::uint32_t> actors;
  std::chrono::steady_clock::time_point last_seen;
  bool lost = false;
  bool driver = false;  // the driver, joined to a standalone broker
  bool ended = false;   // took the end of the run (wend)
  // After `assign` a member closes its join socket, forks, and reconnects:
  // frames for it wait here until it is heard from again (a ROUTER drops
  // what it cannot route).
  bool ready = true;
  std::vector<std::string> backlog;
};

// A join that a standalone broker keeps for its next run: a driver that came
// while a run was being served, or a worker too late for it.
struct QueuedJoin {
  std::string routing_id;
  std::string frame;
  std::chrono::steady_clock::time_point last_seen;
};

// One edge of the plan: totals over every pair, and what does not add up.
struct EdgeCount {
  std::uint32_t edge = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  // "Producer-0 -> Worker-1: sent 5, received 4", or, for a sender whose
  // output's messages did not all go out on the edge, "Producer-0: 7 sent
  // to the output, 6 on this edge".
  std::vector<std::string> mismatches;
};

// How a run ended, as the driver turns it into start()'s outcome.
struct RunResult {
  struct Failure {
    std::uint32_t id = 0;
    std::string group;
    std::string name;
    int pid = 0;  // 0: it never said hello
    std::string host;
    std::string reason;
  };
  std::vector<Failure> failures;
  // Empty when every pair's sent and received counts agree, else which differ.
  std::string accounting;
  std::optional<std::string> stopped;  // why the run was stopped, if it was
  std::uint64_t rejected = 0;          // frames the actors turned away
};
std::string pack_result(const RunResult& result);
RunResult unpack_result(const char* data, std::size_t size);  // throws EncodeError

class Broker {
 public:
  struct Hooks {
    // Delivers a put from another process to a queue of this one; never blocks
    // or throws. On `refused`, the string says why; the put fails its actor.
    std::function<internal::Delivery(std::uint64_t, const char*, std::size_t, std::string&)>
        deliver;
    // Readable when a bounded queue has room again.
    int queue_space_fd = -1;
    // Listeners on plan.control_endpoint and plan.log_endpoint made before
    // the actors were forked (see internal::PreboundIpc), bound instead of
    // the endpoints when given.
    internal::PreboundIpc* control_listener = nullptr;
    internal::PreboundIpc* log_listener = nullptr;
    // Sends a signal to local actor `id` if its process is still alive.
    std::function<void(std::uint32_t id, int sig)> signal_actor;
    // Told of every exit the broker learns of from a worker (or of a lost
    // host), with the actor's remote pid (0 if it never said hello).
    std::function<void(std::uint32_t id, int pid, int exitcode)> remote_ended;
    // Supervision: starts actor `id` again as `incarnation` (throws
    // relay::Error if it cannot); what a dead local actor was inside recv()
    // with.
    std::function<void(std::uint32_t id, std::uint32_t incarnation)> respawn;
    std::function<std::optional<InRecv>(std::uint32_t id)> in_recv;
    // Told of each hello of a remote actor (a restarted one too), with its
    // pid on its host.
    std::function<void(std::uint32_t id, int pid)> remote_started;
  };

  Broker(zmq::context_t& ctx, const internal::Plan& plan, std::shared_ptr<spdlog::logger> logger,
         Hooks hooks);
  // Standalone: `control` is a ROUTER already bound on plan.listen_endpoint
  // (set up as a CURVE server, with the caller's ZAP handler, when the plan
  // has a key), `monitor` a bound XPUB or none; nothing is bound on ipc. The
  // driver joins as a member. Both sockets are taken; if the constructor
  // throws (the log endpoint cannot be bound), they are given back, so that
  // relay-broker keeps serving on them.
  Broker(zmq::context_t& ctx, const internal::Plan& plan, std::shared_ptr<spdlog::logger> logger,
         zmq::socket_t& control, zmq::socket_t& monitor);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Calls `on_readable` on the broker thread whenever `fd` is readable, until it
  // returns false.
  void watch(int fd, std::function<bool()> on_readable);
  // Records that actor `id` exited with `exitcode` (negative: signal).
  void actor_exited(std::uint32_t id, int exitcode);
  // Stops the run: every actor is told to abort; local ones get SIGTERM, then
  // SIGKILL after the grace period. The first reason is kept.
  void abort(const std::string& reason);
  // Thread-safe: asks the broker thread to abort.
  void request_abort(const std::string& reason);
  // Stops the run because the driver received `sig` (SIGINT, SIGTERM): as
  // abort(), and actors that died of the same SIGTERM are stopped, not failed.
  void interrupt(int sig, const std::string& reason);

  // Serves until every actor has exited.
  void run();
  // The control ROUTER as the broker sets it up (not bound).
  static zmq::socket_t make_control_socket(zmq::context_t& ctx);
  // The monitor XPUB, bound at `endpoint`; throws relay::Error if it cannot
  // be. It passes every subscription on (ZMQ_XPUB_VERBOSE), so that run()
  // can send the plan to each new subscriber.
  static zmq::socket_t make_monitor_socket(zmq::context_t& ctx, const std::string& endpoint,
                                           const std::optional<internal::CurveKey>& key);
  // Handles a control message received before the broker existed (a
  // standalone broker reads the driver's join itself).
  void accept(zmq::message_t& from, zmq::message_t& frame) { handle_control(from, frame); }
  // The outcome, once run() has returned.
  RunResult result() const;
  // Standalone: the joins kept for the next run (still alive), once run()
  // has returned.
  std::vector<QueuedJoin> take_queued() { return std::move(queued_); }
  // Standalone: the control socket back, once run() has returned, for the
  // next run (members waiting for it stay connected to it).
  zmq::socket_t release_control() { return std::move(control_); }
  zmq::socket_t release_monitor() { return std::move(monitor_); }

  const std::vector<ActorReport>& reports() const noexcept { return reports_; }
  const std::vector<WorkerReport>& workers() const noexcept { return workers_; }
  const Supervisor& supervisor() const noexcept { return supervisor_; }
  // The monitor endpoint as bound (the port filled in), or empty.
  const std::string& monitor_endpoint() const noexcept { return monitor_bound_; }
  std::optional<std::string> abort_reason() const { return abort_reason_; }
  // Whether actor `id` failed (rather than ended cleanly or being stopped).
  bool failed(std::uint32_t id) const;
  std::string failure_reason(std::uint32_t id) const;
  // Sent and received counts for each edge, from the actors' bye reports:
  // every pair's counts must agree, and every message a sender sent to an
  // output must have gone out on each edge leaving it (to one receiver, or to
  // every one of a broadcast edge).
  std::vector<EdgeCount> edges() const;

  // How long stopped actors get between SIGTERM and SIGKILL.
  static constexpr std::chrono::milliseconds kGrace{1000};
  // How long a sender may run on after every receiver it feeds has ended.
  static constexpr std::chrono::milliseconds kStuckAfter{2000};
  // How long the end of a run is repeated to workers that have not taken it.
  static constexpr std::chrono::milliseconds kEndWait{2000};
  // How long the verdict on an actor killed by SIGTERM waits for the driver's
  // own SIGTERM (a signal to the whole process group).
  static constexpr std::chrono::milliseconds kSignalVerdict{500};

 private:
  void bind_and_listen();
  void handle_control(zmq::message_t& from, zmq::message_t& frame);
  void handle_driver(WorkerReport& driver, internal::ControlFrame& frame);
  void actor_ended_remotely(std::uint32_t id);
  bool queue_for_next_run(const std::string& rid, const zmq::message_t& frame, internal::Ctl kind);
  void say_end();
  void handle_worker(const std::string& rid, internal::ControlFrame& frame);
  void assign_workers();
  void check_workers();
  void check_stuck_senders();
  void check_start();
  // Where actor `id` runs, for an actor that has not said hello: its
  // worker's host and address, or this host.
  std::string host_of(std::uint32_t id) const;
  void send_to_worker(const std::string& rid, const std::string& frame);
  // Sends a monitor record (frames.h) under its topic.
  template <class T>
  void publish(const T& record);
  // Counts over every incarnation of the actors (the monitor's): what an
  // ended incarnation sent is counted as what its receivers took from it
  // (or finished before a restart of theirs), and what a restarted receiver
  // took as what its senders count settled plus what its current process
  // took; so at the end of a run that adds up, an edge's sent equals its
  // received, and a redelivered message counts once.
  struct Counts {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t waiting = 0;
  };
  Counts actor_counts(std::uint32_t id) const;
  Counts edge_counts(std::uint32_t e) const;
  // Publishes actor `id`'s counts ("stats"), / the totals of edge `e`
  // ("edge"). Neither count ever goes back from what was published: just
  // after a restart the new process has not reported yet, or its senders
  // not yet resumed it.
  void publish_actor(std::uint32_t id);
  void publish_edge(std::uint32_t e);
  // The monitor's view of the plan and the actors (monitor records "plan",
  // "actor"): reads the XPUB's subscriptions, publishes the plan to a new
  // subscriber and at the start barrier, and an actor record for each actor
  // whose host, pid or state changed since it was last published.
  void watch_monitor();
  void publish_plan();
  // "starting", "running", "failed", "stopped" or "ended" (frames.h).
  const char* actor_state(std::uint32_t id) const;
  internal::MonitorActor actor_record(std::uint32_t id) const;
  void handle_log(const zmq::message_t& frame);
  void retry_puts();
  // Records `reason` as actor `id`'s failure (as if it had reported it) and
  // stops the run; the abort also answers a bounded put it waits on.
  void fail_actor(std::uint32_t id, const std::string& reason);
  void settle_pending_acks(bool force);
  void send_to(std::uint32_t id, const std::string& frame);
  void reject(const std::string& what);
  bool all_exited() const;
  void decide_exits();
  void report_bad_exit(std::uint32_t id);
  // A supervised actor failed (and has exited): start it again, or stop
  // the run if its limits are used up.
  void supervise(std::uint32_t id);
  void check_restarts();
  // Supervision across hosts: has a worker start remote actor `id` as its
  // current incarnation: its own worker, or, when that host is lost, another
  // that its group's placement allows. With none, the actor waits (a worker
  // may join mid-run to take it) until plan.worker_wait has passed; then the
  // run stops, naming the group and the placement.
  void place(std::uint32_t id);
  void place_waiting();
  // The workers (not lost, not the driver) that group `g`'s placement allows.
  std::vector<std::size_t> workers_for(std::uint32_t group) const;
  // Whether workers may still join once the actors are assigned: to take
  // supervised actors of a lost host.
  bool takes_late_workers() const;

  zmq::context_t& ctx_;
  const internal::Plan& plan_;
  std::shared_ptr<spdlog::logger> logger_;
  Hooks hooks_;
  zmq::socket_t control_;
  zmq::socket_t logs_;
  std::vector<ActorReport> reports_;
  std::vector<std::uint64_t> logs_expected_;  // announced by bye/fail; UINT64_MAX: not yet
  std::vector<std::chrono::steady_clock::time_point> ack_since_;
  struct Watch {
    int fd;
    std::function<bool()> on_readable;
  };
  std::vector<Watch> watches_;
  struct PendingPut {
    std::uint32_t actor;
    std::uint64_t queue;
    std::string bytes;
  };
  std::deque<PendingPut> pending_puts_;
  std::size_t hellos_ = 0;
  bool started_ = false;
  std::optional<std::string> abort_reason_;
  std::string stopped_by_supervisor_;  // why supervision gave up, if it did
  int interrupted_ = 0;  // the driver's signal, once interrupt() was called
  // Actors killed by SIGTERM before any abort, and when their verdict is due.
  std::vector<std::pair<std::uint32_t, std::chrono::steady_clock::time_point>> undecided_;
  std::optional<std::chrono::steady_clock::time_point> kill_at_;
  int abort_fd_ = -1;
  std::mutex abort_mu_;
  std::string requested_abort_;
  std::uint64_t rejected_ = 0;
  Supervisor supervisor_;
  // Dead letters to announce with each restarted actor's Restarted frame.
  std::map<std::uint32_t, std::vector<internal::DeadLetter>> dead_pending_;
  // Per supervised actor: the origins of the puts taken (internal/dedup.h).
  std::map<std::uint32_t, internal::DedupTable> puts_taken_;
  // Per remote supervised actor that died inside recv(): what its worker
  // read in its in-flight slot.
  std::map<std::uint32_t, InRecv> remote_in_recv_;
  // Remote actors to start again that no worker can take yet, and until when
  // they may wait for one.
  std::map<std::uint32_t, std::chrono::steady_clock::time_point> unplaced_;
  // Across hosts.
  std::optional<internal::ZapHandler> zap_;
  std::string log_tcp_endpoint_;
  zmq::socket_t monitor_;
  std::string monitor_bound_;
  std::vector<WorkerReport> workers_;
  std::vector<int> actor_worker_;  // index into workers_, -1: local or unassigned
  bool assigned_ = false;
  bool standalone_ = false;
  std::string driver_rid_;  // standalone: the driver's routing id, once joined
  std::vector<QueuedJoin> queued_;
  std::chrono::steady_clock::time_point began_;
  std::chrono::steady_clock::time_point next_ping_;
  // When every actor must have said hello: internal::start_wait() after the
  // local actors were forked, or after the remote ones were assigned.
  std::optional<std::chrono::steady_clock::time_point> start_by_;
  // The monitor's view (watch_monitor()): what was last published of each
  // actor, and whether the plan went out at the start.
  struct MonitorSeen {
    const char* state = nullptr;  // actor_state()'s
    int pid = 0;
    std::string host;
  };
  std::vector<MonitorSeen> monitor_published_;
  // The counts last published of each actor and edge (sent, received).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> monitor_actor_counts_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> monitor_edge_counts_;
  bool plan_wanted_ = false;
  bool plan_at_start_ = false;
  std::chrono::steady_clock::time_point plan_sent_at_;
};

}  // namespace relay::broker
