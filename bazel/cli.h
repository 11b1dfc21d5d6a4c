// bazel/cli.h: the command line every relay program shares, on CLI11
// (Debian's libcli11-dev). Target //bazel:cli; not part of the library.
//
// Every program gets the same:
//   --help, -h     the usage on stdout, exit status 0
//   --version      "NAME VERSION" (bazel/version.bzl) on stdout, exit status 0
//   bad usage      "NAME: WHAT" and "Run with --help for more information."
//                  on stderr, exit status 2
//
//   CLI::App app("What it does.", "relay-broker");
//   relay::cli::setup(app);
//   app.add_option("--listen", listen, "...")->required();
//   if (const int status = relay::cli::parse(app, argc, argv); status >= 0) return status;
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "bazel/relay_version.h"

namespace relay::cli {

// Exit status for bad usage, in every relay program.
inline constexpr int kUsageStatus = 2;

// The one-line error every relay program prints for bad usage.
inline std::string usage_text(const std::string& program, const std::string& why) {
  return program + ": " + why + "\nRun with --help for more information.\n";
}

// Gives `app` relay's --version and error wording.
inline void setup(CLI::App& app) {
  app.set_version_flag("--version", app.get_name() + " " + RELAY_VERSION,
                       "Print the version and exit");
  app.failure_message(
      [](const CLI::App* a, const CLI::Error& e) { return usage_text(a->get_name(), e.what()); });
}

// Parses argv, then runs `check` (which may throw CLI::ValidationError for
// what CLI11 cannot check alone: flags that go together, say). Returns -1 to
// go on, or the status main() should return: 0 after --help or --version,
// kUsageStatus after bad usage (CLI11's own exit codes are not relay's).
inline int parse(CLI::App& app, int argc, char** argv, const std::function<void()>& check = {}) {
  try {
    app.parse(argc, argv);
    if (check) check();
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsageStatus;
  }
  return -1;
}

// Reports bad usage found after parse() (a key file that cannot be read, say)
// in the same words, and exits with kUsageStatus.
[[noreturn]] inline void usage_error(const CLI::App& app, const std::string& why) {
  std::fputs(usage_text(app.get_name(), why).c_str(), stderr);
  std::exit(kUsageStatus);
}

}  // namespace relay::cli
