#include "relay/internal/security.h"

#include <zmq.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "relay/internal/transport.h"

namespace relay::internal {

CurveKey load_curve_key(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("relay key: cannot read key file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  std::string secret;
  for (char c : text.str()) {
    if (!std::isspace(static_cast<unsigned char>(c))) secret += c;
  }
  if (secret.size() != 40) {
    throw std::invalid_argument("relay key: '" + path +
                                "' does not hold a Z85 CURVE secret key (40 characters); "
                                "make one with relay-keygen");
  }
  char public_key[41] = {};
  if (zmq_curve_public(public_key, secret.c_str()) != 0) {
    throw std::invalid_argument("relay key: '" + path + "' is not a valid Z85 CURVE secret key");
  }
  return {public_key, secret};
}

CurveKey make_curve_key() {
  char public_key[41] = {};
  char secret_key[41] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    throw std::runtime_error("relay key: this libzmq has no CURVE support");
  }
  return {public_key, secret_key};
}

void curve_server(zmq::socket_t& socket, const CurveKey& key) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, key.secret_key);
  socket.set(zmq::sockopt::zap_domain, "relay");
}

void curve_client(zmq::socket_t& socket, const CurveKey& key) {
  socket.set(zmq::sockopt::curve_serverkey, key.public_key);
  socket.set(zmq::sockopt::curve_publickey, key.public_key);
  socket.set(zmq::sockopt::curve_secretkey, key.secret_key);
}

ZapHandler::ZapHandler(zmq::context_t& ctx, const CurveKey& key,
                       std::function<void(const std::string&)> on_refused)
    : ctx_(ctx), public_key_(key.public_key), on_refused_(std::move(on_refused)) {
  handler_ = make_socket(ctx_, zmq::socket_type::rep);
  handler_.bind("inproc://zeromq.zap.01");
  stop_endpoint_ = "inproc://relay-zap-stop-" + random_hex(8);
  stop_ = make_socket(ctx_, zmq::socket_type::pair);
  stop_.bind(stop_endpoint_);
  thread_ = std::thread([this] { serve(); });
}

ZapHandler::~ZapHandler() {
  try {
    stop_.send(zmq::str_buffer("stop"), zmq::send_flags::dontwait);
  } catch (...) {
  }
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::serve() {
  zmq::socket_t stop = make_socket(ctx_, zmq::socket_type::pair);
  stop.connect(stop_endpoint_);
  // Public keys arrive as 32 raw bytes; compare in that form.
  std::string expected(32, '\0');
  zmq_z85_decode(reinterpret_cast<std::uint8_t*>(expected.data()), public_key_.c_str());
  for (;;) {
    zmq::pollitem_t items[] = {{handler_.handle(), 0, ZMQ_POLLIN, 0},
                               {stop.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, std::chrono::milliseconds(-1));
    if (items[1].revents & ZMQ_POLLIN) return;
    // A request: version, request id, domain, address, identity, mechanism,
    // credentials...
    std::vector<zmq::message_t> request;
    do {
      zmq::message_t part;
      if (!handler_.recv(part)) break;
      request.push_back(std::move(part));
    } while (request.back().more());
    if (request.size() < 6) continue;
    const std::string mechanism = request[5].to_string();
    const bool ok = mechanism == "CURVE" && request.size() >= 7 &&
                    request[6].to_string() == expected;
    if (!ok && on_refused_) on_refused_(request[3].to_string());
    const std::string status = ok ? "200" : "400";
    const std::string text = ok ? "OK" : "unknown key";
    handler_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    handler_.send(request[1], zmq::send_flags::sndmore);
    handler_.send(zmq::buffer(status), zmq::send_flags::sndmore);
    handler_.send(zmq::buffer(text), zmq::send_flags::sndmore);
    handler_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
    handler_.send(zmq::str_buffer(""), zmq::send_flags::none);
  }
}

}  // namespace relay::internal
