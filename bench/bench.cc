// bench/bench.cc: relay against raw ZeroMQ on this machine, in one run.
//
//   bazel run -c opt //bench:bench                 # full run (a few minutes on 2 cores)
//   bazel run -c opt //bench:bench -- --quick      # smoke run (about 15 s)
//   bazel run -c opt //bench:bench -- --runs 5     # median of 5 per figure
//   bazel run -c opt //bench:bench -- --only supervision   # its rows only (~15 s)
//   bazel run -c opt //bench:bench -- --only throughput,scaling,cross-host
//
// What is measured, and how the two sides are kept comparable:
//
// * Throughput, each relay shape against raw ZeroMQ of the same shape (a
//   Shape: S sources -> F forwarders -> K sinks, or S -> K). Raw: each member
//   a forked process that makes its own ZeroMQ context after fork; every
//   receiver binds a PULL inbox on ipc://@<abstract name>, every sender's
//   PUSH connects to each inbox of the next stage, and a forwarder moves each
//   zmq_msg_t on unchanged. Relay: Source actors send() N std::string
//   payloads (N split over the sources); Forward actors pass each on; Sinks
//   count them and put their counts to a Queue. Both sides are timed the same
//   way, whole run, wall clock in this (main) process: raw from just before
//   the first fork to after every child is reaped, relay around
//   Relay::start(). Process start, connect and tear-down are included on both
//   sides; message counts are calibrated so that the messages take about
//   0.6 s beyond that fixed cost (see calibrate()), which makes it small. A
//   raw sender or forwarder closes only once the sinks have everything (see
//   DonePipe), as relay's end of stream waits for an acknowledgement. The raw
//   sinks also report their steady-state rate (first to last message),
//   printed for reference. Each figure is the median of --runs runs, and runs
//   of different configurations are interleaved so that a noisy neighbour
//   hurts all of them alike. Rows: 1-1, 1-2-1 and 2-2-2 at 16 B, 1 KiB and 1 MiB
//   (section throughput); 1-N-1 for N = 1, 2, 4, 8 at 16 B and 1 KiB
//   (scaling); 1-1 between two network namespaces over tcp, relay's driver
//   on one and a worker on the other (cross-host, root only).
//
// * Latency, one way, at low load. A sender stamps each message with
//   CLOCK_MONOTONIC (one clock for every process of a host), sends one, then
//   sleeps 100 us, so the path is empty when the next one leaves; the receiver
//   takes now - stamp once the message is in its hands (for relay: inside
//   recv(), so decoding and dispatch count). The same method runs over raw
//   PUSH -> PULL and over a relay 1-1, so the pair is comparable, and the
//   latency target is judged on it. Both receivers block in ZeroMQ between
//   messages, so both pay the same wake-up. For reference the classic raw
//   figure is printed too: PAIR ping-pong, back to back, RTT/2.
//   (A relay ping-pong is not possible without a side channel: data flows one
//   way only, and a Queue goes through the main process's broker.)
//
// * Start-up + tear-down: wall time of Relay::start() for 16 actors
//   (Source -> 14 Forward -> Sink) that pass one message; median. The raw floor
//   is 16 forked children that each make a context, connect a socket, close it
//   and exit, reaped by this process; below it, 16 children that only exit.
//   For reference, the seed's way (bench/python_startup.py, when python3 is
//   there): Python multiprocessing with fork, 16 processes joined by queues,
//   one message through. On 2 cores this figure is bound by the children's CPU
//   time (page faults after fork, ZeroMQ's two threads per context); `--one
//   startup:N` prints it per run.
//
// * Supervision: relay 1-1 and 1-2-1 at 16 B with every group but the
//   source's under Relay::restart() (nothing fails), and the same shapes
//   without, at the same n, runs interleaved; printed as a ratio "vs same run
//   without restart" (issue 11: at least 0.8x), next to raw 16 B baselines of
//   the same shapes measured in the same section.
//
// * RSS: VmRSS of an idle actor process (a Source sleeping 300 ms in loop()),
//   read by a Handler in the main process while it sleeps; raw: a forked child
//   holding a context and a bound PULL socket. It runs first, while this
//   process is still small: a forked child starts with its parent's pages.
//
// This process never makes a ZeroMQ context and never starts a thread (relay's
// own broker thread lives only inside Relay::start()), so every fork is safe;
// nor does it enter a network namespace (its children do, see CrossHost).
// Exit status: 0 whatever the speed; 2 if a measurement broke (lost messages,
// an actor error).

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zmq.h>

#include "relay/relay.h"

