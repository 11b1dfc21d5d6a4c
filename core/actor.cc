#include "relay/actor.h"

#include <signal.h>

#include <spdlog/spdlog.h>

#include "relay/runtime/actor_runtime.h"
#include "relay/internal/process.h"

namespace relay {

Actor::Actor() = default;
Actor::Actor(std::string name) : name_(std::move(name)), named_(true) {}
Actor::~Actor() = default;

void Actor::run() {
  startup();
  loop();
  shutdown();
}

void Actor::loop() {
  if (!receiver_) {
    throw Error("actor '" + name_ + "' in group '" + group_ +
                "' has no inbox (no edge enters its group) and must override loop()");
  }
  internal::ActorRuntime* runtime = internal::ActorRuntime::current();
  if (runtime == nullptr) throw Error("loop: actor '" + name_ + "' is not running in a relay");
  runtime->receive_loop();
}

void Actor::recv(const Message&) {
  throw Error("actor '" + name_ + "' in group '" + group_ +
              "' receives messages but does not override recv()");
}

internal::Buffer& Actor::send_buffer() {
  if (!send_buffer_) send_buffer_ = std::make_unique<internal::Buffer>();
  return *send_buffer_;
}

std::optional<int> Actor::pid() const {
  if (!process_) return std::nullopt;
  std::lock_guard lock(process_->mu);
  if (process_->pid == 0) return std::nullopt;  // on a worker, not yet known
  return process_->pid;
}

std::optional<int> Actor::exitcode() const {
  if (!process_) return std::nullopt;
  std::lock_guard lock(process_->mu);
  return process_->exitcode;
}

bool Actor::is_alive() const {
  if (!process_) return false;
  std::lock_guard lock(process_->mu);
  return !process_->exitcode.has_value();
}

void Actor::join() {
  if (!process_) throw Error("join: actor '" + name_ + "' was never started");
  std::unique_lock lock(process_->mu);
  process_->ended.wait(lock, [&] { return process_->exitcode.has_value(); });
}

bool Actor::join_for(std::chrono::nanoseconds timeout) {
  if (!process_) throw Error("join: actor '" + name_ + "' was never started");
  std::unique_lock lock(process_->mu);
  return process_->ended.wait_for(lock, timeout, [&] { return process_->exitcode.has_value(); });
}

void Actor::terminate() {
  if (process_) process_->signal(SIGTERM);
}

void Actor::kill() {
  if (process_) process_->signal(SIGKILL);
}

void Actor::close() {
  if (!process_) return;
  if (is_alive()) throw Error("close: actor '" + name_ + "' is still running");
  process_->close();
}

std::string Actor::authkey() const {
  if (process_) return process_->authkey;
  internal::ActorRuntime* runtime = internal::ActorRuntime::current();
  if (runtime != nullptr && &runtime->actor() == this) return runtime->plan().authkey;
  return {};
}

int Actor::sentinel() const {
  if (!process_) return -1;
  std::lock_guard lock(process_->mu);
  return process_->closed ? -1 : process_->pidfd;
}

namespace internal {

void send_packed(const Actor& actor, Buffer& message) {
  ActorRuntime* runtime = ActorRuntime::current();
  if (runtime == nullptr || &runtime->actor() != &actor) {
    throw Error("send: actor '" + actor.name() +
                "' is not running here; send() works only in the actor's own process");
  }
  runtime->send(message);
}

void send_packed_to(const Actor& actor, std::string_view output, Buffer& message) {
  ActorRuntime* runtime = ActorRuntime::current();
  if (runtime == nullptr || &runtime->actor() != &actor) {
    throw Error("send_to: actor '" + actor.name() +
                "' is not running here; send_to() works only in the actor's own process");
  }
  runtime->send_to(output, message);
}

void forward_message(const Actor& actor, const std::string_view* output,
                     const Message& message) {
  ActorRuntime* runtime = ActorRuntime::current();
  if (runtime == nullptr || &runtime->actor() != &actor) {
    const char* op = output != nullptr ? "send_to" : "send";
    throw Error(std::string(op) + ": actor '" + actor.name() + "' is not running here; " + op +
                "() works only in the actor's own process");
  }
  runtime->forward(output, message.payload());
}

void flush_sends(const Actor& actor) {
  ActorRuntime* runtime = ActorRuntime::current();
  if (runtime == nullptr || &runtime->actor() != &actor) {
    throw Error("flush: actor '" + actor.name() +
                "' is not running here; flush() works only in the actor's own process");
  }
  runtime->before_waiting();
}

void log_text(const Actor& actor, Level level, std::string text) {
  ActorRuntime* runtime = ActorRuntime::current();
  if (runtime != nullptr && &runtime->actor() == &actor) {
    runtime->log(level, text);
    return;
  }
  // Not in the actor's process (e.g. the main process before start()): write
  // it here, as the driver would.
  try {
    spdlog::default_logger_raw()->log(static_cast<spdlog::level::level_enum>(level),
                                      "[{}] ({}) {}", actor.group(), actor.name(), text);
  } catch (...) {
  }
}

}  // namespace internal
}  // namespace relay
