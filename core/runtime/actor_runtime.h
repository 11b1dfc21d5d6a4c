// relay/runtime/actor_runtime.h: what runs inside an actor's process.
//
// run_actor_process() is called in the child right after fork(). It sets the
// process up (signals, death of the driver), connects to the broker and to the
// next group, runs the actor's lifecycle, ends its stream with acknowledged
// end-of-stream frames, reports its counts, and leaves with _exit(): a forked
// child never returns into the parent's code.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "relay/actor.h"
#include "relay/internal/dedup.h"
#include "relay/internal/frames.h"
#include "relay/internal/held_frames.h"
#include "relay/internal/plan.h"
#include "relay/runtime/inflight.h"
#include "relay/internal/security.h"
#include "relay/internal/wire.h"

namespace relay::internal {

// `incarnation`: 0 for the first process of an actor, n for its nth restart.
[[noreturn]] void run_actor_process(const Plan& plan, Actor& actor, std::uint32_t incarnation = 0);

class ActorRuntime {
 public:
  ActorRuntime(const Plan& plan, Actor& actor, std::uint32_t incarnation);
  ActorRuntime(const ActorRuntime&) = delete;
  ActorRuntime& operator=(const ActorRuntime&) = delete;

  // The runtime of this process, or nullptr in a process that runs no actor.
  static ActorRuntime* current() noexcept;

  // Runs the whole life of the actor process; never returns.
  [[noreturn]] void run();

  // Sends one data frame ('D' + message) to the default output / to output
  // `output`: on every edge leaving it, to the receiver(s) its grouping picks,
  // each once it has credit.
  void send(Buffer& frame);
  void send_to(std::string_view output, Buffer& frame);
  // send(const Message&): `output` null for the default output. The bytes go
  // on as they came: a large message's received frame itself (shared, not
  // copied) where no origin must be added, else copied into a frame.
  // `message` null: an empty message (a default-constructed Message).
  void forward(const std::string_view* output, const Payload* message);
  // Receives messages and calls recv() until every sender has ended its stream.
  void receive_loop();
  // Before this actor waits in code relay does not see (Actor::flush(), an
  // Inlet): what it took goes back as credit, and its open batches go.
  void before_waiting();
  void log(Level level, const std::string& text) noexcept;
  void put(std::uint64_t queue_id, bool bounded, const Buffer& message) {
    put_message(queue_id, bounded, message, true);
  }
  const Actor& actor() const noexcept { return actor_; }
  const Plan& plan() const noexcept { return plan_; }