namespace {

using Clock = std::chrono::steady_clock;

// ----------------------------------------------------------------- options --

struct Options {
  int runs = 3;
  bool quick = false;
  double target_s = 0.6;  // one throughput run, beyond its start-up and tear-down
  int latency_samples = 3000;
  int latency_warmup = 200;
  int latency_pause_us = 100;
  int startup_runs = 9;
  std::string commit;        // --commit, else git at bench time
  std::string one;           // --one TOPOLOGY:BYTES:N[:restart], for profilers
  std::vector<std::string> only;  // --only A,B: those sections' figures only
};

constexpr const char* kUsage =
    "usage: bench [--runs N] [--quick] [--commit SHA] [--verbose] [--one T:B:N[:restart]]\n"
    "             [--only SECTION[,SECTION...]] [--help]\n"
    "\n"
    "Measures relay pipelines against raw ZeroMQ of the same shape (forked\n"
    "processes, PUSH->PULL over ipc://@abstract, forwarders moving each message on\n"
    "unchanged): 1-1, 1-2-1 and 2-2-2 at 16 B, 1 KiB and 1 MiB payloads, 1-N-1 for\n"
    "N = 1, 2, 4, 8 at 16 B and 1 KiB, and 1-1 over tcp between two network\n"
    "namespaces (root only, else printed as skipped); one-way latency at low load,\n"
    "16-actor start-up + tear-down, idle actor RSS, the groupings of a 1-4 edge and\n"
    "the cost of supervision (1-1 and 1-2-1 at 16 B under Relay::restart()); prints\n"
    "each figure, the ratio relay/raw, and PASS/MISS for the project's targets.\n"
    "\n"
    "  --runs N      runs per throughput figure, the median is reported (default 3)\n"
    "  --quick       smoke run: short runs, 1 run per figure, few samples\n"
    "  --commit SHA  the commit to print (default: git rev-parse in\n"
    "                $BUILD_WORKSPACE_DIRECTORY, set by `bazel run`)\n"
    "  --verbose     name each measurement on stderr as it starts\n"
    "  --one T:B:N   run one throughput measurement only and print it, for a\n"
    "                profiler: B is the payload bytes, N the message count, T a\n"
    "                relay shape S-K or S-F-K (S sources, F forwarders, K sinks:\n"
    "                1-1, 1-2-1, 2-2-2, 1-8-1, ...), raw-SHAPE for raw ZeroMQ of\n"
    "                that shape (raw alone is raw-1-1), or tcp-1-1 / tcp-raw for\n"
    "                the cross-host pair (e.g. --one 1-1:16:2000000, --one\n"
    "                raw-1-4-1:1024:500000); a suffix :restart puts every relay\n"
    "                group but the source's under Relay::restart() (e.g. --one\n"
    "                1-2-1:16:1000000:restart); --one startup:N runs the\n"
    "                16-process start-up figures N times\n"
    "  --only SECTIONS\n"
    "                those sections only, comma-separated, out of: rss, startup,\n"
    "                latency, throughput (1-1, 1-2-1, 2-2-2 and their raw shapes),\n"
    "                groupings, supervision, scaling (1-N-1), cross-host\n"
    "                (e.g. --only throughput,scaling,cross-host)\n"
    "  --help        this text\n"
    "\n"
    "For the cross-host row the bench runs itself twice more, in the two\n"
    "namespaces: with --cross-host-driver URL BYTES N FD (the driver) and with\n"
    "--relay-worker URL (the worker).\n"
    "\n"
    "Exit status 0 whatever the speed; 2 if a measurement broke; 3 if one hung\n"
    "(no progress for 60 s: the stage is named on stderr).\n";

// ----------------------------------------------------------------- helpers --

bool g_broken = false;  // a measurement failed: exit 2
bool g_verbose = false;

// A watchdog: a measurement that does not end within its time is a hang (a bug
// worth reporting), not a slow figure. The handler names the stage and ends the
// process; actors and raw children die with it (PR_SET_PDEATHSIG).
char g_stage[200] = "start";
constexpr unsigned kStageTimeoutS = 60;

extern "C" void on_watchdog(int) {
  static const char kHead[] = "\nbench: HANG: no progress for 60 s in: ";
  (void)!::write(2, kHead, sizeof kHead - 1);
  (void)!::write(2, g_stage, std::strlen(g_stage));
  (void)!::write(2, "\n", 1);
  ::_exit(3);
}

// Names the stage the watchdog reports and re-arms it.
template <class... Args>
void stage(fmt::format_string<Args...> format, Args&&... args) {
  const std::string s = fmt::format(format, std::forward<Args>(args)...);
  std::snprintf(g_stage, sizeof g_stage, "%s", s.c_str());
  if (g_verbose) std::fprintf(stderr, "  [%s]\n", g_stage);
  ::alarm(kStageTimeoutS);
}

void broken(const std::string& what) {
  std::fprintf(stderr, "bench: ERROR: %s\n", what.c_str());
  g_broken = true;
}

std::int64_t mono_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void sleep_us(int us) {
  timespec ts{us / 1'000'000, static_cast<long>(us % 1'000'000) * 1000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Nearest-rank percentile of nanosecond samples, in microseconds.
double percentile_us(std::vector<std::int64_t> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return static_cast<double>(v[rank - 1]) / 1000.0;
}

std::string si(double v) {  // 5.2M, 312k
  if (std::isnan(v)) return "n/a";
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string size_name(std::size_t bytes) {
  if (bytes >= (1u << 20)) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= 1024) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

std::string ratio(double relay, double raw) {
  if (std::isnan(relay) || std::isnan(raw) || raw == 0) return "n/a";
  return fmt::format("{:.2f}x", relay / raw);
}

// A unique abstract ipc endpoint (no file is left behind).
std::string endpoint(const char* what) {
  static int counter = 0;
  return fmt::format("ipc://@relay-bench-{}-{}-{}", ::getpid(), what, ++counter);
}

void zcheck(int rc, const char* what) {
  if (rc < 0) throw std::runtime_error(std::string(what) + ": " + zmq_strerror(zmq_errno()));
}

// Runs `body` in a forked child, which leaves with _exit(body()).
template <class F>
pid_t spawn(F&& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("bench: fork");
    std::exit(2);
  }
  if (pid == 0) {
    ::alarm(0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the bench
    int rc = 1;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench child: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// Waits for a child; returns whether it exited with status 0.
bool reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A pipe that forked children write one fixed-size report to.
class ReportPipe {
 public:
  ReportPipe() {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    r_ = fds[0];
    w_ = fds[1];
  }
  ~ReportPipe() {
    if (r_ >= 0) ::close(r_);
    if (w_ >= 0) ::close(w_);
  }
  ReportPipe(const ReportPipe&) = delete;
  ReportPipe& operator=(const ReportPipe&) = delete;
  int write_fd() const { return w_; }  // for a child that execs

  template <class T>
  void put(const T& v) const {  // in a child
    if (::write(w_, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) {
      throw std::runtime_error("report pipe write failed");
    }
  }
  // In the parent, after every writer has been reaped.
  template <class T>
  bool get(T& v) {
    if (w_ >= 0) ::close(w_);
    w_ = -1;
    return ::read(r_, &v, sizeof v) == static_cast<ssize_t>(sizeof v);
  }

 private:
  int r_ = -1;
  int w_ = -1;
};

// "Everything arrived": the receiving children tell the sending ones, which
// only then close their sockets. Over ipc:// a PUSH that closes (even with
// linger, even with the peer alive) right after its last send loses the tail
// of the stream in about 4 runs of 10 on this machine, direct PUSH -> PULL;
// over tcp:// it does not. relay pays the same kind of round trip: a sender's
// end of stream waits for the receiver's acknowledgement.
//
// The signal is end of file: each receiver holds the write end until it has
// everything and then closes it (signal()); every other child closes its copy
// at once (leave(), or wait()), the parent once every child is forked
// (close_all()). The read end thus reaches end of file when the last receiver
// is done (or has died), however many there are: wait() returns, and a
// forwarder that polls read_fd() stops.
class DonePipe {
 public:
  DonePipe() {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    r_ = fds[0];
    w_ = fds[1];
  }
  ~DonePipe() { close_all(); }
  DonePipe(const DonePipe&) = delete;
  DonePipe& operator=(const DonePipe&) = delete;
  void signal() { leave(); }  // in a receiving child: it has everything
  void leave() {              // in any other child, before it waits
    if (w_ >= 0) ::close(w_);
    w_ = -1;
  }
  void wait() {  // in a sending child; returns early if the receivers died
    leave();
    char c;
    for (;;) {
      const ssize_t k = ::read(r_, &c, 1);
      if (k == 0 || (k < 0 && errno != EINTR)) break;
    }
  }
  // Whether every receiver is done, without blocking (after leave()).
  bool done() const {
    pollfd p{r_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  void close_all() {  // in the parent, once every child is forked
    if (r_ >= 0) ::close(r_);
    if (w_ >= 0) ::close(w_);
    r_ = w_ = -1;
  }

 private:
  int r_ = -1;
  int w_ = -1;
};

// A counter shared by forked children (an anonymous shared mapping made
// before they are forked): several raw sinks add what they received to it,
// and stop once it reaches the run's n, as none knows its own share.
class SharedCount {
 public:
  SharedCount() {
    static_assert(std::atomic<long>::is_always_lock_free);
    void* p = ::mmap(nullptr, sizeof(std::atomic<long>), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
    count_ = new (p) std::atomic<long>(0);
  }
  ~SharedCount() { ::munmap(count_, sizeof *count_); }
  SharedCount(const SharedCount&) = delete;
  SharedCount& operator=(const SharedCount&) = delete;
  std::atomic<long>& operator*() const { return *count_; }

 private:
  std::atomic<long>* count_;
};

// VmRSS / RssAnon of a process, in kB (as /proc reports them).
struct Rss {
  long vm_rss_kb = -1;
  long rss_anon_kb = -1;
};
Rss read_rss(int pid) {
  Rss r;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) r.vm_rss_kb = std::atol(line.c_str() + 6);
    if (line.rfind("RssAnon:", 0) == 0) r.rss_anon_kb = std::atol(line.c_str() + 8);
  }
  return r;
}

std::string shell_line(const std::string& cmd) {
  std::string out;
  std::fflush(nullptr);
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    if (std::fgets(buf, sizeof buf, p)) out = buf;
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string git_commit() {
  const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  const std::string dir = ws ? ws : ".";
  std::string sha = shell_line("git -C '" + dir + "' rev-parse --short HEAD 2>/dev/null");
  if (sha.empty()) return "unknown";
  const std::string dirty =
      shell_line("git -C '" + dir + "' status --porcelain --untracked-files=no 2>/dev/null");
  return dirty.empty() ? sha : sha + " (+ uncommitted changes)";
}

std::string machine_line() {
  std::string model = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      if (auto colon = line.find(':'); colon != std::string::npos) model = line.substr(colon + 2);
      break;
    }
  }
  utsname u{};
  ::uname(&u);
  int major = 0, minor = 0, patch = 0;
  zmq_version(&major, &minor, &patch);  // no context is made
  return fmt::format("nproc {}, {}, Linux {} {}, libzmq {}.{}.{}",
                     ::sysconf(_SC_NPROCESSORS_ONLN), model, u.release, u.machine, major, minor,
                     patch);
}

// --------------------------------------------------------------- two hosts --

// Where `ip` is (the PATH of `bazel run` may lack the sbin directories).
std::string ip_path() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// Runs `ip ARGS`; returns "" on success, else the command and what it said.
std::string run_ip(const std::string& args) {
  const std::string ip = ip_path();
  if (ip.empty()) return "no `ip` command (iproute2)";
  std::fflush(nullptr);
  std::FILE* p = ::popen((ip + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return "ip " + args + ": popen failed";
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  if (status == 0) return "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return "ip " + args + ": " + (out.empty() ? fmt::format("status {}", status) : out);
}

// Two hosts on this machine for the cross-host rows: network namespaces
// relaybench-<pid>-a and -b (each with its own interfaces, ports and abstract
// sockets) joined by a veth pair, 10.99.250.1/24 in a and 10.99.250.2/24 in
// b, made the way tests/netns.h makes them for the multi-host tests (that
// library is testonly). Nothing is made in the machine's own namespace, and
// this process never enters one: its forked children do, with setns(),
// before they make a ZeroMQ context. The namespaces go with this object; a
// bench that died without its destructor (the watchdog) leaves two, which
// the next one deletes.
class CrossHost {
 public:
  enum Host { a = 0, b = 1 };

  // The two hosts, or nullptr and why not: not root, no `ip`, or the kernel
  // refused (the row is then printed as skipped).
  static std::unique_ptr<CrossHost> make(std::string& why) {
    if (::geteuid() != 0) {
      why = "not running as root (network namespaces need CAP_SYS_ADMIN)";
      return nullptr;
    }
    if (ip_path().empty()) {
      why = "no `ip` command (iproute2)";
      return nullptr;
    }
    sweep_stale();
    std::unique_ptr<CrossHost> h(new CrossHost);
    const std::string stem = fmt::format("relaybench-{}-", ::getpid());
    const std::string veth = fmt::format("rb{}", ::getpid());  // + a/b: <= 15 characters
    h->addr_[a] = "10.99.250.1";
    h->addr_[b] = "10.99.250.2";
    for (Host x : {a, b}) {
      const std::string name = stem + (x == a ? "a" : "b");
      if (auto e = run_ip("netns add " + name); !e.empty()) {
        why = e;
        return nullptr;
      }
      h->name_[x] = name;
    }
    const std::string steps[] = {
        "-n " + h->name_[a] + " link set lo up",
        "-n " + h->name_[b] + " link set lo up",
        fmt::format("link add {}a netns {} type veth peer name {}b netns {}", veth, h->name_[a],
                    veth, h->name_[b]),
        fmt::format("-n {} addr add {}/24 dev {}a", h->name_[a], h->addr_[a], veth),
        fmt::format("-n {} addr add {}/24 dev {}b", h->name_[b], h->addr_[b], veth),
        fmt::format("-n {} link set {}a up", h->name_[a], veth),
        fmt::format("-n {} link set {}b up", h->name_[b], veth),
    };
    for (const std::string& step : steps) {
      if (auto e = run_ip(step); !e.empty()) {
        why = e;
        return nullptr;
      }
    }
    return h;
  }
  ~CrossHost() {  // deleting a namespace deletes its end of the veth pair too
    for (const std::string& name : name_) {
      if (name.empty()) continue;
      if (auto e = run_ip("netns del " + name); !e.empty()) {
        std::fprintf(stderr, "bench: %s\n", e.c_str());
      }
    }
  }
  CrossHost(const CrossHost&) = delete;
  CrossHost& operator=(const CrossHost&) = delete;

  // In a forked child, before it makes a ZeroMQ context: moves it onto `h`.
  void enter(Host h) const {
    const std::string path = "/run/netns/" + name_[h];
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      const std::string e = fmt::format("setns {}: {}", path, std::strerror(errno));
      if (fd >= 0) ::close(fd);
      throw std::runtime_error(e);
    }
    ::close(fd);
  }
  const std::string& addr(Host h) const { return addr_[h]; }
  // A tcp endpoint on `h` at a port this run has not used yet. The ports are
  // fixed rather than read back: the namespaces are this process's own, so
  // nothing else binds there, and a new port each time keeps one run clear
  // of the last one's sockets.
  std::string endpoint(Host h) const { return fmt::format("tcp://{}:{}", addr_[h], next_port_++); }

 private:
  CrossHost() = default;
  // Deletes namespaces left by a bench that is gone.
  static void sweep_stale() {
    DIR* d = ::opendir("/run/netns");
    if (d == nullptr) return;
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("relaybench-", 0) != 0) continue;
      const long owner = std::atol(name.c_str() + 11);
      if (owner > 0 && ::kill(static_cast<pid_t>(owner), 0) != 0 && errno == ESRCH) {
        stale.push_back(name);
      }
    }
    ::closedir(d);
    for (const std::string& name : stale) run_ip("netns del " + name);
  }
  std::string name_[2];
  std::string addr_[2];
  mutable int next_port_ = 20000;
};

// -------------------------------------------------------------- raw ZeroMQ --

// A pipeline's shape: `sources` senders, then `forwarders` (none: the
// sources send to the sinks directly), then `sinks`; each stage sends round
// robin over every member of the next. The same shape names a relay run and
// its raw ZeroMQ baseline.
struct Shape {
  int sources = 1;
  int forwarders = 0;
  int sinks = 1;
  bool operator==(const Shape&) const = default;
  std::string name() const {
    return forwarders ? fmt::format("{}-{}-{}", sources, forwarders, sinks)
                      : fmt::format("{}-{}", sources, sinks);
  }
  // Parses "S-K" or "S-F-K" (each 1..16); nullopt for anything else.
  static std::optional<Shape> parse(const std::string& text) {
    int v[3] = {0, 0, 0};
    char tail = 0;
    const int k = std::sscanf(text.c_str(), "%d-%d-%d%c", &v[0], &v[1], &v[2], &tail);
    if (k != 2 && k != 3) return std::nullopt;
    for (int i = 0; i < k; ++i) {
      if (v[i] < 1 || v[i] > 16) return std::nullopt;
    }
    if (k == 2 && text != fmt::format("{}-{}", v[0], v[1])) return std::nullopt;
    if (k == 3 && text != fmt::format("{}-{}-{}", v[0], v[1], v[2])) return std::nullopt;
    return k == 2 ? Shape{v[0], 0, v[1]} : Shape{v[0], v[1], v[2]};
  }
};

constexpr Shape kOneOne{1, 0, 1};
constexpr Shape kOneTwoOne{1, 2, 1};
constexpr Shape kTwoTwoTwo{2, 2, 2};

struct Rate {
  bool ok = false;
  long n = 0;
  double seconds = NAN;      // whole run, wall clock
  double steady_rate = NAN;  // raw only: receivers' first to last message
  double msgs() const { return ok ? static_cast<double>(n) / seconds : NAN; }
};

// Raw ZeroMQ in shape `s`, each member a forked process with a context of
// its own: every receiver (forwarder or sink) binds a PULL inbox, and every
// sender's PUSH connects to each inbox of the next stage, as relay's actors
// do; PUSH sends round robin over them. A forwarder moves each zmq_msg_t on
// unchanged (zmq_msg_send takes the received message, no copy in user
// space). n is split evenly over the sources. With `net`, the sources run on
// host a and the sinks on host b, over tcp (1-1 only).
Rate raw_throughput(Shape s, std::size_t size, long n, const CrossHost* net = nullptr) {
  if (net && s.forwarders) {
    throw std::invalid_argument("raw_throughput: two hosts want no forwarders");
  }
  n = (n + s.sources - 1) / s.sources * s.sources;
  const std::string what = fmt::format("raw {}{} {}", s.name(), net ? " tcp" : "", size_name(size));
  stage("{} throughput n={}", what, n);
  struct Report {
    long got;
    long bytes;
    std::int64_t first_ns;
    std::int64_t last_ns;
  };
  std::vector<std::string> sink_eps, forward_eps;
  for (int k = 0; k < s.sinks; ++k) {
    sink_eps.push_back(net ? net->endpoint(CrossHost::b) : endpoint("sink"));
  }
  for (int f = 0; f < s.forwarders; ++f) forward_eps.push_back(endpoint("fwd"));
  const std::vector<std::string>& first_hop = s.forwarders ? forward_eps : sink_eps;
  // as relay's sockets: a peer may bind a moment after its sender connects
  auto connect_all = [](void* sock, const std::vector<std::string>& eps) {
    const int ivl = 2;
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    for (const std::string& ep : eps) zcheck(zmq_connect(sock, ep.c_str()), "connect");
  };
  ReportPipe pipe;
  DonePipe done;
  SharedCount total;  // several sinks: what they received so far, together
  std::vector<pid_t> pids;
  const auto t0 = Clock::now();
  for (int k = 0; k < s.sinks; ++k) {
    pids.push_back(spawn([&, k] {
      if (net) net->enter(CrossHost::b);
      void* ctx = zmq_ctx_new();
      void* sock = zmq_socket(ctx, ZMQ_PULL);
      zcheck(zmq_bind(sock, sink_eps[static_cast<std::size_t>(k)].c_str()), "bind");
      zmq_msg_t m;
      zmq_msg_init(&m);
      Report r{0, 0, 0, 0};
      if (s.sinks == 1) {  // it knows it must receive all n
        while (r.got < n) {
          if (zmq_msg_recv(&m, sock, 0) < 0) {
            if (zmq_errno() == EINTR) continue;
            zcheck(-1, "recv");
          }
          if (r.got++ == 0) r.first_ns = mono_ns();
          r.bytes += static_cast<long>(zmq_msg_size(&m));
        }
        r.last_ns = mono_ns();
      } else {
        // None knows its share: each adds what it got to the shared total
        // whenever its inbox stays empty for 1 ms, and all stop once the
        // total is n (the last one about 1 ms after the last message).
        const int timeout_ms = 1;
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
        long published = 0;
        for (;;) {
          if (zmq_msg_recv(&m, sock, 0) >= 0) {
            if (r.got++ == 0) r.first_ns = mono_ns();
            r.bytes += static_cast<long>(zmq_msg_size(&m));
            continue;
          }
          if (zmq_errno() == EINTR) continue;
          if (zmq_errno() != EAGAIN) zcheck(-1, "recv");
          if (r.got > published) {
            r.last_ns = mono_ns() - 1'000'000;  // when the wait began
            *total += r.got - published;
            published = r.got;
          }
          if (*total >= n) break;
        }
      }
      done.signal();
      zmq_msg_close(&m);
      pipe.put(r);
      zmq_close(sock);
      zmq_ctx_term(ctx);
      return 0;
    }));
  }
  for (int f = 0; f < s.forwarders; ++f) {
    pids.push_back(spawn([&, f] {
      done.leave();
      void* ctx = zmq_ctx_new();
      void* in = zmq_socket(ctx, ZMQ_PULL);
      zcheck(zmq_bind(in, forward_eps[static_cast<std::size_t>(f)].c_str()), "bind");
      void* out = zmq_socket(ctx, ZMQ_PUSH);
      connect_all(out, sink_eps);
      // It cannot know when its share has passed: it waits in recv() 1 ms at
      // most, and stops at a wait once the sinks have everything.
      const int timeout_ms = 1;
      zmq_setsockopt(in, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
      zmq_msg_t m;
      zmq_msg_init(&m);
      for (;;) {
        if (zmq_msg_recv(&m, in, 0) >= 0) {
          while (zmq_msg_send(&m, out, 0) < 0) {  // on success m is empty again
            if (zmq_errno() != EINTR) zcheck(-1, "send");
          }
          continue;
        }
        if (zmq_errno() == EINTR) continue;
        if (zmq_errno() != EAGAIN) zcheck(-1, "recv");
        if (done.done()) break;
      }
      zmq_msg_close(&m);
      zmq_close(in);
      zmq_close(out);
      zmq_ctx_term(ctx);
      return 0;
    }));
  }
  for (int i = 0; i < s.sources; ++i) {
    pids.push_back(spawn([&] {
      if (net) net->enter(CrossHost::a);
      void* ctx = zmq_ctx_new();
      void* sock = zmq_socket(ctx, ZMQ_PUSH);
      connect_all(sock, first_hop);
      const std::string payload(size, 'x');
      for (long k = n / s.sources; k > 0; --k) {
        // zmq_send copies, as relay's send() copies into its encoder.
        while (zmq_send(sock, payload.data(), payload.size(), 0) < 0) {
          if (zmq_errno() != EINTR) zcheck(-1, "send");
        }
      }
      done.wait();
      zmq_close(sock);
      zmq_ctx_term(ctx);
      return 0;
    }));
  }
  done.close_all();
  bool ok = true;
  for (pid_t p : pids) ok = reap(p) && ok;  // every one, whatever the first says
  Rate rate;
  rate.seconds = seconds_since(t0);
  rate.n = n;
  Report sum{0, 0, INT64_MAX, 0};
  for (int k = 0; k < s.sinks && ok; ++k) {
    Report r{};
    ok = pipe.get(r);
    sum.got += r.got;
    sum.bytes += r.bytes;
    if (r.got > 0) {
      sum.first_ns = std::min(sum.first_ns, r.first_ns);
      sum.last_ns = std::max(sum.last_ns, r.last_ns);
    }
  }
  if (!ok || sum.got != n || sum.bytes != n * static_cast<long>(size)) {
    broken(fmt::format("{} run with n={} failed (sinks got {} messages)", what, n, sum.got));
    return rate;
  }
  rate.ok = true;
  if (sum.last_ns > sum.first_ns && n > 1) {
    rate.steady_rate =
        static_cast<double>(n - 1) * 1e9 / static_cast<double>(sum.last_ns - sum.first_ns);
  }
  return rate;
}

struct Latency {
  bool ok = false;
  double p50_us = NAN;
  double p99_us = NAN;
  long samples = 0;
};

struct LatencyReport {
  long samples;
  double p50_us;
  double p99_us;
};

// Collects a latency run of two children: reaps both, reads the report.
Latency finish_latency(DonePipe& done, ReportPipe& pipe, pid_t a, pid_t b, const char* what) {
  done.close_all();
  const bool reaped_a = reap(a);  // both, whatever the first says
  const bool ok = reap(b) && reaped_a;
  LatencyReport r{};
  if (!ok || !pipe.get(r)) {
    broken(std::string(what) + " run failed");
    return Latency{};
  }
  return {true, r.p50_us, r.p99_us, r.samples};
}

// Raw one-way latency, the method relay's figure uses (see the header).
Latency raw_one_way(const Options& o) {
  stage("raw one-way latency");
  const std::string ep = endpoint("oneway");
  const int total = o.latency_warmup + o.latency_samples;
  ReportPipe pipe;
  DonePipe done;
  const pid_t rx = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PULL);
    zcheck(zmq_bind(s, ep.c_str()), "bind");
    std::vector<std::int64_t> lat;
    lat.reserve(static_cast<std::size_t>(total));
    for (int i = 0; i < total;) {
      std::int64_t stamp = 0;
      if (zmq_recv(s, &stamp, sizeof stamp, 0) < 0) {
        if (zmq_errno() == EINTR) continue;
        zcheck(-1, "recv");
      }
      const std::int64_t now = mono_ns();
      if (i++ >= o.latency_warmup) lat.push_back(now - stamp);
    }
    done.signal();
    pipe.put(LatencyReport{static_cast<long>(lat.size()), percentile_us(lat, 0.50),
                           percentile_us(lat, 0.99)});
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
  });
  const pid_t tx = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PUSH);
    const int ivl = 2;
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zcheck(zmq_connect(s, ep.c_str()), "connect");
    for (int i = 0; i < total; ++i) {
      const std::int64_t stamp = mono_ns();
      zcheck(zmq_send(s, &stamp, sizeof stamp, 0), "send");
      sleep_us(o.latency_pause_us);
    }
    done.wait();
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
  });
  return finish_latency(done, pipe, rx, tx, "raw one-way latency");
}

// Raw PAIR ping-pong, back to back: one-way = RTT/2. Reference only.
Latency raw_ping_pong(const Options& o) {
  stage("raw ping-pong latency");
  const std::string ep = endpoint("pingpong");
  const int total = o.latency_warmup + o.latency_samples;
  ReportPipe pipe;
  DonePipe done;
  const pid_t echo = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PAIR);
    zcheck(zmq_bind(s, ep.c_str()), "bind");
    for (int i = 0; i < total;) {
      std::int64_t v = 0;
      if (zmq_recv(s, &v, sizeof v, 0) < 0) {
        if (zmq_errno() == EINTR) continue;
        zcheck(-1, "recv");
      }
      zcheck(zmq_send(s, &v, sizeof v, 0), "send");
      ++i;
    }
    done.wait();
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
  });
  const pid_t ping = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PAIR);
    const int ivl = 2;
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zcheck(zmq_connect(s, ep.c_str()), "connect");
    std::vector<std::int64_t> half_rtt;
    half_rtt.reserve(static_cast<std::size_t>(total));
    for (int i = 0; i < total; ++i) {
      const std::int64_t t = mono_ns();
      zcheck(zmq_send(s, &t, sizeof t, 0), "send");
      std::int64_t back = 0;
      while (zmq_recv(s, &back, sizeof back, 0) < 0) {
        if (zmq_errno() != EINTR) zcheck(-1, "recv");
      }
      if (i >= o.latency_warmup) half_rtt.push_back((mono_ns() - t) / 2);
    }
    done.signal();
    pipe.put(LatencyReport{static_cast<long>(half_rtt.size()), percentile_us(half_rtt, 0.50),
                           percentile_us(half_rtt, 0.99)});
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
  });
  return finish_latency(done, pipe, echo, ping, "raw ping-pong");
}

