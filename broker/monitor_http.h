// broker/monitor_http.h: relay-monitor --http, the page and the scrape.
//
// HttpServer serves a MonitorState over HTTP (cpp-httplib, Debian's
// libcpp-httplib-dev) from threads of its own while the SUB loop feeds the
// state:
//   GET /            the page: HTML with a small inline script that polls
//                    /api/state twice a second (no network access needed)
//   GET /api/state   to_json(snapshot())
//   GET /metrics     to_prometheus(snapshot()), text/plain; version=0.0.4
// Anything else is 404; a method other than GET or HEAD 405; a request
// announcing a body over kMaxBody 413; more than kMaxHeaders header lines
// 431; a malformed request or a header line over 8 KiB 400, a request line
// over 8 KiB 414 (limits compiled into Debian's build of the library). The
// library reads all header lines before this can count them: a client can
// make it hold that many for as long as it keeps sending (each read waits
// at most 2 s).
//
// The caller decides whether the address may be bound (the rules of
// Relay::monitor(): loopback, or a key, or --allow-insecure-network).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "broker/monitor_state.h"

namespace httplib {
class Server;
}

namespace relay::monitor {

inline constexpr std::size_t kMaxBody = 4096;    // bytes of a request body
inline constexpr std::size_t kMaxHeaders = 100;  // header lines of a request

class HttpServer {
 public:
  // Binds host:port (port 0: any free one). Throws relay::Error naming the
  // address if it cannot. `state` must outlive the server.
  HttpServer(const MonitorState& state, const std::string& host, int port);
  // Stops serving and joins the threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port bound.
  int port() const noexcept { return port_; }
  // Stops serving (safe twice); requests under way finish first.
  void stop() noexcept;

 private:
  const MonitorState& state_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// The page served at "/".
extern const char* const kPage;

}  // namespace relay::monitor