 private:
  // One receiver of one outgoing edge.
  struct Downstream {
    std::uint32_t id = 0;
    std::uint32_t edge = 0;
    std::uint32_t window = 0;
    zmq::socket_t socket;
    std::uint64_t credit = 0;
    std::uint64_t sent = 0;
    // The receiver's last total of messages taken (credits are cumulative).
    std::uint64_t credited = 0;
    bool acked = false;
    // Receivers credit what they took before they wait (a supervised one
    // also what it finished): read every `read_every` sends, or the credits
    // pile up in the pipe (ZeroMQ's high-water mark) while credit is left.
    std::uint32_t read_every = 0;
    std::uint32_t unread = 0;  // sent since the pair's credits were last read
    // Small frames sent while the pair has at least `batch_after` messages
    // not yet taken go in one 'B' frame (wire.h), flushed when full or
    // before this actor waits for anything; `batched` of them so far.
    Buffer batch;
    std::uint32_t batched = 0;
    std::uint64_t batch_after = 0;
    // With a byte window: the size of each frame not yet credited, oldest
    // first (credits come back in sending order), and their sum.
    std::deque<std::uint64_t> sizes;
    std::uint64_t bytes_out = 0;
    // ---- A supervised receiver ('S' frames, wire.h) ----
    bool seq = false;
    std::uint32_t receiver_inc = 0;  // the receiver's incarnation, as last told
    // Every frame sent and not yet finished by the receiver, in seq order:
    // what a restarted receiver is given again.
    HeldFrames held;  // each: 'S' header and message
    std::uint64_t base = 0;          // settled before the last resume
    std::vector<std::uint64_t> dead; // seqs that became dead letters
    bool eos_sent = false;
    bool listed = false;  // a restarted sender: the receiver's 'L' came
    std::uint64_t taken_seq = 0;  // the receiver has taken every seq up to this
    // ---- A supervised sender ----
    // A restarted one: what the receiver took from its predecessors (its 'L').
    DedupTable taken_before;
    // Messages not sent again because the receiver had them (Bye::not_sent).
    std::uint64_t not_sent = 0;
    // Ops outside recv() sent on this pair and not yet taken, oldest first:
    // (the pair's count sent including it, k). See bound_loop().
    std::deque<std::pair<std::uint64_t, std::uint64_t>> loop_out;
    // What the receiver has taken of this pair: every frame up to this count.
    std::uint64_t taken() const noexcept { return seq ? taken_seq : credited; }
    // Up to which seq every message is finished (or dead).
    std::uint64_t settled() const noexcept { return held.empty() ? sent : held.front_seq() - 1; }
  };
  // An outgoing edge: its receivers are down_[first, first + size).
  struct OutEdge {
    std::uint32_t edge = 0;
    EdgeGrouping grouping = EdgeGrouping::round_robin;
    std::uint32_t key = 0;
    std::size_t first = 0;
    std::size_t size = 0;
    std::size_t next = 0;  // round robin: where the next search starts
  };
  // An output of the group (Plan::outputs()), and the edges leaving it.
  struct Output {
    std::string name;
    std::vector<std::size_t> edges;  // into out_edges_
    std::uint64_t sent = 0;          // messages sent to it
  };
  // An incoming edge: its senders are up_[first, first + size), from actor
  // ids sender_first on.
  struct InEdge {
    std::uint32_t edge = 0;
    std::uint32_t sender_first = 0;
    std::size_t first = 0;
    std::size_t size = 0;
  };
  // One sender of one incoming edge.
  struct Upstream {
    std::uint32_t id = 0;
    std::uint32_t edge = 0;
    std::uint64_t credit_return = 1;  // credits go back in batches of this many
    std::uint64_t received = 0;
    std::uint64_t taken = 0;             // 'D' frames taken off the wire
    std::uint64_t credited = 0;          // the last total sent back as credit
    std::uint64_t unreturned_bytes = 0;  // sizes of the frames taken since
    bool owed = false;                   // a credit could not be sent: retry
    bool ended = false;
    bool ack_owed = false;  // its end-of-stream acknowledgement could not be sent: retry
    std::uint32_t sender_inc = 0;       // the sender's incarnation, from its routing id
    bool sender_supervised = false;     // its group is: credits go back when idle too
    std::uint64_t received_before = 0;  // from its earlier incarnations
    // ---- This actor supervised ('S' frames) ----
    bool resumed = false;        // its 'R' for this incarnation came: frames are taken
    std::uint64_t next_seq = 1;  // the seq expected next
    std::uint64_t done = 0;      // every message up to this seq is finished
    std::uint64_t credited_done = 0;  // the last `done` sent back
    bool eos_held = false;       // its end of stream, acknowledged once ours has ended
    std::vector<std::uint64_t> skip;  // seqs that will not come (dead letters), ascending
    DedupTable dedup;                 // what it took from this sender, by origin
    std::uint64_t loop_limit = 0;     // loop_limit() of the sender's group
  };
  // A message whose recv() returned, not finished until what it sent is
  // taken (a supervised actor); each downstream pair's count sent by then is
  // in pending_marks_, down_.size() per record, so that a record costs no
  // allocation of its own.
  struct Pending {
    std::size_t up;
    std::uint32_t sender_inc;
    std::uint64_t seq;
  };

