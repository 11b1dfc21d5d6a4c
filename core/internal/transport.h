// relay/internal/transport.h: ZeroMQ sockets as relay sets them up.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "relay/internal/codec.h"
#include "relay/internal/wire.h"

namespace relay::internal {

// A socket with linger 0 (every exchange relay cares about is acknowledged, so
// nothing is left to flush at close) and fast reconnects (actors may connect
// before the broker has bound).
zmq::socket_t make_socket(zmq::context_t& ctx, zmq::socket_type type);

// Binds `endpoint`, trying again for up to `patience` while the address is in
// use: ZeroMQ closes a socket's listener on its I/O thread after close()
// returns, so a run that binds the port the previous one used may come too
// early. Throws zmq::error_t as bind() does.
void bind_retrying(zmq::socket_t& socket, const std::string& endpoint,
                   std::chrono::milliseconds patience = std::chrono::milliseconds(2000));

// Binds tcp://`host`:PORT at the first port of [first, last] that is free
// and returns the endpoint bound. While every one is in use it tries the
// range again for up to `patience` (as bind_retrying: relay-broker's last run
// may still be closing its listener on a one-port range), then throws
// relay::Error "no free port in FIRST-LAST on HOST"; any other failure is
// relay::Error with ZeroMQ's text.
std::string bind_in_range(zmq::socket_t& socket, const std::string& host, std::uint16_t first,
                          std::uint16_t last,
                          std::chrono::milliseconds patience = std::chrono::milliseconds(2000));

// A listening abstract ipc socket ("ipc://@NAME") made without ZeroMQ, so
// that it can exist before the actors are forked, when no context may. An
// actor's connect then lands in its backlog at the first attempt; without it,
// an actor that starts before the broker binds fails to connect and backs off
// (2, 4, 8 ... 100 ms), and the start barrier waits for the slowest retry.
// The broker hands it to ZeroMQ with bind_prebound(). A forked child that is
// not the broker must close() its copy.
class PreboundIpc {
 public:
  PreboundIpc() = default;
  // Throws relay::Error if `endpoint` is not abstract ipc or cannot be bound.
  explicit PreboundIpc(const std::string& endpoint);
  PreboundIpc(PreboundIpc&& other) noexcept;
  PreboundIpc& operator=(PreboundIpc&& other) noexcept;
  PreboundIpc(const PreboundIpc&) = delete;
  PreboundIpc& operator=(const PreboundIpc&) = delete;
  ~PreboundIpc() { close(); }

  const std::string& endpoint() const noexcept { return endpoint_; }
  bool bound() const noexcept { return fd_ >= 0; }
  void close() noexcept;
  // Binds `socket` on this listener (ZMQ_USE_FD), which the socket then owns.
  void bind(zmq::socket_t& socket);

 private:
  std::string endpoint_;
  int fd_ = -1;
};

// zmq::poll that returns 0 (nothing ready) when a signal interrupts it: relay's
// signal handler only writes a pipe, which the caller polls too.
int poll(zmq::pollitem_t* items, std::size_t n, std::chrono::milliseconds timeout);
inline int poll(std::vector<zmq::pollitem_t>& items, std::chrono::milliseconds timeout) {
  return poll(items.data(), items.size(), timeout);
}

// Sends `frame` as one message; large buffers are handed to ZeroMQ without a
// copy (the buffer is empty afterwards). Blocks while the peer's pipe is full.
// Returns false if `flags` has dontwait and the message would block.
[[nodiscard]] bool send_frame(zmq::socket_t& socket, Buffer& frame,
                              zmq::send_flags flags = zmq::send_flags::none);

// Sends a one-byte kind followed by a packed msgpack value.
template <class T>
bool send_tagged(zmq::socket_t& socket, char kind, const T& value,
                 zmq::send_flags flags = zmq::send_flags::none) {
  Buffer b;
  b.put(kind);
  msgpack::pack(b, value);
  return send_frame(socket, b, flags);
}

// Returns a fresh random token of `n` hex digits (from /dev/urandom).
std::string random_hex(std::size_t n);

// The start of every abstract ipc socket name a process's relays use:
// "relay-<pid>-<random token of this process>-". The token keeps names apart
// across PID namespaces that share one network namespace.
const std::string& local_socket_prefix();

// Returns this host's name.
std::string host_name();

}  // namespace relay::internal
