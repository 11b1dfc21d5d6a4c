// examples/demo/demo.cc: the seed's demo (ktz's demo/multiprocessing_relay.py)
// in C++, with the public API only.
//
//   producers -> prep -> post -> consumer
//
// Producers make items, "prep" workers attach a checksum, "post" workers format
// a result line, and the consumer writes the lines to a file, one per item in
// item order. Every actor runs in its own process. relay::Progress, a Handler
// in the main process, draws each group's count, rate and bar from the
// counters the actors report to the driver: the actors themselves do nothing
// for it.
//
// --crash-every N makes a prep worker abort on every Nth item, the first time
// it sees it; with --restart (Relay::restart()) the worker is started again
// and what it had not finished is delivered again. Delivery stays exactly
// once: what the worker had sent on before it died is not sent again by its
// successor (README "Supervision"). The consumer still keeps one result per
// item id and counts the duplicates it dropped (0 expected), so the results
// file is the same as a run without crashes also where delivery is only at
// least once.
//
//   bazel run //examples/demo:demo -- --help
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bazel/cli.h"
#include "relay/relay.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// ---- Command line -----------------------------------------------------------

struct Options {
  std::uint64_t items = 100000;
  std::uint64_t producers = 1;
  std::uint64_t prep = 2;
  std::uint64_t post = 2;
  std::uint64_t delay_us = 0;
  std::optional<std::size_t> maxsize;
  std::optional<std::uint64_t> fail_at;
  std::uint64_t crash_every = 0;  // 0: no crashes
  bool restart = false;
  std::string out = "demo-results.txt";
  std::string monitor;    // --monitor tcp://ADDRESS:PORT
  std::string dashboard;  // --dashboard ADDRESS:PORT
  double linger = 10;     // seconds the dashboard stays up after the end
};

// Parses the command line; returns nullopt and sets `status` after --help,
// --version or bad usage.
std::optional<Options> parse_args(int argc, char** argv, int& status) {
  CLI::App app(
      "Runs producers -> prep -> post -> consumer, each actor in its own process, and\n"
      "shows per-group progress while it runs. The consumer writes one line per item\n"
      "to the results file; the demo then prints a summary.",
      "demo");
  relay::cli::setup(app);
  Options o;
  std::uint64_t maxsize = 0;
  std::uint64_t fail_at = 0;
  app.add_option("--items", o.items, "Items to push through the pipeline (default 100000)")
      ->type_name("N");
  app.add_option("--producers", o.producers, "Producer actors (default 1)")->type_name("N");
  app.add_option("--prep", o.prep, "\"prep\" worker actors (default 2)")->type_name("N");
  app.add_option("--post", o.post, "\"post\" worker actors (default 2)")->type_name("N");
  app.add_option("--delay-us", o.delay_us,
                 "Simulated work per message in each worker, in microseconds\n(default 0)")
      ->type_name("N");
  app.add_option("--maxsize", maxsize,
                 "Bound on the messages waiting between two groups (default:\n"
                 "none, a window of 4096 messages and 16 MiB per\n"
                 "sender/receiver pair)")
      ->type_name("N");
  app.add_option("--out", o.out, "Results file (default demo-results.txt)")->type_name("PATH");
  app.add_option("--fail-at", fail_at,
                 "The prep worker that gets item N throws: shows how a failed\n"
                 "actor stops the run (exit status 1)")
      ->type_name("N");
  app.add_option("--crash-every", o.crash_every,
                 "A prep worker calls std::abort() on items N-1, 2N-1, ... (every\n"
                 "Nth item), the first time it sees each only. Without --restart\n"
                 "the run fails (exit status 1)")
      ->type_name("N");
  app.add_flag("--restart", o.restart,
               "Supervise the prep group (Relay::restart()): a failed worker is\n"
               "started again and gets again what it had not finished; what it\n"
               "had delivered is not sent again (exactly once downstream). The\n"
               "consumer still keeps one result per item id and the summary\n"
               "says how many duplicates it dropped (0 expected)");
  app.add_option("--monitor", o.monitor,
                 "Publish logs and counters at tcp://ADDRESS:PORT for relay-monitor\n"
                 "(Relay::monitor())")
      ->type_name("ENDPOINT");
  app.add_option("--dashboard", o.dashboard,
                 "Start relay-monitor --http ADDRESS:PORT beside the run: a live page\n"
                 "at http://ADDRESS:PORT/ (with --monitor's endpoint, else one of\n"
                 "its own on 127.0.0.1)")
      ->type_name("ADDRESS:PORT");
  app.add_option("--linger", o.linger,
                 "With --dashboard: how long the page stays up after the end, in\n"
                 "seconds (default 10)")
      ->type_name("SEC");
  app.footer("Exit status: 0 done, 1 the run failed, 2 bad usage, 130/143 interrupted.");
  constexpr std::uint64_t kMaxActors = 256;
  status = relay::cli::parse(app, argc, argv, [&] {
    for (const auto& [flag, n] : {std::pair<const char*, std::uint64_t>{"--producers", o.producers},
                                  {"--prep", o.prep},
                                  {"--post", o.post}}) {
      if (n < 1) throw CLI::ValidationError(flag, "wants a whole number >= 1");
    }
    if (app.count("--maxsize") && maxsize < 1) {
      throw CLI::ValidationError("--maxsize", "wants a whole number >= 1");
    }
    if (app.count("--crash-every") && o.crash_every < 1) {
      throw CLI::ValidationError("--crash-every", "wants a whole number >= 1");
    }
    if (o.out.empty()) throw CLI::ValidationError("--out", "needs a path");
    if (o.linger < 0) throw CLI::ValidationError("--linger", "wants seconds >= 0");
    if (!o.dashboard.empty() && o.dashboard.find(':') == std::string::npos) {
      throw CLI::ValidationError("--dashboard", "'" + o.dashboard + "' is not ADDRESS:PORT");
    }
    if (o.producers + o.prep + o.post + 1 > kMaxActors) {
      throw CLI::ValidationError(fmt::format("at most {} actors in all, please", kMaxActors));
    }
  });
  if (status >= 0) return std::nullopt;
  if (app.count("--maxsize")) o.maxsize = maxsize;
  if (app.count("--fail-at")) o.fail_at = fail_at;
  // `bazel run` runs the program in its runfiles; a relative path means the
  // directory it was called from.
  if (const char* dir = std::getenv("BUILD_WORKING_DIRECTORY"); dir && o.out[0] != '/') {
    o.out = std::string(dir) + "/" + o.out;
  }
  return o;
}

