#include "tests/testing.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace relay::testing {

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(dir + "/" + e->d_name + "/children");
      pid_t child;
      while (in >> child) out.push_back(child);
    }
    ::closedir(d);
  }
  return out;
}

std::vector<std::string> RelaySocketsOf(pid_t pid) {
  std::vector<std::string> out;
  std::ifstream in("/proc/net/unix");
  std::string line;
  const std::string needle = "@relay-" + std::to_string(pid) + "-";
  while (std::getline(in, line)) {
    if (auto at = line.find(needle); at != std::string::npos) out.push_back(line.substr(at));
  }
  return out;
}

int KillAndReapChildren() {
  const auto children = ChildrenOf(::getpid());
  for (pid_t c : children) ::kill(c, SIGKILL);
  for (pid_t c : children) ::waitpid(c, nullptr, 0);
  return static_cast<int>(children.size());
}

namespace {

char g_test_name[256];

void on_alarm(int) {
  // Not async-signal-safe in every step, but the process is about to end and
  // the message is what matters.
  char msg[512];
  const int n = std::snprintf(msg, sizeof msg,
                              "\nWATCHDOG: test %s hung; killing its children and failing\n",
                              g_test_name);
  [[maybe_unused]] ssize_t w = ::write(2, msg, static_cast<std::size_t>(n));
  KillAndReapChildren();
  ::_exit(99);
}

}  // namespace

void ProcessTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::snprintf(g_test_name, sizeof g_test_name, "%s.%s", info->test_suite_name(), info->name());
  ::signal(SIGALRM, on_alarm);
  ::alarm(60);
}

void ProcessTest::SetWatchdog(std::chrono::seconds limit) {
  ::alarm(static_cast<unsigned>(limit.count()));
}

void ProcessTest::TearDown() {
  ::alarm(0);
  const auto children = ChildrenOf(::getpid());
  EXPECT_TRUE(children.empty()) << children.size() << " child process(es) left behind";
  KillAndReapChildren();
  // Sockets close asynchronously in the kernel once their processes are gone.
  std::vector<std::string> sockets;
  for (int i = 0; i < 50; ++i) {
    sockets = RelaySocketsOf(::getpid());
    if (sockets.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(sockets.empty()) << "relay socket left behind: " << sockets.front();
}

}  // namespace relay::testing
