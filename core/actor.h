// relay/actor.h: relay::Actor, one stage member running in its own process.
//
// Users derive from Actor. A Relay wires actors into groups; Relay::start()
// forks one process per actor, and that process runs the actor's lifecycle:
//
//   startup();  loop();  shutdown();
//
// Actors of a group with no incoming edge (sources) have no inbox and must
// override loop(); actors of a group with incoming edges (receivers) must
// override recv(), which the default loop() calls once per message until every
// sender of every incoming edge has finished. A group with outgoing edges has
// outputs: send() passes a message to its default output, send_to("name", ...)
// to a named one, and each edge leaving that output delivers it (to one actor
// of its group, to the one its key picks, or to all). Breaking these rules
// makes Relay::connect() or Relay::start() throw std::invalid_argument naming
// the group.
//
//   class Worker : public relay::Actor {
//    public:
//     void recv(const relay::Message& m) override {
//       auto [i, s] = m.as<int, std::string>();
//       send(i + 1, s);
//     }
//   };
//
// Which process calls what: startup/loop/recv/shutdown, send() and log() run in
// the actor's process. The process API (pid(), join(), terminate(), ...) is for
// the main process, where the Actor object keeps the handle of its child.
// An exception escaping a hook ends the actor; Relay::start() then stops every
// other actor and throws relay::ActorError.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "relay/control.h"
#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/message.h"

namespace relay {

class Relay;
class Actor;
class Handler;
namespace internal {
struct RelayState;
void run_relay(RelayState& state, Handler* handler);
struct ProcessHandle;
class ActorRuntime;
void send_packed(const Actor& actor, Buffer& message);
void send_packed_to(const Actor& actor, std::string_view output, Buffer& message);
void forward_message(const Actor& actor, const std::string_view* output, const Message& message);
void log_text(const Actor& actor, Level level, std::string text);
void flush_sends(const Actor& actor);
}  // namespace internal

class Actor {
 public:
  // An actor named after its class and position, e.g. "Worker-2".
  Actor();
  // An actor with a name of its own.
  explicit Actor(std::string name);
  virtual ~Actor();
  Actor(const Actor&) = delete;
  Actor& operator=(const Actor&) = delete;

  // ---- Lifecycle hooks: run in the actor's process ----

  // Runs once, before loop().
  virtual void startup() {}
  // Keeps the actor alive. Sources override it; for a receiver the default
  // receives messages and calls recv() for each, until end of stream.
  virtual void loop();
  // Handles one message. Receivers override it.
  virtual void recv(const Message& message);
  // Runs once, after loop(); a receiver has seen all its messages by then. It may
  // still send().
  virtual void shutdown() {}

  // Runs the lifecycle: startup(), loop(), shutdown(). Relay calls it in the
  // actor's process; it is not meant to be called directly.
  void run();

  // ---- Messaging: from the actor's process ----

  // Sends one message holding `args` to the group's default output: every
  // edge leaving it delivers the message as its grouping says (by default to
  // exactly one actor of the next group). Blocks while a receiver it goes to
  // holds as many unprocessed messages from this actor as the Relay's maxsize
  // allows. Throws relay::Error if no edge leaves the default output (naming
  // the outputs that exist) or the actor is not running, EncodeError if a
  // value cannot be encoded.
  template <class... Args>
  void send(const Args&... args) {
    internal::Buffer& buffer = send_buffer();
    buffer.clear();
    buffer.put(kDataFrame);
    internal::pack_message(buffer, args...);
    internal::send_packed(*this, buffer);
  }
  // As send(), to the named output `output` (relay::output(group, output)
  // starts its edges). Throws relay::Error naming the group, the output and
  // the outputs that exist if no edge leaves it.
  template <class... Args>
  void send_to(std::string_view output, const Args&... args) {
    internal::Buffer& buffer = send_buffer();
    buffer.clear();
    buffer.put(kDataFrame);
    internal::pack_message(buffer, args...);
    internal::send_packed_to(*this, output, buffer);
  }
  // Passes `message` (one this actor received, or any Message) on as it is,
  // like send() with its values, without decoding or encoding them again: a
  // received message's bytes go out as they came. A large one (1 KiB or
  // more) sent by an actor without restart() is not even copied: its
  // received frame is shared, by a reference count, with every receiver.
  void send(const Message& message) { internal::forward_message(*this, nullptr, message); }
  // Small messages to a receiver that is busy wait in a batch for others
  // (up to 256, or about a millisecond while relay's code runs); relay sends
  // an open batch before it waits for anything. flush() sends them now: for a
  // loop() about to wait in code of its own (a sleep, a socket), which relay
  // cannot see. Throws relay::Error if the actor is not running here.
  void flush() { internal::flush_sends(*this); }
  void send_to(std::string_view output, const Message& message) {
    internal::forward_message(*this, &output, message);
  }