// The relay-monitor program: $RELAY_MONITOR, else beside this one as Bazel
// lays them out (runfiles, or bazel-bin/examples/demo/../../broker), else
// on PATH.
std::string monitor_program() {
  if (const char* env = std::getenv("RELAY_MONITOR"); env && *env) return env;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    const std::string exe(self, static_cast<std::size_t>(n));
    const std::string dir = exe.substr(0, exe.rfind('/'));
    for (const std::string& candidate :
         {exe + ".runfiles/relay/broker/relay-monitor", dir + "/../../broker/relay-monitor"}) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return "relay-monitor";
}

// --dashboard: relay-monitor --http as a child process (the Relay allows no
// other thread in this process at start(), and a child's crash cannot take
// the run with it). Started from the handler, once the monitor endpoint is
// bound; killed and reaped on destruction.
class Dashboard {
 public:
  Dashboard(std::string address, double linger) : address_(std::move(address)), linger_(linger) {}
  ~Dashboard() { stop(std::chrono::milliseconds(0)); }
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  void start(const std::string& endpoint) {
    const std::string program = monitor_program();
    const std::string linger = fmt::format("{}", linger_);
    // Its text output would tear the progress drawing: only its errors show.
    std::vector<std::string> args{program,    "--http",   address_, "--no-stats", "--level",
                                  "critical", "--linger", linger,   endpoint};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    const int rc = ::posix_spawnp(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      std::fprintf(stderr, "demo: cannot start %s: %s\n", program.c_str(), std::strerror(rc));
      return;
    }
    std::fprintf(stderr, "demo: dashboard at http://%s/ (relay-monitor, pid %d)\n",
                 address_.c_str(), static_cast<int>(pid_));
  }

  // Waits at most `wait` for it to end by itself (it lingers, then exits),
  // then kills it; reaps it either way.
  void stop(std::chrono::milliseconds wait) {
    if (pid_ <= 0) return;
    const auto until = std::chrono::steady_clock::now() + wait;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pid_ = -1;
  }

