// tests/testing.h: what every multi-process test needs: a watchdog that turns
// a hang into a failure, and checks that nothing is left behind.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace relay::testing {

// The live children of `pid` (from /proc/<pid>/task/*/children).
std::vector<pid_t> ChildrenOf(pid_t pid);

// Abstract unix sockets of this process's relays still open anywhere on the
// host (from /proc/net/unix).
std::vector<std::string> LeftoverRelaySockets();

// A batch frame ('B', core/internal/wire.h) of `members` (each a whole data
// frame), with `count` as its count: the true one, or a lie.
std::string BatchFrame(const std::vector<std::string>& members, int count);
inline std::string BatchFrame(const std::vector<std::string>& members) {
  return BatchFrame(members, static_cast<int>(members.size()));
}

// Kills every child with SIGKILL and reaps it; returns how many there were.
int KillAndReapChildren();

// Memory shared with the actor processes forked after it is made: counters
// and flags that actors write and the test reads. Unmapped on destruction.
class SharedBlock {
 public:
  SharedBlock();
  ~SharedBlock();
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  std::atomic<long long>& at(int i) { return cells_[i]; }
  static constexpr int kCells = 64;

 private:
  std::atomic<long long>* cells_;
};

// Registers an spdlog logger `name` that writes into memory, for tests that
// check what reached the main process's log. Dropped on destruction.
class LogCapture {
 public:
  explicit LogCapture(const std::string& name);
  ~LogCapture();
  std::string text() const;
  // How many lines hold `needle`.
  int count(const std::string& needle) const;

 private:
  std::string name_;
  std::shared_ptr<std::ostringstream> out_;
};

// Base fixture: arms a watchdog that kills every child and fails the process
// with a message if a test runs longer than its limit, and after each test
// asserts that no child process and no relay socket of this process remain.
class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Changes this test's watchdog limit (default 60 s).
  void SetWatchdog(std::chrono::seconds limit);
};

}  // namespace relay::testing