// The floor of starting and stopping 16 processes: fork, exit, reap.
double fork_startup(int actors) {
  stage("fork start-up");
  const auto t0 = Clock::now();
  std::vector<pid_t> pids;
  for (int i = 0; i < actors; ++i) pids.push_back(spawn([] { return 0; }));
  bool ok = true;
  for (pid_t p : pids) ok = reap(p) && ok;
  if (!ok) broken("fork start-up run failed");
  return seconds_since(t0);
}

// The same with ZeroMQ in each process, as any actor has it.
double raw_startup(int actors) {
  stage("raw start-up");
  const std::string ep = endpoint("startup");
  const auto t0 = Clock::now();
  std::vector<pid_t> pids;
  for (int i = 0; i < actors; ++i) {
    pids.push_back(spawn([&] {
      void* ctx = zmq_ctx_new();
      void* s = zmq_socket(ctx, ZMQ_DEALER);
      const int linger = 0;
      zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
      zcheck(zmq_connect(s, ep.c_str()), "connect");
      zmq_close(s);
      zmq_ctx_term(ctx);
      return 0;
    }));
  }
  bool ok = true;
  for (pid_t p : pids) ok = reap(p) && ok;
  if (!ok) broken("raw start-up run failed");
  return seconds_since(t0);
}