  double linger() const { return linger_; }

 private:
  std::string address_;
  double linger_;
  pid_t pid_ = -1;
};

// relay::Progress that first starts the dashboard (the monitor endpoint is
// known once the run has started).
class ProgressWithDashboard : public relay::Progress {
 public:
  ProgressWithDashboard(relay::Relay& relay, Dashboard* dashboard)
      : relay_(relay), dashboard_(dashboard) {}
  void run() override {
    if (dashboard_) dashboard_->start(relay_.monitor_endpoint());
    relay::Progress::run();
  }

 private:
  relay::Relay& relay_;
  Dashboard* dashboard_;
};

// Simulated work: sleeps, so that several workers make a difference even on
// few cores.
void work(std::uint64_t delay_us) {
  if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Memory shared by this process and every actor process, restarted ones
// included: it is mapped before start() forks them (and the process that forks
// restarted actors), MAP_SHARED so that their writes are seen by all. It holds
// which crash items have already crashed (so that the restarted worker does
// not crash again on the item delivered again), and the counts the summary
// prints.
class Shared {
 public:
  explicit Shared(std::uint64_t crash_slots) : slots_(crash_slots) {
    size_ = sizeof(Header) + crash_slots;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw std::runtime_error(fmt::format("cannot map shared memory: {}", std::strerror(errno)));
    }
    base_ = static_cast<std::byte*>(p);  // zero-filled
    new (base_) Header();
    for (std::uint64_t k = 0; k < slots_; ++k) new (base_ + sizeof(Header) + k) Flag(0);
  }
  ~Shared() { ::munmap(base_, size_); }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  // Prep aborts (--crash-every), items a prep worker saw again
  // (Message::redelivered()), results the consumer dropped as duplicates.
  std::atomic<std::uint64_t>& crashes() { return header().crashes; }
  std::atomic<std::uint64_t>& redelivered() { return header().redelivered; }
  std::atomic<std::uint64_t>& duplicates() { return header().duplicates; }
  // Sets crash item `slot`'s flag; returns whether it was clear (the first
  // time the item is seen).
  bool first_time(std::uint64_t slot) {
    if (slot >= slots_) return false;
    return reinterpret_cast<Flag*>(base_ + sizeof(Header))[slot].exchange(1) == 0;
  }

 private:
  using Flag = std::atomic<std::uint8_t>;
  struct Header {
    std::atomic<std::uint64_t> crashes{0};
    std::atomic<std::uint64_t> redelivered{0};
    std::atomic<std::uint64_t> duplicates{0};
  };
  // Other processes see them through the page: no locks hidden in a process.
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free && Flag::is_always_lock_free);
  Header& header() { return *reinterpret_cast<Header*>(base_); }

  std::uint64_t slots_;
  std::size_t size_ = 0;
  std::byte* base_ = nullptr;
};

// ---- Actors -----------------------------------------------------------------

// Producer k of n makes items k, k+n, k+2n, ... below `items`.
class Producer : public relay::Actor {
 public:
  Producer(std::uint64_t first, std::uint64_t step, std::uint64_t items)
      : first_(first), step_(step), items_(items) {}

  void loop() override {
    for (std::uint64_t i = first_; i < items_; i += step_) {
      send(i, fmt::format("item-{}", i));
    }
  }

 private:
  std::uint64_t first_, step_, items_;
};

// Attaches a checksum of the payload. With --crash-every N it aborts on item
// N-1, 2N-1, ..., the first time any prep process sees it: the restarted
// worker gets that item again, with the others the dead one had taken. Those
// it had already sent on are not sent again: each reaches the consumer once.
class Prep : public relay::Actor {
 public:
  Prep(std::uint64_t delay_us, std::optional<std::uint64_t> fail_at, std::uint64_t crash_every,
       Shared& shared)
      : delay_us_(delay_us), fail_at_(fail_at), crash_every_(crash_every), shared_(shared) {}

  void recv(const relay::Message& m) override {
    auto [i, payload] = m.as<std::uint64_t, std::string>();
    if (m.redelivered()) shared_.redelivered().fetch_add(1);
    if (fail_at_ && i == *fail_at_) {
      throw std::runtime_error(fmt::format("simulated failure at item {} (--fail-at)", i));
    }
    if (crash_every_ > 0 && i % crash_every_ == crash_every_ - 1 &&
        shared_.first_time(i / crash_every_)) {
      shared_.crashes().fetch_add(1);
      std::abort();  // --crash-every
    }
    work(delay_us_);
    send(i, payload, fnv1a(payload));
  }

