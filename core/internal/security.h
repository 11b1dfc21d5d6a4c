// relay/internal/security.h: CURVE encryption and authentication between hosts.
//
// A cluster shares one key: a CURVE secret key in Z85 (40 characters), kept in
// a file (relay-keygen FILE makes one). Every socket of a secured run uses it:
// binding sockets as CURVE servers, connecting ones as CURVE clients, both with
// the cluster's key pair. A ZAP handler in each process that binds accepts a
// client only if its public key is the cluster's: a peer without the secret
// key cannot complete the handshake as that public key, so it can neither
// join, nor send into a stage, nor subscribe to logs. (Without a ZAP handler
// CURVE encrypts but accepts any client key.)
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <zmq.hpp>

namespace relay::internal {

struct CurveKey {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// Reads a key file (a Z85 secret key, surrounding white space ignored).
// Throws std::invalid_argument naming the file and what is wrong.
CurveKey load_curve_key(const std::string& path);
// Makes a new key.
CurveKey make_curve_key();

// Sets up `socket` as a CURVE server (bind side) or client (connect side).
void curve_server(zmq::socket_t& socket, const CurveKey& key);
void curve_client(zmq::socket_t& socket, const CurveKey& key);

// Answers ZAP requests on inproc://zeromq.zap.01 in `ctx`: only the cluster's
// public key is let in. Runs on its own thread until destroyed (before the
// context is closed).
class ZapHandler {
 public:
  // `on_refused` (if given) is called on the handler's thread with the address
  // of each peer turned away.
  ZapHandler(zmq::context_t& ctx, const CurveKey& key,
             std::function<void(const std::string&)> on_refused = {});
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  void serve();
  zmq::context_t& ctx_;
  std::string public_key_;
  std::function<void(const std::string&)> on_refused_;
  zmq::socket_t handler_;
  zmq::socket_t stop_;
  std::string stop_endpoint_;
  std::thread thread_;
};

}  // namespace relay::internal