// The seed's way, for reference: Python multiprocessing (fork) starting 16
// processes joined by queues and passing one message (bench/python_startup.py).
// Returns the median of `runs` in ms, or nullopt (and why) without python3.
std::optional<double> python_startup(int runs, std::string& why) {
  stage("python start-up");
  std::string script = "bench/python_startup.py";  // bazel run: runfiles root
  if (::access(script.c_str(), R_OK) != 0) {
    const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY");
    script = std::string(ws ? ws : ".") + "/bench/python_startup.py";
  }
  if (::access(script.c_str(), R_OK) != 0) {
    why = "bench/python_startup.py not found";
    return std::nullopt;
  }
  const std::string command = "python3 " + script + " " + std::to_string(runs) + " 2>&1";
  std::FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) {
    why = "popen failed";
    return std::nullopt;
  }
  char line[256] = {};
  const bool got = std::fgets(line, sizeof line, p) != nullptr;
  const int status = ::pclose(p);
  char* end = nullptr;
  const double ms = got ? std::strtod(line, &end) : 0;
  if (!got || status != 0 || end == line) {
    why = got ? std::string("python3 said: ") + line : "python3 printed nothing";
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return std::nullopt;
  }
  return ms;
}

Rss raw_idle_rss() {
  stage("raw idle RSS");
  const std::string ep = endpoint("idle");
  const pid_t child = spawn([&] {
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PULL);
    zcheck(zmq_bind(s, ep.c_str()), "bind");
    sleep_us(300'000);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
  });
  sleep_us(150'000);
  const Rss r = read_rss(child);
  if (!reap(child)) broken("raw idle child failed");
  return r;
}

// ------------------------------------------------------------------- relay --

// Sends n copies of a payload of `size` bytes (a msgpack str); `keyed`: each
// after a key, 0..1023 in turn (for the by_key rows).
class Source : public relay::Actor {
 public:
  Source(long n, std::size_t size, bool keyed = false) : n_(n), size_(size), keyed_(keyed) {}
  void loop() override {
    const std::string payload(size_, 'x');
    if (keyed_) {
      for (long i = 0; i < n_; ++i) send(i % 1024, payload);
    } else {
      for (long i = 0; i < n_; ++i) send(payload);
    }
  }

 private:
  long n_;
  std::size_t size_;
  bool keyed_;
};

// Passes each message on as it came (send(const Message&): a large one's
// received frame goes out again, not copied; a small one is copied).
class Forward : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m); }
};

// Counts messages and the bytes of their payload (value `payload`); puts
// (count, bytes) to the queue at the end.
class Sink : public relay::Actor {
 public:
  explicit Sink(relay::Queue& q, std::size_t payload = 0) : q_(q), payload_(payload) {}
  void recv(const relay::Message& m) override {
    ++count_;
    bytes_ += static_cast<std::int64_t>(m.get<std::string_view>(payload_).size());
  }
  void shutdown() override { q_.put(count_, bytes_); }

 private:
  relay::Queue& q_;
  std::size_t payload_;
  std::int64_t count_ = 0;
  std::int64_t bytes_ = 0;
};

// Whether the sinks' (count, bytes) add up to `count` messages of `size`
// bytes; says what they counted otherwise.
bool sinks_counted(relay::Queue& q, std::int64_t count, std::size_t size, const std::string& what) {
  std::int64_t got = 0, bytes = 0;
  while (auto m = q.get_nowait()) {
    got += m->get<std::int64_t>(0);
    bytes += m->get<std::int64_t>(1);
  }
  if (got == count && bytes == count * static_cast<std::int64_t>(size)) return true;
  broken(fmt::format("{}: sinks counted {} messages / {} bytes, expected {} / {}", what, got,
                     bytes, count, count * static_cast<std::int64_t>(size)));
  return false;
}

// Relay in shape `s`: groups "src" (Sources, n split evenly over them),
// "work" (Forwards; none in an S-K shape) and "sink". `supervised`: every
// group but the sources' runs under Relay::restart() (default policy), the
// rows "vs same run without restart".
Rate relay_throughput(Shape s, std::size_t size, long n, bool supervised = false) {
  n = (n + s.sources - 1) / s.sources * s.sources;
  relay::Queue q;
  std::vector<std::unique_ptr<Source>> sources;
  std::vector<std::unique_ptr<Forward>> workers;
  std::vector<std::unique_ptr<Sink>> sinks;
  for (int i = 0; i < s.sources; ++i) {
    sources.push_back(std::make_unique<Source>(n / s.sources, size));
  }
  for (int i = 0; i < s.forwarders; ++i) workers.push_back(std::make_unique<Forward>());
  for (int i = 0; i < s.sinks; ++i) sinks.push_back(std::make_unique<Sink>(q));
  relay::Relay relay;
  if (s.forwarders == 0) {
    relay.connect(relay::group("src", sources), relay::group("sink", sinks));
  } else {
    relay.connect(relay::group("src", sources), relay::group("work", workers),
                  relay::group("sink", sinks));
  }
  if (supervised) {
    if (s.forwarders) relay.restart("work");
    relay.restart("sink");
  }
  const std::string what =
      fmt::format("relay {} {}{}", s.name(), size_name(size), supervised ? " supervised" : "");
  Rate rate;
  rate.n = n;
  stage("{} throughput n={}", what, n);
  const auto t0 = Clock::now();
  try {
    relay.start();
  } catch (const std::exception& e) {
    broken(fmt::format("{} n={}: {}", what, n, e.what()));
    return rate;
  }
  rate.seconds = seconds_since(t0);
  rate.ok = sinks_counted(q, n, size, what);
  return rate;
}