 private:
  std::uint64_t delay_us_;
  std::optional<std::uint64_t> fail_at_;
  std::uint64_t crash_every_;
  Shared& shared_;
};

// Formats the result line, sent with its item id. The line is the same
// whichever worker made it, so that two runs' results files can be compared.
class Post : public relay::Actor {
 public:
  explicit Post(std::uint64_t delay_us) : delay_us_(delay_us) {}

  void recv(const relay::Message& m) override {
    auto [i, payload, sum] = m.as<std::uint64_t, std::string, std::uint64_t>();
    work(delay_us_);
    send(i, fmt::format("{} {} {:016x}", i, payload, sum));
  }

 private:
  std::uint64_t delay_us_;
};

// Keeps one result line per item id, and writes them to the results file in
// item order at the end: should a result arrive twice (delivery is exactly
// once for deterministic actors, README "Supervision"), the second is dropped
// and counted.
// The file is then the same whatever crashed, and whichever order the results
// came in. (It holds the lines in memory until the end: about 80 bytes an
// item.)
class Consumer : public relay::Actor {
 public:
  Consumer(std::string path, std::uint64_t items, Shared& shared)
      : path_(std::move(path)), items_(items), shared_(shared) {}

  void startup() override {
    file_ = std::fopen(path_.c_str(), "w");
    if (file_ == nullptr) {
      throw std::runtime_error(fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
    }
    lines_.assign(items_, std::string());
    have_.assign(items_, false);
  }
  void recv(const relay::Message& m) override {
    auto [i, line] = m.as<std::uint64_t, std::string>();
    if (i >= items_) throw std::runtime_error(fmt::format("item {} out of range", i));
    if (have_[i]) {
      // The same item again, from a restarted worker: the same line.
      if (line != lines_[i]) {
        throw std::runtime_error(fmt::format("item {} came twice, different: '{}' and '{}'", i,
                                             lines_[i], line));
      }
      shared_.duplicates().fetch_add(1);
      return;
    }
    have_[i] = true;
    lines_[i] = std::move(line);
  }
  void shutdown() override {
    for (std::uint64_t i = 0; i < items_; ++i) {
      if (!have_[i]) continue;  // the main process counts the lines
      std::fwrite(lines_[i].data(), 1, lines_[i].size(), file_);
      std::fputc('\n', file_);
    }
    const bool failed = std::ferror(file_) != 0;
    if (std::fclose(file_) != 0 || failed) {
      throw std::runtime_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(errno)));
    }
  }

 private:
  std::string path_;
  std::uint64_t items_;
  Shared& shared_;
  std::FILE* file_ = nullptr;
  std::vector<std::string> lines_;  // by item id
  std::vector<bool> have_;
};

std::string human_rate(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.2f}M", per_second / 1e6);
  if (per_second >= 1e4) return fmt::format("{:.1f}k", per_second / 1e3);
  return fmt::format("{:.0f}", per_second);
}

// Returns how many lines `path` holds.
std::uint64_t count_lines(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error(fmt::format("cannot read '{}'", path));
  std::uint64_t lines = 0;
  char buffer[1 << 16];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, f)) {
    lines += static_cast<std::uint64_t>(std::count(buffer, buffer + n, '\n'));
  }
  std::fclose(f);
  return lines;
}

