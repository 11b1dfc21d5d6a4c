// relay/runtime/queue_state.h: the shared state behind relay::Queue, and the
// hooks the broker uses to deliver puts that arrive from other processes.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "relay/internal/delivery.h"
#include "relay/internal/plan.h"
#include "relay/message.h"

namespace relay::internal {

struct QueueState {
  std::uint64_t id = 0;
  pid_t owner = 0;
  std::optional<std::size_t> maxsize;
  std::mutex mu;
  std::condition_variable not_empty;
  std::condition_variable not_full;
  std::deque<Message> items;
};

// Called by the broker thread with the bytes of one put() made in another
// process. Never blocks, never throws: a bounded queue that is full answers
// `full` while a Handler's run() is running, and the broker tries again once
// queue_space_fd() becomes readable; a put that can never be delivered answers
// `refused`, with `refusal` saying why ("Queue::put: ...", naming the queue).
Delivery deliver_to_queue(std::uint64_t id, const char* data, std::size_t size,
                          std::string& refusal) noexcept;

// Marks whether a Handler's run() is running in this process, i.e. whether
// anything can read a full bounded queue during the run (`given`: whether
// start() was given a Handler, for the refusal's words). Clearing it makes
// queue_space_fd() readable, so that a broker holding puts for full queues
// looks at them again (they are refused now).
void set_handler_running(bool running, bool given);

// An eventfd that becomes readable when a get() frees room in a bounded queue.
int queue_space_fd();

// Where this process is in a run, as the queues see it:
//   idle:    no run (before start(), or after it returned): get() on an empty
//            queue throws relay::Closed, get(timeout) returns nothing at once;
//   running: actors may put: get() and get(timeout) wait;
//   over:    start() is still running, but every actor has ended: get() and
//            get(timeout) on an empty queue throw relay::Closed, so that a
//            Handler polling in a loop ends with the run.
// Each change wakes every blocked get().
enum class QueuePhase { idle, running, over };
void set_queue_phase(QueuePhase phase);

// The queues this process owns that are still alive, by id, with their
// bounds: what the plan carries so that a worker with other queues is
// turned away.
std::vector<QueueSlot> live_queues();

// How an actor process sends a put() to the queue's owner (set by the actor
// runtime in each actor process).
using RemotePut = void (*)(std::uint64_t queue_id, bool bounded, const Buffer& message);
void set_remote_put(RemotePut put);

}  // namespace relay::internal
