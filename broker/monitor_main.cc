// relay-monitor: prints a running relay's logs and counters (see monitor.h).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bazel/cli.h"
#include "broker/monitor.h"

int main(int argc, char** argv) {
  CLI::App app(
      "Prints the logs, per-actor counters and end of a relay that publishes at\n"
      "ENDPOINT (Relay::monitor(\"tcp://HOST:PORT\")), until the run ends.",
      "relay-monitor");
  relay::cli::setup(app);
  relay::monitor::Options options;
  std::string level;
  std::string key_file;
  double timeout = 0;
  std::string http;
  double linger = 5;
  bool insecure = false;
  app.add_option("ENDPOINT", options.endpoint, "tcp://HOST:PORT (or ipc://PATH)")
      ->type_name("")
      ->required();
  app.add_option("--level", level,
                 "trace|debug|info|warning|error|critical: the least shown (trace)")
      ->type_name("LEVEL");
  app.add_option("--group", options.groups, "Show only this group (repeatable)")
      ->type_name("NAME")
      ->allow_extra_args(false);
  bool no_stats = false;
  app.add_flag("--no-stats", no_stats, "Logs only: no plan, actor lines or counters");
  app.add_option("--key", key_file, "The cluster key, if the relay uses one")->type_name("FILE");
  app.add_option("--timeout", timeout,
                 "Give up after SEC seconds without a word (default: wait; a monitor\n"
                 "with the wrong key hears nothing at all)")
      ->type_name("SEC");
  app.add_option("--http", http,
                 "Also serve a live page at http://ADDRESS:PORT/, the state as JSON at\n"
                 "/api/state and Prometheus metrics at /metrics (PORT 0: any free one;\n"
                 "the URL is printed on stderr)")
      ->type_name("ADDRESS:PORT");
  app.add_option("--linger", linger,
                 "With --http: keep serving SEC seconds after the run's end (default 5;\n"
                 "-1: until stopped), so that the page shows the end")
      ->type_name("SEC");
  app.add_flag("--allow-insecure-network", insecure,
               "Allow --http on a non-loopback address without --key (the page and the\n"
               "metrics have no access control of their own)");
  app.footer(
      "Exit status: 0 the run ended well, 1 it stopped with an error, 2 bad usage,\n"
      "3 timed out.");
  const int parsed = relay::cli::parse(app, argc, argv, [&] {
    if (timeout < 0) throw CLI::ValidationError("--timeout", "wants seconds >= 0");
    if (!level.empty()) {
      static const char* kLevels[] = {"trace", "debug", "info", "warning", "error", "critical"};
      options.min_level = -1;
      for (int l = 0; l < 6; ++l) {
        if (level == kLevels[l] || (level == "warn" && l == 3)) options.min_level = l;
      }
      if (options.min_level < 0)
        throw CLI::ValidationError("--level", "unknown level '" + level + "'");
    }
    if (!http.empty()) {
      const std::size_t colon = http.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == http.size()) {
        throw CLI::ValidationError("--http", "'" + http + "' is not ADDRESS:PORT");
      }
      std::string host = http.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
      }
      const std::string port = http.substr(colon + 1);
      if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
          std::stoi(port) > 65535) {
        throw CLI::ValidationError("--http", "'" + port + "' is not a port number");
      }
      const bool loopback = host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
      if (!loopback && key_file.empty() && !insecure) {
        throw CLI::ValidationError(
            "--http " + http +
            " is not a loopback address, and without a key anyone who reaches it could read "
            "the logs; give --key FILE, or --allow-insecure-network if the network is trusted");
      }
      options.http_host = host;
      options.http_port = std::stoi(port);
    }
    if (linger < 0 && linger != -1)
      throw CLI::ValidationError("--linger", "wants seconds >= 0 or -1");
    if (options.endpoint.rfind("tcp://", 0) != 0 && options.endpoint.rfind("ipc://", 0) != 0) {
      throw CLI::ValidationError("ENDPOINT '" + options.endpoint + "' is not tcp://HOST:PORT");
    }
  });
  if (parsed >= 0) return parsed;
  options.stats = !no_stats;
  options.timeout = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
  options.linger = std::chrono::milliseconds(static_cast<long long>(linger * 1000));
  options.serving = [&](int port) {
    const bool v6 = options.http_host.find(':') != std::string::npos;
    std::fprintf(stderr, "relay-monitor: serving http://%s%s%s:%d/\n", v6 ? "[" : "",
                 options.http_host.c_str(), v6 ? "]" : "", port);
    std::fflush(stderr);
  };
  if (!key_file.empty()) {
    try {
      options.key = relay::internal::load_curve_key(key_file);
    } catch (const std::exception& e) {
      relay::cli::usage_error(app, e.what());
    }
  }
  // On stderr, so that stdout holds only what the relay published.
  if (options.timeout.count() > 0) {
    std::fprintf(stderr, "relay-monitor: waiting for a relay at %s (giving up after %.3g s)\n",
                 options.endpoint.c_str(), static_cast<double>(options.timeout.count()) / 1000.0);
  } else {
    std::fprintf(stderr, "relay-monitor: waiting for a relay at %s (Ctrl-C to stop)\n",
                 options.endpoint.c_str());
  }
  try {
    return static_cast<int>(relay::monitor::run(options, std::cout));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "relay-monitor: %s\n", e.what());
    return 1;
  }
}
