// relay/inlet.h: relay::Inlet, a source group fed by the main process.
//
//   relay::Inlet jobs;
//   relay.connect(relay::group("jobs", jobs), relay::group("work", workers), sink);
//
//   class Feed : public relay::Handler {
//     relay::Inlet& jobs_;
//    public:
//     explicit Feed(relay::Inlet& jobs) : jobs_(jobs) {}
//     void run() override {
//       for (int i = 0; i < 1000; ++i) jobs_.send(i, std::string("job"));
//       jobs_.close();
//     }
//   };
//
// An Inlet stands where a source group would, alone in its group, with any
// grouping on the edges leaving it. Its send() and send_to() are called in
// the main process, from the Handler's run() while start() runs; they block
// while the edge has no credit and follow maxsize like an actor's. close()
// ends its stream; run() returning closes it too (and without a Handler the
// stream is empty).
//
// How: an Inlet is an actor like any other, forked by start() on the
// driver's host (it cannot be placed on workers). Its process forwards what
// the main process hands it over a local socket, and hands credit back for
// the messages it has sent on: besides the edge's own bound, at most
// ahead() messages wait between the main process and the Inlet's process:
// the Relay's maxsize (capped at kMostAhead), or kMostAhead without one.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "relay/actor.h"
#include "relay/internal/codec.h"

namespace relay {

namespace internal {
struct InletChannel;
}

class Inlet final : public Actor {
 public:
  // Messages the main process may hand over before the Inlet's process has
  // sent them on, at most (a hop within the host costs a round trip per
  // credit, so a window too small would throttle the feed).
  static constexpr std::uint64_t kMostAhead = 1024;

  Inlet();
  explicit Inlet(std::string name);
  ~Inlet() override;

  // Sends one message to the Inlet's default output / its output `output`,
  // from the main process during start(). Blocks while the edge has no
  // credit. Throws relay::Error before start(), after close(), once the run
  // has stopped (also while blocked), and from any process but the main one.
  template <class... Args>
  void send(const Args&... args) {
    send_to(std::string_view(), args...);
  }
  template <class... Args>
  void send_to(std::string_view output, const Args&... args) {
    std::lock_guard lock(mu_);
    buffer_.clear();
    buffer_.put('D');
    internal::pack_message(buffer_, args...);
    hand_over(output);
  }
  // Ends the stream: the receivers' loop() returns once every other sender
  // ended too. Idempotent; a no-op after the run stopped.
  void close();

  // Runs in the Inlet's own process: forwards what the main process hands
  // over. Not for users.
  void loop() override;

 private:
  friend struct internal::InletChannel;
  void hand_over(std::string_view output);  // mu_ held

  std::mutex mu_;
  internal::Buffer buffer_;
  std::string endpoint_;  // the local socket to the Inlet's process (set by start())
  std::uint64_t ahead_ = kMostAhead;
  std::unique_ptr<internal::InletChannel> channel_;  // main process, during a run
};

}  // namespace relay
