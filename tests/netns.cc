#include "tests/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace relay::testing {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kPrefix[] = "relaytest-";
constexpr char kTokenVar[] = "RELAY_NETNS_TOKEN=";

const char* IpPath() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "ip";
}

// Every live Spawned, so that waiting on one keeps draining the others' pipes.
std::vector<Spawned*>& Registry() {
  static std::vector<Spawned*> all;
  return all;
}

// Deletes namespaces of test processes that are gone: the watchdog ends a
// hung test with _exit(), which runs no destructor.
void SweepStale() {
  DIR* d = ::opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(kPrefix, 0) != 0) continue;
    const pid_t owner = static_cast<pid_t>(std::atol(name.c_str() + sizeof kPrefix - 1));
    if (owner > 0 && ::kill(owner, 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  ::closedir(d);
  for (const auto& name : stale) RunIp({"netns", "del", name});
}

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::string RunIp(const std::vector<std::string>& args) {
  std::string line = "ip";
  for (const auto& a : args) line += " " + a;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return line + ": " + ErrnoText("pipe");
  std::vector<std::string> all = {IpPath()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return line + ": " + ErrnoText("fork");
  }
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string text;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return line + ": " + DescribeStatus(status) + ": " + text;
}

std::string DescribeStatus(int status) {
  if (status == -1) return "still running";
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// ---- Netns ----

Netns::Netns() {
  static int next = 0;
  SweepStale();
  name_ = kPrefix + std::to_string(::getpid()) + "-" + std::to_string(next++);
  if (auto e = RunIp({"netns", "add", name_}); !e.empty()) throw std::runtime_error(e);
  if (auto e = RunIp({"-n", name_, "link", "set", "lo", "up"}); !e.empty()) {
    RunIp({"netns", "del", name_});
    throw std::runtime_error(e);
  }
}

Netns::~Netns() {
  if (auto e = RunIp({"netns", "del", name_}); !e.empty()) {
    std::fprintf(stderr, "netns: %s\n", e.c_str());
  }
}

void Netns::Enter() const {
  saved_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (saved_ < 0) throw std::runtime_error(ErrnoText("open /proc/thread-self/ns/net"));
  const int fd = ::open(path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
    const std::string e = ErrnoText("setns " + path());
    if (fd >= 0) ::close(fd);
    ::close(saved_);
    saved_ = -1;
    throw std::runtime_error(e);
  }
  ::close(fd);
}

void Netns::Leave() const noexcept {
  if (saved_ < 0) return;
  if (::setns(saved_, CLONE_NEWNET) != 0) {
    // Going on in the wrong namespace would send the rest of the test's
    // traffic to the wrong host.
    std::fprintf(stderr, "netns: cannot return to the original namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  ::close(saved_);
  saved_ = -1;
}

// ---- Links ----

Link Connect(const Netns& a, const Netns& b) {
  static int next = 0;
  const int k = next++;
  // Created inside the namespaces, so the names cannot clash with the
  // machine's own interfaces; pid and counter keep them unique anyway.
  // "rt" + pid (<= 7 digits) + "-" + k (<= 3 digits) + "a": at most 14.
  const std::string stem = "rt" + std::to_string(::getpid()) + "-" + std::to_string(k % 1000);
  Link link{stem + "a", stem + "b", "10.99." + std::to_string(k % 256) + ".1",
            "10.99." + std::to_string(k % 256) + ".2"};
  const std::vector<std::vector<std::string>> steps = {
      {"link", "add", link.veth_a, "netns", a.name(), "type", "veth", "peer", "name", link.veth_b,
       "netns", b.name()},
      {"-n", a.name(), "addr", "add", link.addr_a + "/24", "dev", link.veth_a},
      {"-n", b.name(), "addr", "add", link.addr_b + "/24", "dev", link.veth_b},
      {"-n", a.name(), "link", "set", link.veth_a, "up"},
      {"-n", b.name(), "link", "set", link.veth_b, "up"},
  };
  for (const auto& step : steps) {
    if (auto e = RunIp(step); !e.empty()) {
      RunIp({"-n", a.name(), "link", "del", link.veth_a});
      throw std::runtime_error(e);
    }
  }
  return link;
}

std::string SetLinkDown(const Netns& ns, const std::string& veth) {
  return RunIp({"-n", ns.name(), "link", "set", veth, "down"});
}

std::string SetLinkUp(const Netns& ns, const std::string& veth) {
  return RunIp({"-n", ns.name(), "link", "set", veth, "up"});
}

// ---- Spawned ----

std::unique_ptr<Spawned> Spawn(const Netns& ns, const std::vector<std::string>& argv,
                               const std::vector<std::string>& env, const std::string& hostname) {
  static int next = 0;
  if (argv.empty()) throw std::invalid_argument("Spawn: empty argv");
  std::unique_ptr<Spawned> s(new Spawned());
  s->token_ = std::to_string(::getpid()) + "-" + std::to_string(next++);

  // Everything the child needs is built before fork().
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<std::string> vars;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, kTokenVar, sizeof kTokenVar - 1) != 0) vars.emplace_back(*e);
  }
  vars.insert(vars.end(), env.begin(), env.end());
  vars.push_back(kTokenVar + s->token_);
  std::vector<char*> cenv;
  for (auto& v : vars) cenv.push_back(v.data());
  cenv.push_back(nullptr);
  const std::string ns_path = ns.path();

  const int nsfd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) throw std::runtime_error(ErrnoText("open " + ns_path));
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ::close(nsfd);
    throw std::runtime_error(ErrnoText("pipe"));
  }
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(nsfd);
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    throw std::runtime_error(ErrnoText("fork"));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // Dies with the test, also when the watchdog ends it with _exit().
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (::setns(nsfd, CLONE_NEWNET) != 0) {
      const char msg[] = "spawn: setns failed\n";
      [[maybe_unused]] auto w = ::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    if (!hostname.empty() &&
        (::unshare(CLONE_NEWUTS) != 0 || ::sethostname(hostname.data(), hostname.size()) != 0)) {
      const char msg[] = "spawn: cannot set the host name\n";
      [[maybe_unused]] auto w = ::write(2, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::execve(cargs[0], cargs.data(), cenv.data());
    const char msg[] = "spawn: execve failed: ";
    [[maybe_unused]] auto w1 = ::write(2, msg, sizeof msg - 1);
    [[maybe_unused]] auto w2 = ::write(2, cargs[0], std::strlen(cargs[0]));
    [[maybe_unused]] auto w3 = ::write(2, "\n", 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no window where a kill(-pid) misses it
  ::close(nsfd);
  ::close(out[1]);
  ::close(err[1]);
  s->pid_ = pid;
  s->out_fd_ = out[0];
  s->err_fd_ = err[0];
  for (int fd : {s->out_fd_, s->err_fd_}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  Registry().push_back(s.get());
  return s;
}

Spawned::~Spawned() {
  KillAll();
  for (int fd : {out_fd_, err_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  auto& all = Registry();
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
}

std::string Spawned::Transcript() const {
  return "--- stdout of pid " + std::to_string(pid_) + " ---\n" + out_ + "--- stderr ---\n" + err_ +
         "--- end ---";
}

void Spawned::Pump() {
  for (auto [fd, text] : {std::pair{&out_fd_, &out_}, std::pair{&err_fd_, &err_}}) {
    if (*fd < 0) continue;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(*fd, buf, sizeof buf);
      if (n > 0) {
        text->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0) {
        ::close(*fd);
        *fd = -1;
        break;
      } else {
        if (errno == EINTR) continue;
        break;  // EAGAIN: nothing more for now
      }
    }
  }
}

void Spawned::PumpAll() {
  for (Spawned* s : Registry()) s->Pump();
}

bool Spawned::WaitForOutput(const std::string& needle, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    PumpAll();
    if (out_.find(needle) != std::string::npos) return true;
    if (Clock::now() >= deadline) return false;
    std::vector<pollfd> fds;
    for (Spawned* s : Registry()) {
      for (int fd : {s->out_fd_, s->err_fd_}) {
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
      }
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } else {
      ::poll(fds.data(), fds.size(), 10);
    }
  }
}

int Spawned::WaitExit(std::chrono::milliseconds limit) {
  if (ended_) return status_;
  const auto deadline = Clock::now() + limit;
  for (;;) {
    PumpAll();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      ended_ = true;
      status_ = status;
      // Its children may hold the pipes open: read what is there, briefly,
      // instead of waiting for end of file.
      for (int i = 0; i < 10 && (out_fd_ >= 0 || err_fd_ >= 0); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        Pump();
      }
      return status_;
    }
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Spawned::KillMain() {
  if (!ended_) ::kill(pid_, SIGKILL);
}

std::vector<pid_t> Spawned::Remaining() const {
  std::vector<pid_t> out;
  const std::string needle = kTokenVar + token_;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/environ", std::ios::binary);
    std::string var;
    while (std::getline(in, var, '\0')) {
      if (var == needle) {
        out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
        break;
      }
    }
  }
  ::closedir(d);
  return out;
}

void Spawned::KillAll() noexcept {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  // Processes that left the group (setsid) still carry the token. Repeat in
  // case one forked while being killed.
  for (int round = 0; round < 5; ++round) {
    std::vector<pid_t> left;
    try {
      left = Remaining();
    } catch (...) {
    }
    if (left.empty()) break;
    for (pid_t p : left) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!ended_) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    ended_ = true;
    status_ = status;
  }
  Pump();
}

}  // namespace relay::testing
