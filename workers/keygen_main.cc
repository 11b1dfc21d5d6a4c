// relay-keygen: writes a new cluster key (a CURVE secret key in Z85) to FILE.
// Give the same file to the driver (Relay::secure) and every worker
// (--relay-key FILE). Keep it secret: whoever holds it can join the cluster.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "bazel/cli.h"
#include "relay/internal/security.h"

int main(int argc, char** argv) {
  CLI::App app(
      "Writes a new relay cluster key (a CURVE secret key, Z85) to FILE, readable by\n"
      "its owner only. Give the same file to the driver (Relay::secure(FILE)) and to\n"
      "every worker (--relay-key FILE).",
      "relay-keygen");
  relay::cli::setup(app);
  std::string file;
  app.add_option("FILE", file, "Where to write the key")->required();
  app.footer("Exit status: 0 written, 1 cannot write FILE, 2 bad usage.");
  if (const int status = relay::cli::parse(app, argc, argv); status >= 0) return status;

  const relay::internal::CurveKey key = relay::internal::make_curve_key();
  const mode_t old = ::umask(077);
  std::ofstream out(file, std::ios::trunc);
  ::umask(old);
  if (!(out << key.secret_key << "\n")) {
    std::fprintf(stderr, "relay-keygen: cannot write '%s': %s\n", file.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::printf("wrote %s (public key %s)\n", file.c_str(), key.public_key.c_str());
  return 0;
}
