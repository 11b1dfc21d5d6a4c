// Supervision under fire: messages through 1-3-2 while a middle actor is
// SIGKILLed every 200 ms (issue 11 point 7: 2,000,000 messages, maxsize
// 100, about 45 s and 200 kills here), or while the source is (issue 11
// point 3: 300,000 messages, maxsize 10, 30-60 s and 200-300 kills: each
// successor runs loop() from the start). Each arrives exactly once. SOAK_N
// sets another count for both, SOAK_VERBOSE=1 prints the groups' counts as
// it goes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::ProcessTest;

// How many numbers the source sends: set by each test before start(), so
// that the actors' processes, forked then, see it.
long long kN = 0;
void SetCount(long long fallback) {
  const char* n = std::getenv("SOAK_N");
  kN = n != nullptr ? std::atoll(n) : fallback;
}

// Marks each number it receives; puts [distinct count, marks] at the end.
class Marker : public relay::Actor {
 public:
  explicit Marker(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    if (v < 0 || v >= kN) {
      ++foreign_;
      return;
    }
    if (seen_.empty()) seen_.assign(kN, 0);
    if (seen_[static_cast<std::size_t>(v)] < 255) ++seen_[static_cast<std::size_t>(v)];
    ++received_;
  }
  void shutdown() override { q_.put(received_, foreign_, seen_); }

 private:
  relay::Queue& q_;
  std::vector<std::uint8_t> seen_;
  long long received_ = 0;
  long long foreign_ = 0;
};

class Slowish : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m.get<long long>(0)); }
};

// Sends 0..kN-1, then sets cell 0 of `shm`: it has sent everything.
class Source : public relay::Actor {
 public:
  explicit Source(relay::testing::SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    for (long long i = 0; i < kN; ++i) send(i);
    shm_.at(0).store(1);
  }

 private:
  relay::testing::SharedBlock& shm_;
};

class Soak : public ProcessTest {};

// Kills one of `victims` every 200 ms until the source has sent everything
// (at most 1000 times).
struct Killer : relay::Handler {
  std::vector<relay::Actor*> victims;
  relay::testing::SharedBlock* shm = nullptr;
  int kills = 0;
  void run() override {
    std::mt19937 rng(7);
    // Every 200 ms until the source has sent everything (at most 1000).
    while (shm->at(0).load() == 0 && kills < 1000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      relay::Actor* v = victims[rng() % victims.size()];
      // Not once the source is done: an actor killed after its end of stream,
      // once its receivers have ended, leaves a successor that nobody waits
      // for (not covered, see DESIGN.md "Supervision").
      if (shm->at(0).load() == 0 && v->is_alive()) {
        v->kill();
        ++kills;
      }
      if (kills % 20 == 0 && std::getenv("SOAK_VERBOSE") != nullptr) {
        for (const relay::GroupStats& g : relay::group_stats()) {
          std::fprintf(stderr, "soak: %s sent %llu received %llu waiting %llu\n", g.name.c_str(),
                       static_cast<unsigned long long>(g.sent),
                       static_cast<unsigned long long>(g.received),
                       static_cast<unsigned long long>(g.waiting));
        }
      }
    }
  }
};

// The sinks' marks: every number once, nothing else.
void ExpectEachOnce(relay::Queue& q, int kills) {
  long long received = 0, foreign = 0;
  std::vector<int> seen(kN, 0);
  int parts = 0;
  while (auto m = q.get_nowait()) {
    const auto [r, f, marks] = m->as<long long, long long, std::vector<std::uint8_t>>();
    received += r;
    foreign += f;
    for (std::size_t i = 0; i < marks.size(); ++i) seen[i] += marks[i];
    ++parts;
  }
  ASSERT_EQ(parts, 2);
  EXPECT_EQ(foreign, 0);
  long long missing = 0, twice = 0;
  for (long long i = 0; i < kN; ++i) {
    if (seen[static_cast<std::size_t>(i)] == 0) ++missing;
    if (seen[static_cast<std::size_t>(i)] > 1) ++twice;
  }
  EXPECT_EQ(missing, 0) << "numbers lost";
  EXPECT_EQ(twice, 0) << "numbers delivered more than once";
  std::printf("soak: %d kills, %lld received, %lld delivered more than once\n", kills, received,
              twice);
}

TEST_F(Soak, NothingLostWhileMiddleActorsAreKilled) {
  SetWatchdog(std::chrono::seconds(280));
  SetCount(2000000);
  relay::Queue q;
  relay::testing::SharedBlock shm;  // cell 0: the source has sent everything
  Source src(shm);
  Slowish m1, m2, m3;
  std::vector<relay::Actor*> middle{&m1, &m2, &m3};
  Marker s1(q), s2(q);
  std::vector<relay::Actor*> sinks{&s1, &s2};
  // A window of 100 over 5 pairs: with 10, each message waits for a round
  // trip of credits and the run crawls at ~10k msg/s, kills or not.
  relay::Relay relay(100);
  relay.connect(src, relay::group("middle", middle), relay::group("sinks", sinks));
  relay.restart("middle", relay::Restart{.max_restarts = 1000, .within = std::chrono::seconds(60)});
  Killer killer;
  killer.victims = middle;
  killer.shm = &shm;
  relay.start(killer);
  EXPECT_GE(killer.kills, 5);
  ExpectEachOnce(q, killer.kills);
}

// The source killed every 200 ms, its receivers supervised (not killed):
// each successor runs loop() from the start and sends only what no receiver
// took.
TEST_F(Soak, NothingLostOrTwiceWhileTheSourceIsKilled) {
  SetWatchdog(std::chrono::seconds(280));
  SetCount(300000);
  relay::Queue q;
  relay::testing::SharedBlock shm;  // cell 0: the source has sent everything
  Source src(shm);
  Slowish m1, m2, m3;
  std::vector<relay::Actor*> middle{&m1, &m2, &m3};
  Marker s1(q), s2(q);
  std::vector<relay::Actor*> sinks{&s1, &s2};
  relay::Relay relay(10);
  relay.connect(relay::group("src", src), relay::group("middle", middle),
                relay::group("sinks", sinks));
  relay.restart("src", relay::Restart{.max_restarts = 1000, .within = std::chrono::seconds(60)});
  relay.restart("middle");
  Killer killer;
  killer.victims = {&src};
  killer.shm = &shm;
  relay.start(killer);
  EXPECT_GE(killer.kills, 5);
  ExpectEachOnce(q, killer.kills);
}

}  // namespace
