#include "broker/monitor_http.h"

#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "relay/errors.h"

namespace relay::monitor {

HttpServer::HttpServer(const MonitorState& state, const std::string& host, int port)
    : state_(state), server_(std::make_unique<httplib::Server>()) {
  httplib::Server& s = *server_;
  s.set_payload_max_length(kMaxBody);
  // A browser polls twice a second; a client that opens a connection and
  // says nothing must not hold one of the few threads for long.
  s.set_read_timeout(std::chrono::seconds(2));
  s.set_write_timeout(std::chrono::seconds(2));
  s.set_keep_alive_max_count(100);
  s.set_keep_alive_timeout(2);
  // Before any handler: the library reads a body only for the methods that
  // usually carry one, so a GET announcing a large one would pass; and it
  // has no limit on the number of header lines (each is limited).
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.headers.size() > kMaxHeaders) {
      res.status = 431;
    } else if (const std::string n = req.get_header_value("Content-Length");
               !n.empty() && (n.size() > 9 || n.find_first_not_of("0123456789") != n.npos ||
                              std::stoul(n) > kMaxBody)) {
      res.status = 413;
    } else if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.set_header("Connection", "close");
    res.set_content("relay-monitor: HTTP " + std::to_string(res.status) + "\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(kPage, "text/html; charset=utf-8");
  });
  s.Get("/api/state", [this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(to_json(state_.snapshot()), "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(to_prometheus(state_.snapshot()), "text/plain; version=0.0.4; charset=utf-8");
  });
  // The library answers unknown paths (404), bad requests (400), long
  // request lines (414) and bodies over the limit (413) by itself; this
  // gives them a body saying so instead of an empty one.
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_content("relay-monitor: HTTP " + std::to_string(res.status) + "\n", "text/plain");
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content("relay-monitor: internal error\n", "text/plain");
  });
  if (port == 0) {
    port_ = s.bind_to_any_port(host);
  } else if (s.bind_to_port(host, port)) {
    port_ = port;
  } else {
    port_ = -1;
  }
  if (port_ <= 0) {
    throw Error("--http: cannot bind " + host + ":" + std::to_string(port) + ": " +
                std::strerror(errno));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // stop() is a no-op until the listener runs: wait for it, so that a
  // stop() right after this (a run that is already over) cannot be lost.
  for (int i = 0; i < 500 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

HttpServer::~HttpServer() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::stop() noexcept {
  if (server_) server_->stop();
}

}  // namespace relay::monitor
