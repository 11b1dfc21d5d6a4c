// relay-keygen: writes a new cluster key (a CURVE secret key in Z85) to FILE.
// Give the same file to the driver (Relay::secure) and every worker
// (--relay-key FILE). Keep it secret: whoever holds it can join the cluster.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "relay/internal/security.h"

int main(int argc, char** argv) {
  if (argc != 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fprintf(argc == 2 ? stdout : stderr,
                 "usage: relay-keygen FILE\n"
                 "Writes a new relay cluster key (a CURVE secret key, Z85) to FILE, readable by\n"
                 "its owner only. Give the same file to the driver (Relay::secure(FILE)) and to\n"
                 "every worker (--relay-key FILE).\n");
    return argc == 2 ? 0 : 2;
  }
  const relay::internal::CurveKey key = relay::internal::make_curve_key();
  const mode_t old = ::umask(077);
  std::ofstream out(argv[1], std::ios::trunc);
  ::umask(old);
  if (!(out << key.secret_key << "\n")) {
    std::fprintf(stderr, "relay-keygen: cannot write '%s': %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  std::printf("wrote %s (public key %s)\n", argv[1], key.public_key.c_str());
  return 0;
}
