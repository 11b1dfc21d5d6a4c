#include "tests/testing.h"

#include "relay/internal/transport.h"
#include "relay/internal/wire.h"

#include <dirent.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

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

std::vector<std::string> LeftoverRelaySockets() {
  std::vector<std::string> out;
  std::ifstream in("/proc/net/unix");
  std::string line;
  const std::string needle = "@" + relay::internal::local_socket_prefix();
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

SharedBlock::SharedBlock() {
  void* p = ::mmap(nullptr, sizeof(std::atomic<long long>) * kCells, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  cells_ = static_cast<std::atomic<long long>*>(p);
  for (int i = 0; i < kCells; ++i) new (&cells_[i]) std::atomic<long long>(0);
}

SharedBlock::~SharedBlock() { ::munmap(cells_, sizeof(std::atomic<long long>) * kCells); }

LogCapture::LogCapture(const std::string& name)
    : name_(name), out_(std::make_shared<std::ostringstream>()) {
  spdlog::drop(name_);
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*out_);
  auto logger = std::make_shared<spdlog::logger>(name_, sink);
  logger->set_pattern("%l %v");
  logger->set_level(spdlog::level::trace);
  spdlog::register_logger(logger);
}

LogCapture::~LogCapture() { spdlog::drop(name_); }

std::string LogCapture::text() const {
  spdlog::get(name_)->flush();
  return out_->str();
}

int LogCapture::count(const std::string& needle) const {
  std::istringstream in(text());
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
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
    sockets = LeftoverRelaySockets();
    if (sockets.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(sockets.empty()) << "relay socket left behind: " << sockets.front();
}

std::string BatchFrame(const std::vector<std::string>& members, int count) {
  std::string b{relay::internal::kBatch, static_cast<char>(count >> 8), static_cast<char>(count)};
  for (const std::string& m : members) {
    b += static_cast<char>(m.size() >> 8);
    b += static_cast<char>(m.size());
    b += m;
  }
  return b;
}

}  // namespace relay::testing