  void connect();
  // A restarted actor: learns from each receiver what it took already.
  void ask_receivers();
  // The origin of the next send or put: inside recv(), of the message it
  // runs on; outside, a loop origin (dedup.h). Sets loop_op_ and loop_k_.
  Origin next_origin();
  // Whether the receiver of `d` took origin_ from a predecessor of this
  // actor (a restarted one), so that it is not sent there again.
  bool taken_before(const Downstream& d) const;
  // dedup.h's origin_limit() for a frame from `u`.
  std::uint64_t origin_limit(const Upstream& u, const Origin& o) const;
  // Waits until op k outside recv() may be made: no op sent before
  // k - loop_limit_ is still to be taken.
  void bound_loop(std::uint64_t k);
  // A supervised receiver: message `seq` of upstream `up` is finished once
  // everything sent so far was taken; credits go back in order.
  void finish(std::size_t up, std::uint64_t seq);
  void advance_finished();
  void read_all_downstream();
  void read_finished_credits();
  void new_sender_incarnation(Upstream& u, std::uint32_t incarnation);
  // A data frame: a whole ZeroMQ frame (`whole` set: a large message may be
  // kept without a copy), or a member of a batch.
  struct InFrame {
    const char* p;
    std::size_t size;
    zmq::message_t* whole;
  };
  void handle_seq_data(Upstream& u, std::size_t up, const InFrame& f);
  // A receiver was started again: resume each pair to it.
  void on_restarted(const Restarted& r);
  void resume(Downstream& d);
  // The messages of pair `d` that its receiver's earlier incarnations
  // finished, or that became dead letters: sent, and not to come again.
  static std::uint64_t settled_before(const Downstream& d) noexcept;
  // Puts held frame `frame` (seq `seq`) of pair `d` to the dead letters.
  void dead_letter(const Downstream& d, std::uint64_t seq, const std::string& frame,
                   const std::string& reason);
  // A put; `user`: made by the actor's code (it has an origin), not by the
  // runtime (a dead letter, which a successor would not make again).
  void put_message(std::uint64_t queue_id, bool bounded, const Buffer& message, bool user);
  void send_held(Downstream& d, const char* frame, std::size_t size);
  void send_output(Output& output, Buffer& frame);
  // Whether `d` may take one more frame now (credit, and the byte window).
  bool has_room(const Downstream& d) const noexcept;
  // Sends `frame` on `d` once it has room; `last`: the buffer may be taken,
  // else a copy goes.
  void emit(Downstream& d, Buffer& frame, bool last);
  // The receiver of by_key edge `e` for `frame`.
  std::size_t key_position(const OutEdge& e, const char* frame, std::size_t size) const;
  Output& output_named(std::string_view output, const char* op);
  // A received data frame's message, decoded (large frames kept, not copied);
  // `header`: the bytes before the message. Throws EncodeError. A small
  // message's bytes (Payload::encoded) are valid until recv() returns.
  std::shared_ptr<Payload> decode_inbound(zmq::message_t& frame, std::size_t header);
  // A small message's bytes, copied into the decoded form (`data` stays
  // valid until recv() returns).
  std::shared_ptr<Payload> decode_small(const char* data, std::size_t size);
  // The message after `header` bytes of `f`.
  std::shared_ptr<Payload> decode_frame(const InFrame& f, std::size_t header);
  // One 'D' or 'O' message of pair `u` off the wire (`size` bytes there):
  // credited, then given to recv(); `payload` null: it did not decode.
  void take(Upstream& u, std::size_t size, std::shared_ptr<Payload> payload);
  // A frame of pair `u` (index `up`), alone or from a batch.
  void handle_data(Upstream& u, std::size_t up, const InFrame& f);
  // Whether a frame of `size` bytes to `d` goes in its batch: small, and the
  // receiver has messages waiting (or a batch is open: it stays in order).
  bool batching(Downstream& d, std::size_t size);
  // Where the next member of `d`'s batch, `size` bytes, goes; then
  // close_member() (which flushes a full batch).
  char* add_member(Downstream& d, std::size_t size);
  void close_member(Downstream& d);
  // Sends `d`'s batch, if it has one (`flags`: dontwait when failing).
  void flush_batch(Downstream& d, zmq::send_flags flags = zmq::send_flags::none);
  // Before this actor waits for anything: every open batch goes.
  void flush_batches(zmq::send_flags flags = zmq::send_flags::none);

  // Connects every downstream DEALER and waits, at most start_wait(), until
  // each has completed its handshake; throws naming the endpoints it could
  // not reach.
  void wait_for_downstream();
  void end_stream();
  void say_bye();
  [[noreturn]] void fail(const std::string& text) noexcept;
  // Reads every frame waiting on the downstream sockets (credits, acks).
  void read_downstream(Downstream& d);
  void read_credit(Downstream& d, const zmq::message_t& frame);
  void wait_downstream();
  // Control frames, the driver and stats: at most every kHousekeepingPeriod
  // unless forced, as each look costs system calls.
  void housekeeping(bool force = false);
  // Whether u's sender waits for a credit this receiver holds back for a
  // batch (a supervised pair, or a supervised sender); returns those.
  bool credit_waited_for(const Upstream& u) const noexcept;
  void return_waited_for_credits();
  // A Payload to decode the next message of `size` bytes into: the last one
  // when recv() did not keep its Message, else a new one.
  std::shared_ptr<Payload> payload_for(std::size_t size);
  // Whether spare_ is held by nothing but this runtime.
  bool spare_unshared() const noexcept;
  void handle_inbound(zmq::message_t& from, zmq::message_t& frame);
  // Sends a frame back to upstream actor `sender` (credits, acks); returns
  // false if it could not be routed (EHOSTUNREACH: the sender is not
  // connected, for now or for good).
  bool reply(const Upstream& sender, Buffer& frame);
  // Acknowledges `u`'s end of stream; on failure (it is reconnecting) the
  // acknowledgement is owed and retried, or its sender would wait for ever.
  void send_eos_ack(Upstream& u);
  // Retries owed acknowledgements for a while before the actor says bye.
  void settle_eos_acks();
  // Sends `u` the total it has taken as credit; on failure it is owed.
  void return_credit(Upstream& u);
  void drain_multipart(zmq::socket_t& socket);
  // Handles one control frame; returns its kind.
  Ctl handle_control(const zmq::message_t& frame);
  void wait_control(Ctl kind, std::uint64_t queue_id = 0);
  void reject(const std::string& what);
  void check_driver() const;