// The cross-host 1-1: the source on the driver's host, the sink on a worker.
// The driver (this program run again with --cross-host-driver, on host a)
// and the worker (with --relay-worker, on host b) both build it with this, as a program run
// across hosts must (README "Across hosts": actors are known by position).
// No key: the raw baseline is not encrypted either, and the hosts are the
// bench's own namespaces.
void connect_cross_host(relay::Relay& relay, Source& source, Sink& sink, const std::string& url) {
  relay.connect(relay::group("src", source), relay::group("sink", sink));
  relay.place("sink", relay::Placement::workers());
  relay.listen(url);
  relay.allow_insecure_network();
  relay.expect_workers(1, std::chrono::seconds(20));
}

// What the cross-host driver reports to the bench through an inherited pipe.
struct CrossHostReport {
  bool started;  // start() returned normally
  std::int64_t got;
  std::int64_t bytes;
};

// The cross-host driver's whole life (main() with --cross-host-driver): the
// source sends n payloads of `size` bytes to the sink on the worker; writes a
// CrossHostReport to `report_fd`. A program of its own, like the worker,
// because the two must build the same relay, and a queue is known by its rank
// among the queues its process made (in a forked child of the bench, the
// bench's queues would count).
int cross_host_driver(const std::string& url, std::size_t size, long n, int report_fd) {
  // Its one warning, every run, is the one the bench asked for
  // (allow_insecure_network()); errors still show.
  spdlog::set_level(spdlog::level::err);
  relay::Queue q;
  Source source(n, size);
  Sink sink(q);
  relay::Relay relay;
  connect_cross_host(relay, source, sink, url);
  CrossHostReport r{false, 0, 0};
  try {
    relay.start();
    r.started = true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench driver: relay 1-1 tcp %s n=%ld: %s\n", size_name(size).c_str(), n,
                 e.what());
  }
  while (auto m = q.get_nowait()) {
    r.got += m->get<std::int64_t>(0);
    r.bytes += m->get<std::int64_t>(1);
  }
  if (::write(report_fd, &r, sizeof r) != static_cast<ssize_t>(sizeof r)) return 1;
  return r.started ? 0 : 1;
}

// The cross-host worker's whole life (main() with --relay-worker): the same
// relay as the driver's; only the sink runs here, and the source's n is the
// driver's business.
int cross_host_worker(const std::string& url) {
  spdlog::set_level(spdlog::level::warn);
  relay::Queue q;
  Source source(0, 0);
  Sink sink(q);
  relay::Relay relay;
  connect_cross_host(relay, source, sink, url);
  try {
    relay.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench worker: %s\n", e.what());
    return 1;
  }
  return 0;
}

// In a forked child: runs this program again with `args`; returns only if
// exec failed.
int exec_self(std::vector<std::string> args) {
  std::vector<char*> argv;
  std::string arg0 = "bench";
  argv.push_back(arg0.data());
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  std::perror("bench: execv /proc/self/exe");
  return 127;
}

// Relay 1-1 from host a to host b over tcp: the driver on a, the worker on
// b, each this program run again (see cross_host_driver()). Timed like
// raw_throughput(): from before the first fork to after both are reaped, so
// the two programs' start (exec included) and the worker's join are in the
// figure, as the raw processes' start is in theirs.
Rate relay_cross_host(std::size_t size, long n, const CrossHost& net) {
  const std::string what = fmt::format("relay 1-1 tcp {}", size_name(size));
  stage("{} throughput n={}", what, n);
  const std::string url = net.endpoint(CrossHost::a);
  ReportPipe pipe;  // its write end is inherited across exec
  Rate rate;
  rate.n = n;
  const auto t0 = Clock::now();
  const pid_t driver = spawn([&] {
    net.enter(CrossHost::a);
    return exec_self({"--cross-host-driver", url, std::to_string(size), std::to_string(n),
                      std::to_string(pipe.write_fd())});
  });
  const pid_t worker = spawn([&] {
    net.enter(CrossHost::b);
    return exec_self({"--relay-worker", url});
  });
  const bool ok_driver = reap(driver);
  const bool ok_worker = reap(worker);
  rate.seconds = seconds_since(t0);
  CrossHostReport r{};
  if (!ok_driver || !ok_worker || !pipe.get(r) || !r.started) {
    broken(fmt::format("{} n={}: the driver or its worker failed", what, n));
    return rate;
  }
  if (r.got != n || r.bytes != n * static_cast<std::int64_t>(size)) {
    broken(fmt::format("{}: sinks counted {} messages / {} bytes, expected {} / {}", what, r.got,
                       r.bytes, n, n * static_cast<std::int64_t>(size)));
    return rate;
  }
  rate.ok = true;
  return rate;
}

enum class Edge { round_robin, by_key, broadcast };

const char* edge_name(Edge e) {
  switch (e) {
    case Edge::round_robin: return "round robin";
    case Edge::by_key: return "by_key";
    case Edge::broadcast: return "broadcast";
  }
  return "?";
}

// 1 source -> 4 sinks over one edge of grouping `e`: the rate is of messages
// the source sent (a broadcast delivers each four times).
Rate grouping_throughput(Edge e, std::size_t size, long n) {
  relay::Queue q;
  Source source(n, size, /*keyed=*/true);
  std::vector<std::unique_ptr<Sink>> sinks;
  for (int i = 0; i < 4; ++i) sinks.push_back(std::make_unique<Sink>(q, 1));
  relay::Relay relay;
  relay::Group group = relay::group("sinks", sinks);
  switch (e) {
    case Edge::round_robin: relay.connect(source, group); break;
    case Edge::by_key: relay.connect(source, relay::by_key(group)); break;
    case Edge::broadcast: relay.connect(source, relay::broadcast(group)); break;
  }
  Rate rate;
  rate.n = n;
  stage("relay 1-4 {} {} n={}", edge_name(e), size_name(size), n);
  const auto t0 = Clock::now();
  try {
    relay.start();
  } catch (const std::exception& ex) {
    broken(fmt::format("relay 1-4 {}: {}", edge_name(e), ex.what()));
    return rate;
  }
  rate.seconds = seconds_since(t0);
  rate.ok = sinks_counted(q, e == Edge::broadcast ? 4 * n : n, size,
                          fmt::format("relay 1-4 {}", edge_name(e)));
  return rate;
}

// One-way latency over relay 1-1: the method of raw_one_way().
class StampSource : public relay::Actor {
 public:
  StampSource(int total, int pause_us) : total_(total), pause_us_(pause_us) {}
  void loop() override {
    for (int i = 0; i < total_; ++i) {
      send(mono_ns());
      sleep_us(pause_us_);
    }
  }

 private:
  int total_;
  int pause_us_;
};

class StampSink : public relay::Actor {
 public:
  StampSink(relay::Queue& q, int warmup, int samples) : q_(q), warmup_(warmup) {
    lat_.reserve(static_cast<std::size_t>(samples));
  }
  void recv(const relay::Message& m) override {
    const std::int64_t lat = mono_ns() - m.get<std::int64_t>(0);
    if (seen_++ >= warmup_) lat_.push_back(lat);
  }
  void shutdown() override { q_.put(lat_); }

 private:
  relay::Queue& q_;
  int warmup_;
  int seen_ = 0;
  std::vector<std::int64_t> lat_;
};

Latency relay_one_way(const Options& o) {
  relay::Queue q;
  StampSource source(o.latency_warmup + o.latency_samples, o.latency_pause_us);
  StampSink sink(q, o.latency_warmup, o.latency_samples);
  relay::Relay relay;
  relay.connect(source, sink);
  Latency l;
  stage("relay one-way latency");
  try {
    relay.start();
  } catch (const std::exception& e) {
    broken(std::string("relay latency run: ") + e.what());
    return l;
  }
  auto m = q.get_nowait();
  if (!m) {
    broken("relay latency run: the sink reported nothing");
    return l;
  }
  const auto lat = m->get<std::vector<std::int64_t>>(0);
  return {true, percentile_us(lat, 0.50), percentile_us(lat, 0.99), static_cast<long>(lat.size())};
}

// 16 actors: Source -> 14 Forward -> Sink, one message through.
double relay_startup() {
  relay::Queue q;
  Source source(1, 16);
  std::vector<std::unique_ptr<Forward>> workers;
  for (int i = 0; i < 14; ++i) workers.push_back(std::make_unique<Forward>());
  Sink sink(q);
  relay::Relay relay;
  relay.connect(source, workers, sink);
  stage("relay start-up");
  const auto t0 = Clock::now();
  try {
    relay.start();
  } catch (const std::exception& e) {
    broken(std::string("relay start-up run: ") + e.what());
    return NAN;
  }
  return seconds_since(t0);
}

