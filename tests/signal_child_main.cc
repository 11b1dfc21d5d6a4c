// A driver program for signal_test: runs a relay that never ends by itself
// (a source sending forever) and prints "ready <pid>..." with its actors' pids
// once they run. Modes:
//   uncaught   start() is not wrapped: an Interrupted ends the process.
//   caught     catches relay::Interrupted, prints "caught: <what>", exits 0.
//   stubborn   like uncaught, but actors ignore SIGTERM and never poll, so only
//              SIGKILL (after the grace period, or a second SIGINT) stops them.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "relay/relay.h"

namespace {

bool g_stubborn = false;

// Actors announce themselves once they run, so that the test signals a run
// whose actors are past startup().
class Forever : public relay::Actor {
 public:
  explicit Forever(relay::Queue& q) : q_(q) {}
  void startup() override {
    if (g_stubborn) ::signal(SIGTERM, SIG_IGN);
    q_.put(static_cast<int>(::getpid()));
  }
  void loop() override {
    for (long long i = 0;; ++i) {
      if (g_stubborn) {
        // Busy, not in send(): the broker's abort is never read.
        volatile long long spin = 0;
        for (;;) spin = spin + 1;
      }
      send(i);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

 private:
  relay::Queue& q_;
};

class Sink : public relay::Actor {
 public:
  explicit Sink(relay::Queue& q) : q_(q) {}
  void startup() override {
    if (g_stubborn) ::signal(SIGTERM, SIG_IGN);
    q_.put(static_cast<int>(::getpid()));
  }
  void recv(const relay::Message&) override {}

 private:
  relay::Queue& q_;
};

class Announce : public relay::Handler {
 public:
  void run() override {
    const int a = q.get().get<int>(0);
    const int b = q.get().get<int>(0);
    std::printf("ready %d %d\n", a, b);
    std::fflush(stdout);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "uncaught" && mode != "caught" && mode != "stubborn") {
    std::fprintf(stderr, "usage: %s uncaught|caught|stubborn\n", argv[0]);
    return 2;
  }
  g_stubborn = mode == "stubborn";
  Announce announce;
  Forever source(announce.q);
  Sink sink(announce.q);
  relay::Relay relay;
  relay.connect(source, sink);
  if (mode == "caught") {
    try {
      relay.start(&announce);
    } catch (const relay::Interrupted& e) {
      std::printf("caught: %s\n", e.what());
      return 0;
    }
    return 1;
  }
  relay.start(&announce);
  return 1;
}
