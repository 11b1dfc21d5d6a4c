#include "relay/runtime/signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "relay/errors.h"
#include "relay/internal/process.h"

namespace relay::internal {
namespace {

constexpr int kMaxPidfds = 4096;
int g_pipe[2] = {-1, -1};
int g_pidfds[kMaxPidfds];
std::atomic<int> g_npidfds{0};
std::atomic<int> g_received{0};
struct sigaction g_old_int;
struct sigaction g_old_term;

void on_signal(int sig) {
  const int saved = errno;
  if (g_received.fetch_add(1) > 0 && sig == SIGINT) {
    // Second Ctrl-C: no more waiting.
    const int n = g_npidfds.load();
    for (int i = 0; i < n; ++i) pidfd_send_signal(g_pidfds[i], SIGKILL);
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
  }
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t w = ::write(g_pipe[1], &c, 1);
  errno = saved;
}

std::terminate_handler g_previous_terminate = nullptr;

// An uncaught relay::Interrupted ends the process by its signal, as an
// interrupted program should; anything else goes on to the previous handler.
void on_terminate() {
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const Interrupted& i) {
      std::fprintf(stderr, "%s\n", i.what());
      std::fflush(nullptr);
      ::signal(i.signal(), SIG_DFL);
      ::raise(i.signal());
    } catch (...) {
    }
  }
  if (g_previous_terminate) g_previous_terminate();
  std::abort();
}

}  // namespace

SignalGuard::SignalGuard() {
  if (::pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    throw Error(std::string("start: pipe: ") + std::strerror(errno));
  }
  g_received = 0;
  g_npidfds = 0;
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
  static const bool installed = [] {
    g_previous_terminate = std::set_terminate(on_terminate);
    return true;
  }();
  (void)installed;
}

SignalGuard::~SignalGuard() {
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  g_npidfds = 0;
  ::close(g_pipe[0]);
  ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

int SignalGuard::fd() const noexcept { return g_pipe[0]; }

int SignalGuard::take() {
  char c = 0;
  int sig = 0;
  while (::read(g_pipe[0], &c, 1) == 1) {
    if (sig == 0) sig = static_cast<unsigned char>(c);
  }
  return sig;
}

void SignalGuard::set_pidfds(const std::vector<int>& pidfds) {
  g_npidfds = 0;
  int n = 0;
  for (int fd : pidfds) {
    if (n < kMaxPidfds) g_pidfds[n++] = fd;
  }
  g_npidfds = n;
}

void signals_after_fork_in_child() {
  if (g_pipe[0] >= 0) ::close(g_pipe[0]);
  if (g_pipe[1] >= 0) ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
  g_npidfds = 0;
}

}  // namespace relay::internal
