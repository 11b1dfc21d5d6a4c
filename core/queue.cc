#include "relay/queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include "relay/runtime/queue_state.h"

namespace relay {
namespace internal {
namespace {

// Queues are found by id when a put arrives from another process. Ids are given
// in the owning process, so the copy an actor inherits at fork names the same
// queue.
struct Registry {
  std::mutex mu;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<QueueState>> queues;
  QueuePhase phase = QueuePhase::idle;
  bool handler_running = false;
  bool handler_given = false;
  int space_fd = -1;
  RemotePut remote_put = nullptr;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: used until _exit
  return *r;
}

std::shared_ptr<QueueState> make_state(std::optional<std::size_t> maxsize) {
  if (maxsize && *maxsize == 0) {
    throw std::invalid_argument("Queue: maxsize must be at least 1 (omit it for no bound)");
  }
  auto s = std::make_shared<QueueState>();
  s->owner = ::getpid();
  s->maxsize = maxsize;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  s->id = r.next_id++;
  r.queues[s->id] = s;
  // Forget queues that are gone, so that the map does not grow without bound.
  if (r.queues.size() > 64 && r.queues.size() % 64 == 0) {
    std::erase_if(r.queues, [](const auto& kv) { return kv.second.expired(); });
  }
  return s;
}

bool full(const QueueState& s) { return s.maxsize && s.items.size() >= *s.maxsize; }

void signal_space() {
  const int fd = queue_space_fd();
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

}  // namespace

Delivery deliver_to_queue(std::uint64_t id, const char* data, std::size_t size,
                          std::string& refusal) noexcept {
  const std::string queue = "queue #" + std::to_string(id);
  try {
    std::shared_ptr<QueueState> s;
    bool reader = false;
    bool given = false;
    {
      Registry& r = registry();
      std::lock_guard lock(r.mu);
      auto it = r.queues.find(id);
      if (it != r.queues.end()) s = it->second.lock();
      reader = r.handler_running;
      given = r.handler_given;
    }
    if (!s) {
      refusal = "Queue::put: the main process holds no " + queue +
                " (it was destroyed, or made in another process)";
      return Delivery::refused;
    }
    auto bytes = std::shared_ptr<char[]>(new char[size]);
    std::memcpy(bytes.get(), data, size);
    Message m(decode_message(bytes.get(), size, bytes));  // throws EncodeError
    {
      std::lock_guard lock(s->mu);
      if (full(*s)) {
        if (reader) return Delivery::full;
        // The putter would wait for ever: nothing takes from the queue until
        // start() returns, and start() waits for the putter.
        refusal = "Queue::put: " + queue + " (maxsize " + std::to_string(*s->maxsize) +
                  ") is full and nothing reads it during the run: " +
                  (given ? "the Handler's run() has returned" : "no Handler was given to start()") +
                  "; read it in a Handler's run() (relay.start(handler)), or give it a larger "
                  "maxsize or none";
        return Delivery::refused;
      }
      s->items.push_back(std::move(m));
    }
    s->not_empty.notify_one();
    return Delivery::accepted;
  } catch (const std::exception& e) {
    refusal = "Queue::put: the message put to " + queue + " cannot be delivered: " + e.what();
    return Delivery::refused;
  }
}

int queue_space_fd() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (r.space_fd < 0) {
    r.space_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r.space_fd < 0) throw Error(std::string("queue: eventfd: ") + std::strerror(errno));
  }
  return r.space_fd;
}

void set_queue_phase(QueuePhase phase) {
  std::vector<std::shared_ptr<QueueState>> all;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    r.phase = phase;
    for (auto& [id, weak] : r.queues) {
      if (auto s = weak.lock()) all.push_back(std::move(s));
    }
  }
  for (auto& s : all) {
    // Taking the lock orders the flag change before any waiter's next check.
    { std::lock_guard lock(s->mu); }
    s->not_empty.notify_all();
    s->not_full.notify_all();
  }
}

std::uint64_t queue_id(const Queue& q) noexcept { return q.s_->id; }