int run(const Options& o) {
  // Fail on a bad path here, in the main process, rather than in the consumer.
  if (std::FILE* f = std::fopen(o.out.c_str(), "w")) {
    std::fclose(f);
  } else {
    std::fprintf(stderr, "demo: cannot write '%s': %s\n", o.out.c_str(), std::strerror(errno));
    return 1;
  }

  std::vector<std::unique_ptr<Producer>> producers;
  for (std::uint64_t k = 0; k < o.producers; ++k) {
    producers.push_back(std::make_unique<Producer>(k, o.producers, o.items));
  }
  // One flag per crash item (--crash-every), and the summary's counts.
  Shared shared(o.crash_every > 0 ? o.items / o.crash_every + 1 : 0);
  const std::uint64_t crash_items = o.crash_every > 0 ? o.items / o.crash_every : 0;

  std::vector<std::unique_ptr<Prep>> prep;
  for (std::uint64_t k = 0; k < o.prep; ++k) {
    prep.push_back(std::make_unique<Prep>(o.delay_us, o.fail_at, o.crash_every, shared));
  }
  std::vector<std::unique_ptr<Post>> post;
  for (std::uint64_t k = 0; k < o.post; ++k) {
    post.push_back(std::make_unique<Post>(o.delay_us));
  }
  Consumer consumer(o.out, o.items, shared);

  relay::Relay relay(o.maxsize, "demo");
  relay.connect(relay::group("producers", producers), relay::group("prep", prep),
                relay::group("post", post), relay::group("consumer", consumer));
  if (o.restart) {
    // Room for every crash asked for, and a few more, within a minute.
    relay.restart("prep", relay::Restart{.max_restarts = std::max<std::size_t>(
                                              3, static_cast<std::size_t>(crash_items) + 3),
                                          .within = std::chrono::seconds(60)});
  }
  std::optional<Dashboard> dashboard;
  if (!o.dashboard.empty()) dashboard.emplace(o.dashboard, o.linger);
  if (!o.monitor.empty()) {
    relay.monitor(o.monitor);
  } else if (dashboard) {
    relay.monitor("tcp://127.0.0.1:*");
  }

  // Every group handles every item once: that is each bar's end.
  ProgressWithDashboard progress(relay, dashboard ? &*dashboard : nullptr);
  progress.title(fmt::format("relay demo ({} items)", o.items));
  for (const char* g : {"producers", "prep", "post", "consumer"}) progress.total(g, o.items);

  const auto t0 = Clock::now();
  // Forks every actor; returns when all have ended cleanly, else throws.
  relay.start(progress);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  const std::uint64_t lines = count_lines(o.out);
  fmt::print(
      "demo: {} items in {:.2f} s, {} msg/s (actors: {} producers, {} prep, {} "
      "post, 1 consumer)\n"
      "demo: {} lines in {}\n",
      o.items, seconds, human_rate(seconds > 0 ? static_cast<double>(o.items) / seconds : 0.0),
      o.producers, o.prep, o.post, lines, o.out);
  if (dashboard) {
    std::fflush(stdout);
    std::fprintf(stderr, "demo: the dashboard shows the end for %g s more\n", dashboard->linger());
    dashboard->stop(
        std::chrono::milliseconds(static_cast<long long>(dashboard->linger() * 1000) + 2000));
  }
  const std::uint64_t duplicates = shared.duplicates().load();
  if (o.restart || o.crash_every > 0) {
    std::uint64_t restarts = 0;
    for (const relay::GroupStats& g : progress.last()) {
      if (g.name == "prep") restarts = g.restarts;
    }
    fmt::print(
        "demo: {} prep crashes, {} restarts, {} items delivered again to prep, {} duplicate "
        "results dropped\n",
        shared.crashes().load(), restarts, shared.redelivered().load(), duplicates);
  }
  // The consumer received every item once, plus the duplicates it dropped.
  const std::uint64_t consumed = progress.last().empty() ? 0 : progress.last().back().received;
  if (lines != o.items || consumed != o.items + duplicates) {
    std::fprintf(stderr,
                 "demo: expected %llu results, the file has %llu lines (the consumer received "
                 "%llu, %llu of them duplicates)\n",
                 static_cast<unsigned long long>(o.items), static_cast<unsigned long long>(lines),
                 static_cast<unsigned long long>(consumed),
                 static_cast<unsigned long long>(duplicates));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int status = -1;
  const std::optional<Options> options = parse_args(argc, argv, status);
  if (!options) return status;
  try {
    return run(*options);
  } catch (const relay::Interrupted&) {
    // Uncaught, it ends the process as the signal would (exit status 130/143).
    throw;
  } catch (const relay::Error& e) {
    std::fprintf(stderr, "demo: %s\n", e.what());
    if (options->crash_every > 0 && !options->restart) {
      std::fprintf(stderr,
                   "demo: --crash-every without --restart: a crashed prep worker stops the run\n");
    }
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo: %s\n", e.what());
    return 1;
  }
}