  // Logs a fmt-style message. The record is written by spdlog in the main
  // process under the Relay's logger name, prefixed "[group] (name)". Never
  // throws (a formatting error is logged as such).
  template <class... Args>
  void log(fmt::format_string<Args...> format, Args&&... args) const {
    log(Level::info, format, std::forward<Args>(args)...);
  }
  template <class... Args>
  void log(Level level, fmt::format_string<Args...> format, Args&&... args) const {
    std::string text;
    try {
      text = fmt::format(format, std::forward<Args>(args)...);
    } catch (const std::exception& e) {
      text = std::string("(log format error: ") + e.what() + ")";
    }
    internal::log_text(*this, level, std::move(text));
  }

  // Whether the actor's group has an outgoing edge. Known after
  // Relay::connect() (a later connect() may add one).
  bool sender() const noexcept { return sender_; }
  // Whether the actor's group has an incoming edge (it is not a source).
  bool receiver() const noexcept { return receiver_; }

  // ---- Process API (Python's multiprocessing.Process): main process ----

  const std::string& name() const noexcept { return name_; }
  // The name of the actor's group: given with relay::group(), else "group-N".
  const std::string& group() const noexcept { return group_; }
  // The process id, once started.
  std::optional<int> pid() const;
  std::optional<int> ident() const { return pid(); }
  // Empty while running or not started; the exit status once ended; minus the
  // signal number if a signal ended it (as in Python).
  std::optional<int> exitcode() const;
  bool is_alive() const;
  // Blocks until the process has ended.
  void join();
  // Blocks until the process has ended or `timeout` passed; returns whether it
  // has ended.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  // Sends SIGTERM / SIGKILL to the process (nothing if it has ended).
  void terminate();
  void kill();
  // Releases the process handle: sentinel() is -1 from then on. The
  // descriptor itself is closed when the Actor is destroyed or wired into a
  // new relay, so that a run still watching it never meets a reused number.
  // Throws relay::Error if the process still runs.
  void close();
  // A file descriptor that becomes readable when the process ends (a pidfd),
  // or -1 before start and after close().
  int sentinel() const;
  bool daemon() const noexcept { return daemon_; }
  // Actors always end with the main process; the flag is kept for Python's API.
  void set_daemon(bool daemon) noexcept { daemon_ = daemon; }
  // The run's authentication key (64 random hex digits, shared by the actors
  // of a run); empty before start().
  std::string authkey() const;

 private:
  friend class Relay;
  friend class internal::ActorRuntime;
  friend void internal::send_packed(const Actor&, internal::Buffer&);
  friend void internal::send_packed_to(const Actor&, std::string_view, internal::Buffer&);
  friend void internal::log_text(const Actor&, Level, std::string);
  friend void internal::run_relay(internal::RelayState&, Handler*);

  static constexpr char kDataFrame = 'D';
  bool join_for(std::chrono::nanoseconds timeout);
  internal::Buffer& send_buffer();

  std::string name_;
  std::string group_;
  bool sender_ = false;
  bool receiver_ = false;
  bool daemon_ = false;
  bool named_ = false;
  int id_ = -1;                                       // position in the relay
  // The relay it is wired into (Relay serials are never reused, so one that
  // has been destroyed is told from a live one), 0 for none.
  std::uint64_t relay_serial_ = 0;
  std::shared_ptr<internal::ProcessHandle> process_;  // main process: the child
  std::unique_ptr<internal::Buffer> send_buffer_;
};

}  // namespace relay
