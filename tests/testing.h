// tests/testing.h: what every multi-process test needs: a watchdog that turns
// a hang into a failure, and checks that nothing is left behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace relay::testing {

// The live children of `pid` (from /proc/<pid>/task/*/children).
std::vector<pid_t> ChildrenOf(pid_t pid);

// Abstract unix sockets named "@relay-<pid>-..." still open anywhere on the
// host (from /proc/net/unix).
std::vector<std::string> RelaySocketsOf(pid_t pid);

// Kills every child with SIGKILL and reaps it; returns how many there were.
int KillAndReapChildren();

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
