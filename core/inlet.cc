#include "relay/inlet.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "relay/errors.h"
#include "relay/runtime/inlet_channel.h"
#include "relay/internal/transport.h"

namespace relay {
namespace internal {
namespace {

// The two parts the main process hands over: 'o' + the output's name, then
// the data frame; or one part, 'e', for the end of the stream. The Inlet's
// process answers with the total it has sent on, as a msgpack uint.
constexpr char kHandOver = 'o';
constexpr char kEnd = 'e';
constexpr auto kWaitPeriod = std::chrono::milliseconds(100);

}  // namespace

struct InletChannel {
  zmq::context_t ctx{1};
  zmq::socket_t socket;
  std::uint64_t handed = 0;    // messages handed over
  std::uint64_t forwarded = 0;  // the Inlet's process's last total
  bool closed = false;

  static void set_endpoint(Inlet& inlet, const std::string& endpoint,
                           std::optional<std::size_t> maxsize) {
    inlet.endpoint_ = endpoint;
    inlet.ahead_ = std::clamp<std::uint64_t>(maxsize.value_or(Inlet::kMostAhead), 1,
                                             Inlet::kMostAhead);
  }
  static void begin(Inlet& inlet, bool has_handler);
  static void finish(Inlet& inlet);
  static void end(Inlet& inlet);
};

std::string inlet_endpoint(const std::string& data_prefix, std::uint32_t id) {
  return data_prefix + "inlet-" + std::to_string(id);
}

void InletChannel::begin(Inlet& inlet, bool has_handler) {
  std::lock_guard lock(inlet.mu_);
  auto channel = std::make_unique<InletChannel>();
  channel->socket = make_socket(channel->ctx, zmq::socket_type::pair);
  // No high-water mark: the credits bound what is outstanding, and a send()
  // that blocked in ZeroMQ (the Inlet's process gone, the pipe full) could
  // not see that the run has stopped.
  channel->socket.set(zmq::sockopt::sndhwm, 0);
  channel->socket.set(zmq::sockopt::rcvhwm, 0);
  channel->socket.connect(inlet.endpoint_);
  inlet.channel_ = std::move(channel);
  // Nobody will call send(): the stream is empty.
  if (!has_handler) {
    inlet.channel_->socket.send(zmq::buffer(&kEnd, 1), zmq::send_flags::none);
    inlet.channel_->closed = true;
  }
}

void InletChannel::finish(Inlet& inlet) { inlet.close(); }

void InletChannel::end(Inlet& inlet) {
  std::lock_guard lock(inlet.mu_);
  inlet.channel_.reset();
}

void begin_inlet(Actor& actor, bool has_handler) {
  if (auto* inlet = dynamic_cast<Inlet*>(&actor)) InletChannel::begin(*inlet, has_handler);
}

void finish_inlet(Actor& actor) {
  if (auto* inlet = dynamic_cast<Inlet*>(&actor)) InletChannel::finish(*inlet);
}

void end_inlet(Actor& actor) {
  if (auto* inlet = dynamic_cast<Inlet*>(&actor)) InletChannel::end(*inlet);
}

bool is_inlet(const Actor& actor) { return dynamic_cast<const Inlet*>(&actor) != nullptr; }

void set_inlet_endpoint(Actor& actor, const std::string& endpoint,
                        std::optional<std::size_t> maxsize) {
  if (auto* inlet = dynamic_cast<Inlet*>(&actor)) {
    InletChannel::set_endpoint(*inlet, endpoint, maxsize);
  }
}

}  // namespace internal

Inlet::Inlet() : Actor() {}
Inlet::Inlet(std::string name) : Actor(std::move(name)) {}
Inlet::~Inlet() = default;

void Inlet::hand_over(std::string_view output) {
  internal::InletChannel* c = channel_.get();
  if (c == nullptr) {
    throw Error("Inlet '" + name() +
                "': send() works in the main process while start() runs (from the Handler's "
                "run()), not before start() or after it");
  }
  if (c->closed) throw Error("Inlet '" + name() + "': send() after close()");
  auto stopped = [&] {
    return Error("Inlet '" + name() + "': the run has stopped; its messages go nowhere");
  };
  while (c->handed - c->forwarded >= ahead_) {
    if (!is_alive()) throw stopped();
    zmq::pollitem_t item{c->socket.handle(), 0, ZMQ_POLLIN, 0};
    internal::poll(&item, 1, internal::kWaitPeriod);
    zmq::message_t reply;
    while (c->socket.recv(reply, zmq::recv_flags::dontwait)) {
      msgpack::zone zone(64);
      const auto total =
          internal::decode_value(zone, reply.data<char>(), reply.size()).as<std::uint64_t>();
      if (total > c->forwarded && total <= c->handed) c->forwarded = total;
    }
  }
  if (!is_alive()) throw stopped();
  std::string head(1, internal::kHandOver);
  head.append(output);
  c->socket.send(zmq::buffer(head), zmq::send_flags::sndmore);
  c->socket.send(zmq::buffer(buffer_.data(), buffer_.size()), zmq::send_flags::none);
  ++c->handed;
}

void Inlet::close() {
  std::lock_guard lock(mu_);
  internal::InletChannel* c = channel_.get();
  if (c == nullptr || c->closed) return;
  c->closed = true;
  c->socket.send(zmq::buffer(&internal::kEnd, 1), zmq::send_flags::none);
}

void Inlet::loop() {
  zmq::context_t ctx(1);
  zmq::socket_t socket = internal::make_socket(ctx, zmq::socket_type::pair);
  // As in the main process: the credits bound the traffic, and a credit that
  // blocked here while the main process is slow to read would stall the feed.
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.bind(endpoint_);
  std::uint64_t forwarded = 0;
  std::uint64_t credited = 0;
  auto credit = [&] {
    internal::Buffer b;
    msgpack::pack(b, forwarded);
    socket.send(zmq::buffer(b.data(), b.size()), zmq::send_flags::none);
    credited = forwarded;
  };
  for (;;) {
    zmq::message_t head;
    if (!socket.recv(head, zmq::recv_flags::dontwait)) {
      // What it sent must not wait in a batch while it waits for the main
      // process (which may be waiting for those very messages' results).
      flush();
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      if (internal::poll(&item, 1, internal::kWaitPeriod) == 0) {
        if (forwarded != credited) credit();
        continue;
      }
      if (!socket.recv(head, zmq::recv_flags::dontwait)) continue;
    }
    if (head.size() == 1 && head.data<char>()[0] == internal::kEnd) return;
    zmq::message_t frame;
    if (head.size() < 1 || head.data<char>()[0] != internal::kHandOver || !head.more() ||
        !socket.recv(frame, zmq::recv_flags::dontwait)) {
      throw Error("Inlet '" + name() + "': a malformed hand-over from the main process");
    }
    internal::Buffer& b = buffer_;  // unused in this process otherwise
    b.clear();
    b.write(frame.data<char>(), frame.size());
    const std::string_view output(head.data<char>() + 1, head.size() - 1);
    if (output.empty()) {
      internal::send_packed(*this, b);
    } else {
      internal::send_packed_to(*this, output, b);
    }
    ++forwarded;
    if (forwarded - credited >= std::max<std::uint64_t>(1, ahead_ / 4)) credit();
  }
}

}  // namespace relay