class IdleSource : public relay::Actor {
 public:
  void loop() override { sleep_us(300'000); }
};

class IdleSink : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// Runs in the main process while the actors run.
class RssProbe : public relay::Handler {
 public:
  RssProbe(const relay::Actor& source, const relay::Actor& sink) : source_(source), sink_(sink) {}
  void run() override {
    sleep_us(150'000);  // the source is asleep in loop() by now
    if (auto pid = source_.pid()) source_rss = read_rss(*pid);
    if (auto pid = sink_.pid()) sink_rss = read_rss(*pid);
  }
  Rss source_rss;
  Rss sink_rss;

 private:
  const relay::Actor& source_;
  const relay::Actor& sink_;
};

// ----------------------------------------------------------------- results --

struct Row {
  std::string figure;
  std::string raw;
  std::string relay;
  std::string ratio;
  std::string target = "";  // "; " between several
  std::string result = "";
  int targets = 0;
  int met = 0;
};

std::string pass(bool ok) { return ok ? "PASS" : "MISS"; }

void add_target(Row& row, const std::string& target, bool ok) {
  row.target += (row.target.empty() ? "" : "; ") + target;
  row.result += (row.result.empty() ? "" : "; ") + pass(ok);
  ++row.targets;
  row.met += ok ? 1 : 0;
}

// Finds n so that run(n) spends about `target` seconds on its messages,
// beyond what every run pays whatever its n (starting, connecting and
// stopping its processes: 20-40 ms for two raw processes, 0.1-0.3 s for ten
// relay actors or for two programs across hosts). A run at n0, small enough
// to be almost all of that fixed cost, measures it; n then grows fourfold
// until a run's time beyond it is a third of the target, and is scaled in
// proportion to that time. (Scaling whole-run times instead, as the bench
// did before, left runs with a large fixed cost at 0.1-0.3 s, mostly
// measuring start-up.)
template <class Run>
long calibrate(Run run, long n0, long n_max, double target) {
  Rate r = run(n0);
  if (!r.ok) return n0;
  const double fixed = r.seconds;
  long n = n0;
  for (int i = 0; i < 10 && n < n_max && r.seconds - fixed < target / 3; ++i) {
    n = std::min(n * 4, n_max);
    r = run(n);
    if (!r.ok) return n;
  }
  const double work = r.seconds - fixed;
  if (work <= 0) return n;
  const double want = static_cast<double>(n) * target / work;
  return std::clamp<long>(static_cast<long>(want), std::min(n0, n_max), n_max);
}

// One throughput figure: a shape and a payload size, raw ZeroMQ or relay.
struct Config {
  std::size_t size;
  Shape shape;
  bool raw;
  bool supervised = false;         // relay: Relay::restart() on all but the sources
  const CrossHost* net = nullptr;  // set: 1-1 from host a to host b over tcp
  int same_n_as = -1;              // index of the config whose n it takes
  long n = 0;
  std::vector<double> rates = {};
  std::vector<double> steady = {};
  double rate() const { return median(rates); }
};

Rate run_config(const Config& c, long n) {
  if (c.raw) return raw_throughput(c.shape, c.size, n, c.net);
  if (c.net) return relay_cross_host(c.size, n, *c.net);
  return relay_throughput(c.shape, c.size, n, c.supervised);
}

std::string config_label(const Config& c) {
  return fmt::format("{:<5} {:<9} {:>7}{}", c.raw ? "raw" : "relay",
                     c.shape.name() + (c.net ? " tcp" : ""), size_name(c.size),
                     c.supervised ? " restart" : "");
}

// The raw config of c's shape, size and hosts in `configs` (nullptr if none).
const Config* raw_of(const std::vector<Config>& configs, const Config& c) {
  for (const Config& r : configs) {
    if (r.raw && r.shape == c.shape && r.size == c.size && r.net == c.net) return &r;
  }
  return nullptr;
}

// Calibrates every config's n (or takes that of `same_n_as`), then runs
// each `o.runs` times, the configs interleaved so that a noisy neighbour hurts
// all of them alike, and prints every run.
void measure(std::vector<Config>& configs, const Options& o) {
  for (Config& c : configs) {
    if (c.same_n_as >= 0) {
      c.n = configs[static_cast<std::size_t>(c.same_n_as)].n;
      continue;
    }
    const bool big = c.size >= (1u << 20);
    const long n0 = big ? 32 : (c.raw ? 20000 : 2000);
    const long n_max = big ? 20000 : 50'000'000;
    c.n = calibrate([&](long n) { return run_config(c, n); }, n0, n_max, o.target_s);
  }
  for (int r = 0; r < o.runs; ++r) {
    for (Config& c : configs) {
      const Rate rate = run_config(c, c.n);
      c.rates.push_back(rate.msgs());
      if (!std::isnan(rate.steady_rate)) c.steady.push_back(rate.steady_rate);
      std::printf("  run %d/%d  %s  n=%-9ld %6.3f s  %9s msg/s  %9.1f MB/s%s\n", r + 1, o.runs,
                  config_label(c).c_str(), rate.n, rate.seconds, si(rate.msgs()).c_str(),
                  rate.msgs() * static_cast<double>(c.size) / 1e6,
                  std::isnan(rate.steady_rate)
                      ? ""
                      : fmt::format("  (steady state {} msg/s)", si(rate.steady_rate)).c_str());
    }
  }
}

std::string rate_text(double rate, std::size_t size) {
  return fmt::format("{} msg/s, {:.1f} MB/s", si(rate), rate * static_cast<double>(size) / 1e6);
}

// Prints the median line of a config; for relay with its ratio to `raw`
// (the same shape) and, if given, to `raw11` (raw 1-1 of its size).
void print_median(const Config& c, const Config* raw, const Config* raw11 = nullptr) {
  const double rate = c.rate();
  std::string tail;
  if (c.raw) {
    tail = fmt::format("  (steady state {} msg/s)", si(median(c.steady)));
  } else if (raw) {
    tail = fmt::format("  vs raw {} {}", raw->shape.name(), ratio(rate, raw->rate()));
    if (raw11 && raw11 != raw) tail += fmt::format(" (vs raw 1-1 {})", ratio(rate, raw11->rate()));
  }
  std::printf("  median  %s  %9s msg/s  %9.1f MB/s%s\n", config_label(c).c_str(), si(rate).c_str(),
              rate * static_cast<double>(c.size) / 1e6, tail.c_str());
}

// The sections --only may name, in the order a full run measures them.
constexpr const char* kSections[] = {"rss",       "startup",     "latency", "throughput",
                                     "groupings", "supervision", "scaling", "cross-host"};

}  // namespace

int main(int argc, char** argv) {
  // The two programs of a cross-host row (relay_cross_host() starts them):
  // with --relay-worker URL this program is the worker, with
  // --cross-host-driver URL BYTES N FD the driver. relay::init() is called
  // only for the worker, so that a RELAY_WORKER in the environment cannot
  // make a bench a worker.
  if (argc == 6 && std::string_view(argv[1]) == "--cross-host-driver") {
    return cross_host_driver(argv[2], std::strtoul(argv[3], nullptr, 10),
                             std::strtol(argv[4], nullptr, 10), std::atoi(argv[5]));
  }
  if (argc == 3 && std::string_view(argv[1]) == "--relay-worker") {
    const std::string url = argv[2];
    relay::init(argc, argv);
    return cross_host_worker(url);
  }
  Options o;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--verbose" || a == "-v") {
      g_verbose = true;
    } else if (a == "--one" && i + 1 < argc) {
      o.one = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a.rfind("--only=", 0) == 0) {
      only = a.substr(7);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--runs" && i + 1 < argc) {
      o.runs = std::max(1, std::atoi(argv[++i]));
    } else if (a.rfind("--runs=", 0) == 0) {
      o.runs = std::max(1, std::atoi(a.c_str() + 7));
    } else if (a == "--commit" && i + 1 < argc) {
      o.commit = argv[++i];
    } else if (a.rfind("--commit=", 0) == 0) {
      o.commit = a.substr(9);
    } else {
      std::fprintf(stderr, "bench: unknown argument '%s'\n\n%s", a.c_str(), kUsage);
      return 64;
    }
  }
  for (std::size_t start = 0; start < only.size();) {
    const std::size_t comma = std::min(only.find(',', start), only.size());
    const std::string name = only.substr(start, comma - start);
    if (std::find_if(std::begin(kSections), std::end(kSections),
                     [&](const char* k) { return name == k; }) == std::end(kSections)) {
      std::fprintf(stderr, "bench: unknown section '%s' for --only\n\n%s", name.c_str(), kUsage);
      return 64;
    }
    o.only.push_back(name);
    start = comma + 1;
  }
  if (o.quick) {
    bool runs_given = false;
    for (int i = 1; i < argc; ++i) {
      runs_given |= std::string_view(argv[i]).rfind("--runs", 0) == 0;
    }
    if (!runs_given) o.runs = 1;
    o.target_s = 0.05;
    o.latency_samples = 300;
    o.latency_warmup = 50;
    o.startup_runs = 3;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows even when piped
  ::signal(SIGALRM, on_watchdog);
  // relay's own records (warnings and worse only) must not drown the figures.
  spdlog::set_level(spdlog::level::warn);

  if (o.one.rfind("startup:", 0) == 0) {
    const int runs = std::atoi(o.one.c_str() + 8);
    if (runs <= 0) {
      std::fprintf(stderr, "bench: --one startup:N wants N > 0 runs\n");
      return 64;
    }
    // CPU time of the children (user + system), which is what the start-up of
    // 16 processes on 2 cores is bound by.
    auto children_cpu_ms = [] {
      rusage u{};
      ::getrusage(RUSAGE_CHILDREN, &u);
      return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
             (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
    };
    for (int i = 0; i < runs; ++i) {
      double c = children_cpu_ms();
      const double fork_ms = fork_startup(16) * 1e3;
      const double fork_cpu = children_cpu_ms() - c;
      c = children_cpu_ms();
      const double raw_ms = raw_startup(16) * 1e3;
      const double raw_cpu = children_cpu_ms() - c;
      c = children_cpu_ms();
      const double relay_ms = relay_startup() * 1e3;
      const double relay_cpu = children_cpu_ms() - c;
      std::printf("16 processes: fork %.2f ms, raw ZeroMQ %.2f ms, relay %.2f ms; CPU of the "
                  "children %.1f / %.1f / %.1f ms\n",
                  fork_ms, raw_ms, relay_ms, fork_cpu, raw_cpu, relay_cpu);
    }
    ::alarm(0);
    return g_broken ? 2 : 0;
  }
  if (!o.one.empty()) {
    char topo[16] = {};
    char mode[16] = {};
    unsigned long bytes = 0;
    long n = 0;
    const int fields = std::sscanf(o.one.c_str(), "%15[^:]:%lu:%ld:%15s", topo, &bytes, &n, mode);
    const bool supervised = fields == 4 && std::string_view(mode) == "restart";
    if (fields < 3 || n <= 0 || (fields == 4 && !supervised)) {
      std::fprintf(stderr, "bench: --one wants TOPOLOGY:BYTES:N[:restart], e.g. 1-1:16:2000000\n");
      return 64;
    }
    const std::string t = topo;
    const bool raw = t == "raw" || t.rfind("raw-", 0) == 0;
    const bool tcp = t == "tcp-raw" || t == "tcp-1-1";
    const std::optional<Shape> shape =
        t == "raw" || tcp ? std::optional<Shape>(kOneOne) : Shape::parse(raw ? t.substr(4) : t);
    if (!shape || (supervised && (raw || tcp))) {
      std::fprintf(stderr, "bench: unknown topology '%s'%s\n", topo,
                   shape ? " for :restart (relay shapes only)" : "");
      return 64;
    }
    std::unique_ptr<CrossHost> net;
    if (tcp) {
      std::string why;
      net = CrossHost::make(why);
      if (!net) {
        std::printf("%s %s: skipped: %s\n", t.c_str(), size_name(bytes).c_str(), why.c_str());
        return 0;
      }
    }
    const Config c{bytes, *shape, raw || t == "tcp-raw", supervised, net.get()};
    const Rate r = run_config(c, n);
    ::alarm(0);
    std::printf("%s %s%s n=%ld: %.3f s, %s msg/s, %.1f MB/s\n", t.c_str(), size_name(bytes).c_str(),
                supervised ? " restart" : "", r.n, r.seconds, si(r.msgs()).c_str(),
                r.msgs() * static_cast<double>(bytes) / 1e6);
    return g_broken ? 2 : 0;
  }

  const auto bench_t0 = Clock::now();
  const std::string commit = o.commit.empty() ? git_commit() : o.commit;
  const std::string machine = machine_line();
  std::printf("relay bench: %s\n", o.quick ? "QUICK (smoke run, figures are rough)" : "full run");
  std::printf("machine: %s\n", machine.c_str());
  std::printf("commit:  %s\n", commit.c_str());
  std::printf("runs per throughput figure: %d (median), ~%.2f s each beyond start-up\n\n", o.runs,
              o.target_s);
  std::vector<Row> rows;
  auto want = [&](const char* section) {
    return o.only.empty() || std::find(o.only.begin(), o.only.end(), section) != o.only.end();
  };

  // ---- RSS, first: a forked child starts with this process's pages.
  if (want("rss")) {
    const Rss main_rss = read_rss(::getpid());
    const Rss raw_rss = raw_idle_rss();
    Rss relay_rss, relay_sink_rss;
    {
      IdleSource source;
      IdleSink sink;
      relay::Relay relay;
      relay.connect(source, sink);
      RssProbe probe(source, sink);
      stage("relay idle RSS");
      try {
        relay.start(probe);
        relay_rss = probe.source_rss;
        relay_sink_rss = probe.sink_rss;
      } catch (const std::exception& e) {
        broken(std::string("relay RSS run: ") + e.what());
      }
    }
    std::printf("idle process RSS (VmRSS / RssAnon, kB; this main process: %ld / %ld):\n",
                main_rss.vm_rss_kb, main_rss.rss_anon_kb);
    std::printf("  raw ZeroMQ child (context + bound PULL) %6ld / %ld\n", raw_rss.vm_rss_kb,
                raw_rss.rss_anon_kb);
    std::printf("  relay idle source actor                 %6ld / %ld\n", relay_rss.vm_rss_kb,
                relay_rss.rss_anon_kb);
    std::printf("  relay idle sink actor                   %6ld / %ld\n\n",
                relay_sink_rss.vm_rss_kb, relay_sink_rss.rss_anon_kb);
    const double raw_mb = static_cast<double>(raw_rss.vm_rss_kb) * 1024 / 1e6;
    const double relay_mb = static_cast<double>(relay_rss.vm_rss_kb) * 1024 / 1e6;
    Row row{"idle actor RSS (VmRSS)", fmt::format("{:.1f} MB", raw_mb),
            fmt::format("{:.1f} MB", relay_mb), ratio(relay_mb, raw_mb)};
    add_target(row, "< 10 MB", relay_rss.vm_rss_kb > 0 && relay_mb < 10.0);
    rows.push_back(std::move(row));
  }

  // ---- start-up + tear-down, 16 actors.
  if (want("startup")) {
    std::vector<double> forks, raw, rel;
    for (int i = 0; i < o.startup_runs; ++i) {
      forks.push_back(fork_startup(16) * 1e3);
      raw.push_back(raw_startup(16) * 1e3);
      rel.push_back(relay_startup() * 1e3);
    }
    const double raw_ms = median(raw), relay_ms = median(rel);
    std::printf("start-up + tear-down, 16 processes, median of %d (ms):\n", o.startup_runs);
    std::printf("  fork, exit, reap (no ZeroMQ)                           %7.2f\n", median(forks));
    std::printf("  raw ZeroMQ (fork, context, connect, close, exit, reap) %7.2f\n", raw_ms);
    std::printf("  relay 1 -> 14 -> 1, one message, Relay::start()       %7.2f  (min %.2f, max %.2f)\n\n",
                relay_ms, *std::min_element(rel.begin(), rel.end()),
                *std::max_element(rel.begin(), rel.end()));
    Row row{"16-actor start + stop", fmt::format("{:.1f} ms", raw_ms),
            fmt::format("{:.1f} ms", relay_ms), ratio(relay_ms, raw_ms)};
    add_target(row, "< 25 ms", relay_ms < 25.0);
    rows.push_back(std::move(row));
    std::string why;
    if (const auto py = python_startup(o.startup_runs, why)) {
      std::printf("  (reference) Python multiprocessing, fork, 16 processes and queues, one "
                  "message: %.2f; relay/Python %.2fx\n\n", *py, relay_ms / *py);
      rows.push_back({"(reference) Python multiprocessing (fork) 16 processes + queues, one message",
                      "", fmt::format("{:.1f} ms", *py),
                      fmt::format("relay/Python {:.2f}x", relay_ms / *py)});
    } else {
      std::printf("  (reference) Python multiprocessing: skipped (%s)\n\n", why.c_str());
    }
  }

  // ---- latency, low load.
  if (want("latency")) {
    const Latency pp = raw_ping_pong(o);
    const Latency raw = raw_one_way(o);
    const Latency rel = relay_one_way(o);
    std::printf("latency, one way, %d samples after %d warm-up (us):          p50      p99\n",
                o.latency_samples, o.latency_warmup);
    std::printf("  raw PAIR ping-pong, back to back, RTT/2                 %7.1f  %7.1f\n",
                pp.p50_us, pp.p99_us);
    std::printf("  raw PUSH->PULL, stamped, %3d us pause                   %7.1f  %7.1f\n",
                o.latency_pause_us, raw.p50_us, raw.p99_us);
    std::printf("  relay 1-1, stamped, %3d us pause                        %7.1f  %7.1f\n\n",
                o.latency_pause_us, rel.p50_us, rel.p99_us);
    Row row{"latency 1-1 one-way p50 / p99 (stamped, 100 us pause)",
            fmt::format("{:.1f} / {:.1f} us", raw.p50_us, raw.p99_us),
            fmt::format("{:.1f} / {:.1f} us", rel.p50_us, rel.p99_us),
            ratio(rel.p50_us, raw.p50_us)};
    add_target(row, "p50 <= 2x raw", raw.ok && rel.ok && rel.p50_us <= 2 * raw.p50_us);
    rows.push_back(std::move(row));
    rows.push_back({"(reference) raw PAIR ping-pong RTT/2 p50 / p99",
                    fmt::format("{:.1f} / {:.1f} us", pp.p50_us, pp.p99_us), "", ""});
  }

  // ---- throughput (issue 12, point 1): relay 1-1, 1-2-1 and 2-2-2 beside
  // raw ZeroMQ of the same shape, each size.
  if (want("throughput")) {
    const Shape shapes[] = {kOneOne, kOneTwoOne, kTwoTwoTwo};
    const std::size_t sizes[] = {16, 1024, 1u << 20};
    std::vector<Config> configs;
    for (std::size_t size : sizes) {
      for (bool raw : {true, false}) {
        for (Shape s : shapes) configs.push_back({size, s, raw});
      }
    }
    std::printf(
        "throughput, whole run (process start to reap), n calibrated to ~%.2f s beyond start-up\n"
        "and tear-down, each relay shape against raw ZeroMQ of the same shape:\n",
        o.target_s);
    measure(configs, o);
    std::printf("\n");
    for (const Config& c : configs) {
      const Config* raw = raw_of(configs, c);
      const Config* raw11 = raw_of(configs, {c.size, kOneOne, true});
      print_median(c, raw, raw11);
      if (c.raw) continue;
      const double rate = c.rate(), raw_rate = raw->rate(), raw11_rate = raw11->rate();
      Row row{fmt::format("throughput {} {}", c.shape.name(), size_name(c.size)),
              fmt::format("{}: {}", raw->shape.name(), rate_text(raw_rate, c.size)),
              rate_text(rate, c.size), ratio(rate, raw_rate)};
      if (c.shape != kOneOne) row.ratio += fmt::format(" (vs raw 1-1 {})", ratio(rate, raw11_rate));
      if (c.shape == kOneOne && c.size == 16) {
        add_target(row, ">= 50% of raw msg/s", rate >= 0.5 * raw_rate);
        add_target(row, ">= 1.0x raw 1-1 (goal)", rate >= raw_rate);
      } else if (c.shape == kOneOne && c.size == (1u << 20)) {
        add_target(row, ">= 70% of raw MB/s", rate >= 0.7 * raw_rate);
      } else if (c.size == 16) {
        add_target(row, fmt::format(">= 0.8x raw {}", c.shape.name()), rate >= 0.8 * raw_rate);
      }
      rows.push_back(std::move(row));
    }
  }

  // ---- groupings: one edge 1 -> 4 at 16 B, each grouping, same n, and raw
  // PUSH -> 4 PULL for the round robin's shape (raw ZeroMQ has no by_key,
  // and a broadcast is another pattern: those two are measured against relay's
  // round robin).
  if (want("groupings")) {
    const Edge edges[] = {Edge::round_robin, Edge::by_key, Edge::broadcast};
    const Shape one_four{1, 0, 4};
    const long n = calibrate([&](long k) { return grouping_throughput(Edge::round_robin, 16, k); },
                             2000, 50'000'000, o.target_s);
    const long raw_n = calibrate([&](long k) { return raw_throughput(one_four, 16, k); }, 20000,
                                 50'000'000, o.target_s);
    std::vector<double> rates[3], raw_rates;
    for (int r = 0; r < o.runs; ++r) {
      const Rate raw = raw_throughput(one_four, 16, raw_n);
      raw_rates.push_back(raw.msgs());
      std::printf("  run %d/%d  raw   1-4         16 B  n=%-9ld %6.3f s  %9s msg/s\n", r + 1,
                  o.runs, raw_n, raw.seconds, si(raw.msgs()).c_str());
      for (int k = 0; k < 3; ++k) {
        const Rate rate = grouping_throughput(edges[k], 16, n);
        rates[k].push_back(rate.msgs());
        std::printf("  run %d/%d  relay 1-4 %-11s 16 B  n=%-9ld %6.3f s  %9s msg/s\n", r + 1,
                    o.runs, edge_name(edges[k]), n, rate.seconds, si(rate.msgs()).c_str());
      }
    }
    const double rr = median(rates[0]), raw_rate = median(raw_rates);
    std::printf("  median  raw   1-4         16 B  %9s msg/s\n", si(raw_rate).c_str());
    for (int k = 0; k < 3; ++k) {
      const double rate = median(rates[k]);
      std::printf("  median  relay 1-4 %-11s 16 B  %9s msg/s sent  %s\n", edge_name(edges[k]),
                  si(rate).c_str(),
                  k == 0 ? ("vs raw 1-4 " + ratio(rate, raw_rate)).c_str()
                         : (ratio(rate, rr) + " of round robin").c_str());
      rows.push_back({fmt::format("throughput 1-4 {} 16 B (messages sent)", edge_name(edges[k])),
                      k == 0 ? fmt::format("1-4: {} msg/s", si(raw_rate)) : "",
                      fmt::format("{} msg/s", si(rate)),
                      k == 0 ? ratio(rate, raw_rate) : ratio(rate, rr) + " of round robin"});
    }
  }

  // ---- supervision (issue 11): 1-1 and 1-2-1 at 16 B with every group but
  // the source's under Relay::restart() (default policy), beside the same
  // shapes without it: same n (calibrated without restart), runs interleaved,
  // with raw baselines of the same shapes of their own. Nothing fails: the
  // cost is that of a run where every actor succeeds (sequence numbers, frames
  // held until finished, credit on finish, acknowledged puts).
  if (want("supervision")) {
    std::vector<Config> sup;
    for (Shape s : {kOneOne, kOneTwoOne}) {
      sup.push_back({16, s, true});
      sup.push_back({16, s, false});
      sup.push_back({16, s, false, true, nullptr, static_cast<int>(sup.size()) - 1});
    }
    std::printf(
        "\nsupervision, 16 B, every group but the source's under restart(), the same n "
        "without:\n");
    measure(sup, o);
    std::printf("\n");
    for (std::size_t i = 0; i < sup.size(); i += 3) {
      const Config& raw = sup[i];
      const Config& plain = sup[i + 1];
      const Config& restart = sup[i + 2];
      const double raw_rate = raw.rate(), plain_rate = plain.rate(), rate = restart.rate();
      const std::string name = plain.shape.name();
      print_median(raw, nullptr);
      print_median(plain, &raw);
      std::printf(
          "  median  %s  %9s msg/s  %9.1f MB/s  vs raw %s %s, %s vs same run without "
          "restart\n",
          config_label(restart).c_str(), si(rate).c_str(), rate * 16 / 1e6, name.c_str(),
          ratio(rate, raw_rate).c_str(), ratio(rate, plain_rate).c_str());
      rows.push_back({fmt::format("throughput {} 16 B, no restart (supervision runs)", name),
                      fmt::format("{}: {} msg/s", name, si(raw_rate)),
                      fmt::format("{} msg/s", si(plain_rate)), ratio(plain_rate, raw_rate)});
      Row row{fmt::format("throughput {} 16 B, restart() on every group but the source's", name),
              fmt::format("{}: {} msg/s", name, si(raw_rate)), fmt::format("{} msg/s", si(rate)),
              fmt::format("{} (vs same run without restart {})", ratio(rate, raw_rate),
                          ratio(rate, plain_rate))};
      add_target(row, ">= 0.8x of without restart", rate >= 0.8 * plain_rate);
      rows.push_back(std::move(row));
    }
  }

  // ---- scaling (issue 12, point 5): 1-N-1 for N = 1, 2, 4, 8 forwarders,
  // relay and raw ZeroMQ of the same shape. On 2 cores more forwarders mean
  // more processes sharing them, not more speed; the ratio to raw says how
  // relay's per-process cost grows with them.
  if (want("scaling")) {
    const int widths[] = {1, 2, 4, 8};
    std::vector<Config> configs;
    for (std::size_t size : {std::size_t{16}, std::size_t{1024}}) {
      for (int w : widths) {
        configs.push_back({size, Shape{1, w, 1}, true});
        configs.push_back({size, Shape{1, w, 1}, false});
      }
    }
    std::printf("\nscaling, 1-N-1 (N forwarders), relay against raw ZeroMQ of the same shape:\n");
    measure(configs, o);
    std::printf("\n  %-14s %11s %11s %9s %11s %11s\n", "shape", "raw msg/s", "relay msg/s",
                "relay/raw", "raw vs N=1", "relay vs N=1");
    for (std::size_t i = 0; i < configs.size(); i += 2) {
      const Config& raw = configs[i];
      const Config& rel = configs[i + 1];
      const std::size_t first = i / 8 * 8;  // N = 1 of this size
      const double raw1 = configs[first].rate(), rel1 = configs[first + 1].rate();
      std::printf("  %-14s %11s %11s %9s %11s %11s\n",
                  fmt::format("{} {}", rel.shape.name(), size_name(rel.size)).c_str(),
                  si(raw.rate()).c_str(), si(rel.rate()).c_str(),
                  ratio(rel.rate(), raw.rate()).c_str(), ratio(raw.rate(), raw1).c_str(),
                  ratio(rel.rate(), rel1).c_str());
      rows.push_back({fmt::format("scaling {} {}", rel.shape.name(), size_name(rel.size)),
                      rate_text(raw.rate(), raw.size), rate_text(rel.rate(), rel.size),
                      ratio(rel.rate(), raw.rate())});
    }
  }

  // ---- across hosts (issue 12, point 5): 1-1 from one network namespace to
  // another over tcp (a veth pair), relay (driver with the source on host a,
  // worker with the sink on host b) against raw PUSH -> PULL between the same
  // two namespaces.
  if (want("cross-host")) {
    std::printf("\nacross hosts, 1-1 over tcp between two network namespaces:\n");
    std::string why;
    stage("cross-host: making two network namespaces");
    const std::unique_ptr<CrossHost> net = CrossHost::make(why);
    if (!net) {
      std::printf("  skipped: %s\n", why.c_str());
      rows.push_back(
          {"cross-host 1-1 tcp (two network namespaces)", "skipped", "skipped: " + why, ""});
    } else {
      std::vector<Config> configs;
      for (std::size_t size : {std::size_t{16}, std::size_t{1024}, std::size_t{1} << 20}) {
        configs.push_back({size, kOneOne, true, false, net.get()});
        configs.push_back({size, kOneOne, false, false, net.get()});
      }
      measure(configs, o);
      std::printf("\n");
      for (const Config& c : configs) {
        print_median(c, raw_of(configs, c));
        if (c.raw) continue;
        const Config& raw = *raw_of(configs, c);
        rows.push_back({fmt::format("cross-host 1-1 tcp {}", size_name(c.size)),
                        rate_text(raw.rate(), c.size), rate_text(c.rate(), c.size),
                        ratio(c.rate(), raw.rate())});
      }
      // What every run above pays whatever its n: start, connect (and for
      // relay the worker's join), one message, tear-down.
      std::vector<double> one_raw, one_relay;
      for (int r = 0; r < o.runs; ++r) {
        one_raw.push_back(run_config(configs[0], 1).seconds * 1e3);
        one_relay.push_back(run_config(configs[1], 1).seconds * 1e3);
      }
      std::printf(
          "\n  one 16 B message, whole run (start, connect, join, stop), median: raw "
          "%.1f ms, relay %.1f ms\n",
          median(one_raw), median(one_relay));
      rows.push_back({"(reference) cross-host 1-1 tcp, one message, whole run",
                      fmt::format("{:.1f} ms", median(one_raw)),
                      fmt::format("{:.1f} ms", median(one_relay)),
                      ratio(median(one_relay), median(one_raw))});
    }
  }

  // ---- the table, markdown.
  ::alarm(0);
  std::string args = o.quick ? " --quick" : "";
  if (!only.empty()) args += " --only " + only;
  std::printf("\n### relay vs raw ZeroMQ (%s)\n\n", o.quick ? "quick run" : "full run");
  std::printf("machine: %s; commit %s; `bazel run -c opt //bench:bench%s%s`; %.0f s\n\n",
              machine.c_str(), commit.c_str(), args.empty() ? "" : " --", args.c_str(),
              seconds_since(bench_t0));
  std::printf("| figure | raw ZeroMQ | relay | relay/raw | target | result |\n");
  std::printf("| --- | --- | --- | --- | --- | --- |\n");
  int passed = 0, targets = 0;
  for (const Row& row : rows) {
    std::printf("| %s | %s | %s | %s | %s | %s |\n", row.figure.c_str(), row.raw.c_str(),
                row.relay.c_str(), row.ratio.c_str(), row.target.c_str(), row.result.c_str());
    targets += row.targets;
    passed += row.met;
  }
  std::printf(
      "\n%d of %d targets met. MB = 10^6 bytes. Each relay throughput row is measured against\n"
      "raw ZeroMQ of the same shape (its raw column names it; forwarders move each message on\n"
      "unchanged). Speed never fails this program.\n",
      passed, targets);
  if (g_broken) {
    std::printf("A measurement BROKE (see the errors above): exit status 2.\n");
    return 2;
  }
  return 0;
}