  const Plan& plan_;
  Actor& actor_;
  const ActorSlot& slot_;
  const std::uint32_t incarnation_;
  const bool supervised_;
  // A supervised actor's sends and puts carry their origin (dedup.h), and a
  // restarted one does not send again what its predecessors' receivers took.
  bool in_recv_ = false;
  Origin current_;                 // of the message recv() runs on; j: the next send's
  Origin origin_;                  // of the send under way
  char origin_bytes_[Origin::kSize] = {};
  bool with_origin_ = false;       // the frame emit() sends carries origin_bytes_
  bool loop_op_ = false;           // ... and it is op loop_k_ outside recv()
  std::uint64_t loop_k_ = 0;
  std::uint64_t loop_next_ = 0;    // the next op outside recv()
  std::uint64_t loop_limit_ = 0;   // loop_limit() of this actor's group
  std::uint64_t loop_oldest_ = 0;  // no op before it is still to be taken
  // A restarted actor: ops outside recv() before this were all taken from
  // its predecessors; from it on, those its receivers listed were.
  std::uint64_t loop_floor_ = 0;
  bool listed_any_ = false;  // some receiver listed what it took
  DedupTable puts_before_;   // the puts the broker took from predecessors
  std::uint64_t suppressed_ = 0;
  std::uint64_t duplicates_ = 0;   // frames dropped as taken already
  InFlightSlot* inflight_ = nullptr;
  std::deque<Pending> pending_;
  std::deque<std::uint64_t> pending_marks_;
  // Messages handled since downstream credits were last read, and how many
  // between two reads while finished messages wait (read_finished_credits()).
  std::uint32_t finish_tick_ = 0;
  std::uint32_t finish_read_every_ = UINT32_MAX;
  std::uint32_t open_batches_ = 0;  // pairs with a batch not yet sent
  // When the first of the open batches was opened: none waits much longer
  // than kBatchAge while relay's code runs (after each recv(), and every
  // few sends).
  std::chrono::steady_clock::time_point batch_opened_;
  void flush_aged_batches(std::chrono::steady_clock::time_point now);
  std::uint64_t batches_sent_ = 0;     // 'B' frames (of 2 messages or more)
  std::uint64_t batched_messages_ = 0;  // in them
  std::vector<std::uint32_t> incarnations_;  // by actor id, from start
  zmq::context_t ctx_;
  std::optional<ZapHandler> zap_;  // receivers of a secured run
  zmq::socket_t control_;
  zmq::socket_t log_;
  zmq::socket_t inbox_;
  std::vector<Downstream> down_;
  std::vector<OutEdge> out_edges_;
  std::vector<Output> outputs_;
  std::optional<std::size_t> default_output_;
  Buffer copy_;                     // a frame going to more than one receiver
  Buffer forward_frame_;            // send(const Message&) of a message not forwarded as it came
  const zmq::message_t* forward_ = nullptr;  // during send_output(): the frame forwarded as it came
  std::vector<std::size_t> keyed_;  // send_output(): each by_key edge's receiver
  // wait_downstream()'s poll set: every downstream socket, then control.
  std::vector<zmq::pollitem_t> down_items_;
  std::chrono::steady_clock::time_point next_housekeeping_{};
  std::shared_ptr<Payload> spare_;
  std::vector<Upstream> up_;
  std::vector<InEdge> in_edges_;
  std::uint32_t open_upstreams_ = 0;
  std::uint64_t window_bytes_ = 0;  // 0: no byte bound (see Plan::window_bytes)
  std::uint64_t logs_ = 0;
  std::uint64_t rejected_ = 0;
  std::vector<std::string> endpoints_;
  std::vector<std::uint64_t> acked_puts_;
  // Fault injection for relay's own tests (RELAY_TESTING_DROP_NTH_MESSAGE=N):
  // the Nth message this actor sends is counted as sent but never sent, so
  // the accounting check has something to catch.
  // Counters for the monitor, sent at most every kStatsPeriod.
  void report_stats(bool force = false);
  std::uint32_t stats_tick_ = 0;
  std::chrono::steady_clock::time_point next_stats_{};
  std::uint64_t drop_nth_ = 0;
  std::uint64_t total_sent_ = 0;
  // RELAY_TESTING_DROP_EVERY_NTH_CREDIT=N: every Nth credit reply this actor
  // makes is treated as failed with EHOSTUNREACH (not sent), as when its
  // sender is reconnecting.
  std::uint64_t drop_credit_every_ = 0;
  std::uint64_t credit_replies_ = 0;
  // RELAY_TESTING_DROP_FIRST_EOS_ACK=1: the first end-of-stream
  // acknowledgement this actor makes is treated as failed the same way.
  bool drop_first_eos_ack_ = false;
};

}  // namespace relay::internal
