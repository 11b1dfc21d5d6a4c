// relay-monitor: prints a running relay's logs and counters (see monitor.h).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "broker/monitor.h"

namespace {

constexpr const char* kUsage =
    "usage: relay-monitor [options] ENDPOINT\n"
    "Prints the logs, per-actor counters and end of a relay that publishes at\n"
    "ENDPOINT (Relay::monitor(\"tcp://HOST:PORT\")), until the run ends.\n"
    "  --level LEVEL    trace|debug|info|warning|error|critical: the least shown (trace)\n"
    "  --group NAME     show only this group (repeatable)\n"
    "  --no-stats       logs only, no counters\n"
    "  --key FILE       the cluster key, if the relay uses one\n"
    "  --timeout SEC    give up after SEC seconds without a word (default: wait;\n"
    "                   a monitor with the wrong key hears nothing at all)\n"
    "Exit status: 0 the run ended well, 1 it stopped with an error, 2 bad usage,\n"
    "3 timed out.\n";

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "relay-monitor: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  relay::monitor::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--level") {
      static const char* kLevels[] = {"trace", "debug", "info", "warning", "error", "critical"};
      const std::string level = value();
      options.min_level = -1;
      for (int l = 0; l < 6; ++l) {
        if (level == kLevels[l] || (level == "warn" && l == 3)) options.min_level = l;
      }
      if (options.min_level < 0) usage_error("unknown level '" + level + "'");
    } else if (arg == "--group") {
      options.groups.insert(value());
    } else if (arg == "--no-stats") {
      options.stats = false;
    } else if (arg == "--key") {
      try {
        options.key = relay::internal::load_curve_key(value());
      } catch (const std::exception& e) {
        usage_error(e.what());
      }
    } else if (arg == "--timeout") {
      const std::string seconds = value();
      char* end = nullptr;
      const double s = std::strtod(seconds.c_str(), &end);
      if (end == seconds.c_str() || *end != '\0' || s < 0) usage_error("bad --timeout " + seconds);
      options.timeout = std::chrono::milliseconds(static_cast<long long>(s * 1000));
    } else if (!arg.empty() && arg[0] == '-') {
      usage_error("unknown option " + arg);
    } else if (options.endpoint.empty()) {
      options.endpoint = arg;
    } else {
      usage_error("one ENDPOINT only");
    }
  }
  if (options.endpoint.empty()) usage_error("no ENDPOINT");
  if (options.endpoint.rfind("tcp://", 0) != 0 && options.endpoint.rfind("ipc://", 0) != 0) {
    usage_error("ENDPOINT '" + options.endpoint + "' is not tcp://HOST:PORT");
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
