#include "relay/internal/transport.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>
#include <utility>

#include "relay/errors.h"

namespace relay::internal {

zmq::socket_t make_socket(zmq::context_t& ctx, zmq::socket_type type) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::reconnect_ivl, 2);
  s.set(zmq::sockopt::reconnect_ivl_max, 100);
  return s;
}

void bind_retrying(zmq::socket_t& socket, const std::string& endpoint,
                   std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    try {
      socket.bind(endpoint);
      return;
    } catch (const zmq::error_t& e) {
      if (e.num() != EADDRINUSE || std::chrono::steady_clock::now() >= deadline) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string bind_in_range(zmq::socket_t& socket, const std::string& host, std::uint16_t first,
                          std::uint16_t last, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    for (std::uint32_t port = first; port <= last; ++port) {
      const std::string endpoint = "tcp://" + host + ":" + std::to_string(port);
      try {
        socket.bind(endpoint);
        return endpoint;
      } catch (const zmq::error_t& e) {
        if (e.num() != EADDRINUSE) throw Error("cannot bind " + endpoint + ": " + e.what());
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw Error("no free port in " + std::to_string(first) + "-" + std::to_string(last) + " on " +
              host);
}

int poll(zmq::pollitem_t* items, std::size_t n, std::chrono::milliseconds timeout) {
  try {
    return zmq::poll(items, n, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    for (std::size_t i = 0; i < n; ++i) items[i].revents = 0;
    return 0;
  }
}

PreboundIpc::PreboundIpc(const std::string& endpoint) : endpoint_(endpoint) {
  constexpr std::string_view kAbstract = "ipc://@";
  sockaddr_un address{};
  // After the '@'; libzmq wants the name with its '@' shorter than sun_path.
  const std::size_t name = endpoint.size() - kAbstract.size();
  if (endpoint.rfind(kAbstract, 0) != 0 || name == 0 || name + 2 > sizeof address.sun_path) {
    throw Error("cannot listen on " + endpoint + ": not an abstract ipc endpoint");
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, endpoint.data() + kAbstract.size(), name);
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      ::listen(fd_, SOMAXCONN) != 0) {
    const std::string why = std::strerror(errno);
    close();
    throw Error("cannot listen on " + endpoint + ": " + why);
  }
}

PreboundIpc::PreboundIpc(PreboundIpc&& other) noexcept
    : endpoint_(std::move(other.endpoint_)), fd_(std::exchange(other.fd_, -1)) {}

PreboundIpc& PreboundIpc::operator=(PreboundIpc&& other) noexcept {
  if (this != &other) {
    close();
    endpoint_ = std::move(other.endpoint_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void PreboundIpc::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void PreboundIpc::bind(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::use_fd, fd_);
  try {
    socket.bind(endpoint_);
  } catch (...) {
    socket.set(zmq::sockopt::use_fd, -1);
    throw;
  }
  fd_ = -1;  // the socket's listener closes it
  socket.set(zmq::sockopt::use_fd, -1);  // later binds make their own
}

bool send_frame(zmq::socket_t& socket, Buffer& frame, zmq::send_flags flags) {
  // Below this size a copy is cheaper than a malloc'd block freed by ZeroMQ's
  // I/O thread.
  constexpr std::size_t kZeroCopyAtLeast = 8192;
  if (frame.size() >= kZeroCopyAtLeast) {
    const std::size_t size = frame.size();
    if (frame.capacity() >= kPooledAtLeast && block_pool_enabled()) {
      // Back to the pool when ZeroMQ is done with it (on its I/O thread); the
      // hint carries the block's capacity.
      const std::size_t capacity = frame.capacity();
      zmq::message_t msg(
          frame.release(), size,
          [](void* p, void* hint) { give_block(p, reinterpret_cast<std::uintptr_t>(hint)); },
          reinterpret_cast<void*>(static_cast<std::uintptr_t>(capacity)));
      return socket.send(msg, flags).has_value();
    }
    zmq::message_t msg(frame.release(), size, [](void* p, void*) { std::free(p); }, nullptr);
    return socket.send(msg, flags).has_value();
  }
  return socket.send(zmq::const_buffer(frame.data(), frame.size()), flags).has_value();
}

std::string random_hex(std::size_t n) {
  std::string bytes((n + 1) / 2, '\0');
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  if (!urandom.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) {
    std::random_device rd;
    for (char& c : bytes) c = static_cast<char>(rd());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  out.resize(n);
  return out;
}

const std::string& local_socket_prefix() {
  static const std::string prefix =
      "relay-" + std::to_string(::getpid()) + "-" + random_hex(8) + "-";
  return prefix;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

}  // namespace relay::internal
