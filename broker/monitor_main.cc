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
  app.add_flag("--no-stats", no_stats, "Logs only, no counters");
  app.add_option("--key", key_file, "The cluster key, if the relay uses one")->type_name("FILE");
  app.add_option("--timeout", timeout,
                 "Give up after SEC seconds without a word (default: wait; a monitor\n"
                 "with the wrong key hears nothing at all)")
      ->type_name("SEC");
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
    if (options.endpoint.rfind("tcp://", 0) != 0 && options.endpoint.rfind("ipc://", 0) != 0) {
      throw CLI::ValidationError("ENDPOINT '" + options.endpoint + "' is not tcp://HOST:PORT");
    }
  });
  if (parsed >= 0) return parsed;
  options.stats = !no_stats;
  options.timeout = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
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
