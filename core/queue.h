// relay/queue.h: a FIFO that actors in other processes can put to.
//
// The reading end of a Queue is the process that created it, normally the main
// process. Any actor may put() to it; what actors put is all there when
// Relay::start() returns, even though they have exited. Copies of a Queue share
// the same FIFO, so a Queue may be held by reference or copied into an actor.
//
//   relay::Queue results;          // in main(), before Relay::start()
//   ... in an actor:  results.put(i, "done");
//   ... in main():    relay::Message m = results.get();
//
// A Queue(maxsize) is bounded: put() blocks while it holds maxsize messages.
// A full one is read during a run only by a Handler's run() (Relay::start(&h)):
// with none running, an actor's put() to it would wait for ever, so it fails
// the actor instead (start() throws relay::ActorError saying so).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>

#include "relay/internal/codec.h"
#include "relay/message.h"

namespace relay {

class Queue;
namespace internal {
struct QueueState;
// The id puts name this queue by (the same in every process of a run).
std::uint64_t queue_id(const Queue& q) noexcept;
}

class Queue {
 public:
  // An unbounded queue.
  Queue();
  // A queue that holds at most `maxsize` (>= 1) messages; put() blocks while full.
  explicit Queue(std::size_t maxsize);

  // Puts one message holding `args` (anything msgpack can encode, including
  // relay::Control). Blocks while a bounded queue is full. Throws EncodeError if
  // a value cannot be encoded.
  template <class... Args>
  void put(const Args&... args) {
    internal::Buffer buffer;
    internal::pack_message(buffer, args...);
    put_packed(buffer);
  }

  // Blocks until a message is there and returns it. In the process that owns the
  // queue, throws relay::Closed (a relay::Error) instead of blocking forever
  // when the queue is empty and nothing can fill it: no run is in progress, or
  // the run is over (every actor has ended, or the run was stopped).
  Message get();

  // Returns the next message, or nothing after `timeout`. When no run is in
  // progress (before Relay::start(), or after it returned) an empty queue
  // returns nothing at once, so `while (auto m = q.get(1s)) ...` drains a
  // queue after the run. Inside a run that is over (a Handler polling while
  // start() winds up) an empty queue throws relay::Closed instead, as waiting
  // could only time out: a polling run() ends with the run, and start() does
  // not count that as the handler's failure.
  template <class Rep, class Period>
  std::optional<Message> get(std::chrono::duration<Rep, Period> timeout) {
    return get_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  // Returns the next message if one is there, without blocking; never throws
  // for an empty queue (drain a queue with it after Relay::start()).
  std::optional<Message> get_nowait();

  // Returns how many messages wait in the queue (in the owning process).
  std::size_t qsize() const;
  bool empty() const { return qsize() == 0; }
  // Returns the bound given at construction, if any.
  std::optional<std::size_t> maxsize() const;

 private:
  void put_packed(internal::Buffer& buffer);
  std::optional<Message> get_for(std::chrono::nanoseconds timeout);

  std::shared_ptr<internal::QueueState> s_;
  friend std::uint64_t internal::queue_id(const Queue& q) noexcept;
};

}  // namespace relay