std::vector<QueueSlot> live_queues() {
  std::vector<QueueSlot> out;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    for (auto& [id, weak] : r.queues) {
      auto s = weak.lock();
      if (s && s->owner == ::getpid()) out.push_back({id, s->maxsize});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const QueueSlot& a, const QueueSlot& b) { return a.id < b.id; });
  return out;
}

void set_handler_running(bool running, bool given) {
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    r.handler_running = running;
    r.handler_given = given;
  }
  if (!running) signal_space();
}

void set_remote_put(RemotePut put) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.remote_put = put;
}

namespace {
QueuePhase queue_phase() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.phase;
}
}  // namespace

}  // namespace internal

Queue::Queue() : s_(internal::make_state(std::nullopt)) {}
Queue::Queue(std::size_t maxsize) : s_(internal::make_state(maxsize)) {}

void Queue::put_packed(internal::Buffer& buffer) {
  if (::getpid() != s_->owner) {
    internal::RemotePut put;
    {
      internal::Registry& r = internal::registry();
      std::lock_guard lock(r.mu);
      put = r.remote_put;
    }
    if (put == nullptr) {
      throw Error("Queue::put: this process is neither the queue's owner nor a relay actor");
    }
    put(s_->id, s_->maxsize.has_value(), buffer);
    return;
  }
  const std::size_t size = buffer.size();
  auto bytes = std::shared_ptr<char[]>(buffer.release(), [](char* p) { std::free(p); });
  Message m(internal::decode_message(bytes.get(), size, bytes));
  {
    std::unique_lock lock(s_->mu);
    s_->not_full.wait(lock, [&] { return !internal::full(*s_); });
    s_->items.push_back(std::move(m));
  }
  s_->not_empty.notify_one();
}

namespace {

void check_owner(const internal::QueueState& s) {
  if (::getpid() != s.owner) {
    throw Error("Queue::get: only the process that created a queue can get from it");
  }
}

// Takes the front message; `lock` holds s.mu and is released.
Message pop(internal::QueueState& s, std::unique_lock<std::mutex>& lock) {
  Message m = std::move(s.items.front());
  s.items.pop_front();
  const bool bounded = s.maxsize.has_value();
  lock.unlock();
  if (bounded) {
    s.not_full.notify_one();
    internal::signal_space();
  }
  return m;
}

}  // namespace

Message Queue::get() {
  check_owner(*s_);
  std::unique_lock lock(s_->mu);
  // set_queue_phase() takes s_->mu after changing the phase, then notifies,
  // so a waiter cannot miss the change.
  s_->not_empty.wait(lock, [&] {
    return !s_->items.empty() || internal::queue_phase() != internal::QueuePhase::running;
  });
  if (s_->items.empty()) {
    throw Closed(
        "Queue::get: the queue is empty and no actor is running (the run ended or was "
        "stopped), so get() would block forever");
  }
  return pop(*s_, lock);
}

std::optional<Message> Queue::get_for(std::chrono::nanoseconds timeout) {
  check_owner(*s_);
  std::unique_lock lock(s_->mu);
  if (timeout <= std::chrono::nanoseconds::zero()) {
    if (s_->items.empty()) return std::nullopt;
    return pop(*s_, lock);
  }
  internal::QueuePhase phase = internal::QueuePhase::idle;
  s_->not_empty.wait_for(lock, timeout, [&] {
    phase = internal::queue_phase();
    return !s_->items.empty() || phase != internal::QueuePhase::running;
  });
  if (!s_->items.empty()) return pop(*s_, lock);
  if (phase == internal::QueuePhase::over) {
    // Inside start(), once the run is over: polling on would only ever time
    // out, so a Handler's loop ends here.
    throw Closed(
        "Queue::get: the queue is empty and no actor is running (the run ended or was "
        "stopped), so get() would only time out");
  }
  // No run (before start(), or after it returned): nothing will come, so the
  // drain loop `while (auto m = q.get(1s))` ends at once.
  return std::nullopt;
}

std::optional<Message> Queue::get_nowait() { return get_for(std::chrono::nanoseconds(0)); }

std::size_t Queue::qsize() const {
  std::lock_guard lock(s_->mu);
  return s_->items.size();
}

std::optional<std::size_t> Queue::maxsize() const { return s_->maxsize; }

}  // namespace relay
