// examples/demo/demo.cc: the seed's demo (ktz's demo/multiprocessing_relay.py)
// in C++, with the public API only.
//
//   producers -> prep -> post -> consumer
//
// Producers make items, "prep" workers attach a checksum, "post" workers format
// a result line, and the consumer writes the lines to a file. Every actor runs
// in its own process. Each actor puts small progress records (stage, count) to
// the Handler's queue; the Handler runs in the main process and draws a
// progress bar and a rate per group, until the consumer puts
// relay::Control::eol.
//
//   bazel run //examples/demo:demo -- --help
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "relay/relay.h"

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
  std::string out = "demo-results.txt";
};

constexpr std::string_view kUsage =
    R"(usage: demo [options]

Runs producers -> prep -> post -> consumer, each actor in its own process, and
shows per-group progress while it runs. The consumer writes one line per item
to the results file; the demo then prints a summary.

options:
  --items N       items to push through the pipeline (default 100000)
  --producers N   producer actors (default 1)
  --prep N        "prep" worker actors (default 2)
  --post N        "post" worker actors (default 2)
  --delay-us N    simulated work per message in each worker, in microseconds
                  (default 0)
  --maxsize N     bound on the messages waiting between two groups
                  (default: none, a window of 4096 messages and 16 MiB
                  per sender/receiver pair)
  --out PATH      results file (default demo-results.txt)
  --fail-at N     the prep worker that gets item N throws: shows how a failed
                  actor stops the run (exit status 1)
  --help          print this and exit

exit status: 0 done, 1 the run failed, 2 bad usage, 130/143 interrupted.
)";

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "demo: %s\n\n%.*s", what.c_str(),
               static_cast<int>(kUsage.size()), kUsage.data());
  std::exit(2);
}

std::uint64_t parse_count(std::string_view flag, std::string_view text,
                          std::uint64_t min) {
  std::uint64_t value = 0;
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min) {
    usage_error(fmt::format("{} wants a whole number >= {}, got '{}'", flag,
                            min, text));
  }
  return value;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fwrite(kUsage.data(), 1, kUsage.size(), stdout);
      std::exit(0);
    }
    // Both "--flag value" and "--flag=value".
    std::string_view flag = arg;
    std::optional<std::string_view> value;
    if (auto eq = arg.find('=');
        arg.starts_with("--") && eq != std::string_view::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    auto next = [&]() -> std::string_view {
      if (value) return *value;
      if (i + 1 >= argc) usage_error(fmt::format("{} needs a value", flag));
      return argv[++i];
    };
    if (flag == "--items") {
      o.items = parse_count(flag, next(), 0);
    } else if (flag == "--producers") {
      o.producers = parse_count(flag, next(), 1);
    } else if (flag == "--prep") {
      o.prep = parse_count(flag, next(), 1);
    } else if (flag == "--post") {
      o.post = parse_count(flag, next(), 1);
    } else if (flag == "--delay-us") {
      o.delay_us = parse_count(flag, next(), 0);
    } else if (flag == "--maxsize") {
      o.maxsize = parse_count(flag, next(), 1);
    } else if (flag == "--fail-at") {
      o.fail_at = parse_count(flag, next(), 0);
    } else if (flag == "--out") {
      o.out = std::string(next());
      if (o.out.empty()) usage_error("--out needs a path");
    } else {
      usage_error(fmt::format("unknown argument '{}'", arg));
    }
  }
  // `bazel run` runs the program in its runfiles; a relative path means the
  // directory it was called from.
  if (const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
      dir && o.out[0] != '/') {
    o.out = std::string(dir) + "/" + o.out;
  }
  constexpr std::uint64_t kMaxActors = 256;
  if (o.producers + o.prep + o.post + 1 > kMaxActors) {
    usage_error(fmt::format("at most {} actors in all, please", kMaxActors));
  }
  return o;
}

// ---- Progress records -------------------------------------------------------

// The groups, in pipeline order. A progress record is [stage, count].
enum Stage : std::uint32_t { kProduce, kPrep, kPost, kConsume, kStages };
constexpr std::array<const char*, kStages> kStageNames = {"producers", "prep",
                                                          "post", "consumer"};

// Counts the messages an actor handled and puts them to the progress queue in
// batches, so that the queue carries one record per kEvery messages.
class ProgressCounter {
 public:
  ProgressCounter(relay::Queue q, Stage stage)
      : q_(std::move(q)), stage_(stage) {}
  void tick() {
    if (++pending_ == kEvery) flush();
  }
  void flush() {
    if (pending_ == 0) return;
    q_.put(static_cast<std::uint32_t>(stage_), pending_);
    pending_ = 0;
  }

 private:
  static constexpr std::uint64_t kEvery = 250;
  relay::Queue q_;
  Stage stage_;
  std::uint64_t pending_ = 0;
};

// Simulated work: sleeps, so that several workers make a difference even on
// few cores.
void work(std::uint64_t delay_us) {
  if (delay_us > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ---- Actors -----------------------------------------------------------------

// Producer k of n makes items k, k+n, k+2n, ... below `items`.
class Producer : public relay::Actor {
 public:
  Producer(relay::Queue progress, std::uint64_t first, std::uint64_t step,
           std::uint64_t items)
      : progress_(std::move(progress), kProduce),
        first_(first),
        step_(step),
        items_(items) {}

  void loop() override {
    for (std::uint64_t i = first_; i < items_; i += step_) {
      send(i, fmt::format("item-{}", i));
      progress_.tick();
    }
  }
  void shutdown() override { progress_.flush(); }

 private:
  ProgressCounter progress_;
  std::uint64_t first_, step_, items_;
};

// Attaches a checksum of the payload.
class Prep : public relay::Actor {
 public:
  Prep(relay::Queue progress, std::uint64_t delay_us,
       std::optional<std::uint64_t> fail_at)
      : progress_(std::move(progress), kPrep),
        delay_us_(delay_us),
        fail_at_(fail_at) {}

  void recv(const relay::Message& m) override {
    auto [i, payload] = m.as<std::uint64_t, std::string>();
    if (fail_at_ && i == *fail_at_) {
      throw std::runtime_error(
          fmt::format("simulated failure at item {} (--fail-at)", i));
    }
    work(delay_us_);
    send(i, payload, fnv1a(payload));
    progress_.tick();
  }
  void shutdown() override { progress_.flush(); }

 private:
  ProgressCounter progress_;
  std::uint64_t delay_us_;
  std::optional<std::uint64_t> fail_at_;
};

// Formats the result line.
class Post : public relay::Actor {
 public:
  Post(relay::Queue progress, std::uint64_t delay_us)
      : progress_(std::move(progress), kPost), delay_us_(delay_us) {}

  void recv(const relay::Message& m) override {
    auto [i, payload, sum] = m.as<std::uint64_t, std::string, std::uint64_t>();
    work(delay_us_);
    send(fmt::format("{} {} {:016x} {}", i, payload, sum, name()));
    progress_.tick();
  }
  void shutdown() override { progress_.flush(); }

 private:
  ProgressCounter progress_;
  std::uint64_t delay_us_;
};

// Writes one line per item to the results file, then tells the handler that
// the stream ended.
class Consumer : public relay::Actor {
 public:
  Consumer(relay::Queue progress, std::string path)
      : q_(progress),
        progress_(std::move(progress), kConsume),
        path_(std::move(path)) {}

  void startup() override {
    file_ = std::fopen(path_.c_str(), "w");
    if (file_ == nullptr) {
      throw std::runtime_error(
          fmt::format("cannot write '{}': {}", path_, std::strerror(errno)));
    }
  }
  void recv(const relay::Message& m) override {
    const std::string line = m.get<std::string>(0);
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fputc('\n', file_);
    progress_.tick();
  }
  void shutdown() override {
    const bool failed = std::ferror(file_) != 0;
    if (std::fclose(file_) != 0 || failed) {
      throw std::runtime_error(
          fmt::format("writing '{}' failed: {}", path_, std::strerror(errno)));
    }
    progress_.flush();
    q_.put(relay::Control::eol);
  }

 private:
  relay::Queue q_;
  ProgressCounter progress_;
  std::string path_;
  std::FILE* file_ = nullptr;
};

// ---- The handler: progress display in the main process ----------------------

std::string human_rate(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.2f}M", per_second / 1e6);
  if (per_second >= 1e4) return fmt::format("{:.1f}k", per_second / 1e3);
  return fmt::format("{:.0f}", per_second);
}

int terminal_width() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

// Draws per-group counts, rates and bars while the actors run: redrawn in
// place on a terminal, one plain line per second otherwise. Returns from run()
// when the consumer puts Control::eol, or when every actor has ended without
// it (the run failed or was interrupted; Relay::start() then says why).
class ProgressDisplay : public relay::Handler {
 public:
  ProgressDisplay(std::uint64_t items, bool tty) : items_(items), tty_(tty) {
    // Bounded, so that an actor's put() returns only once the record is here:
    // the consumer's eol then cannot overtake another actor's last count.
    q = relay::Queue(4096);
  }

  void watch(std::vector<const relay::Actor*> actors) {
    actors_ = std::move(actors);
  }
  const std::array<std::uint64_t, kStages>& counts() const { return counts_; }

  // Counts a record that arrived after run() returned.
  void take(const relay::Message& m) {
    if (!m.is(relay::Control::eol)) count(m);
  }

  void run() override {
    start_ = Clock::now();
    const auto period =
        tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(1000);
    auto next_draw = start_ + period;
    for (;;) {
      std::optional<relay::Message> m = q.get(std::chrono::milliseconds(50));
      if (m && m->is(relay::Control::eol)) {
        finished_ = true;
        break;
      }
      if (m) {
        count(*m);
      } else if (none_alive()) {
        // Every actor has ended: nothing more will come.
        break;
      }
      if (const auto now = Clock::now(); now >= next_draw) {
        draw(now, false);
        next_draw = now + period;
      }
    }
    draw(Clock::now(), true);
  }

 private:
  struct Sample {
    Clock::time_point at;
    std::array<std::uint64_t, kStages> counts;
  };

  void count(const relay::Message& m) {
    auto [stage, n] = m.as<std::uint32_t, std::uint64_t>();
    if (stage < kStages) counts_[stage] += n;
  }

  bool none_alive() const {
    return std::none_of(actors_.begin(), actors_.end(),
                        [](const relay::Actor* a) { return a->is_alive(); });
  }

  // Messages per second of `stage`: over the last second while running, the
  // average over the whole run at the end.
  double rate(std::size_t stage, Clock::time_point now, bool final) const {
    const Sample& from =
        final || samples_.empty() ? Sample{start_, {}} : samples_.front();
    const double dt = std::chrono::duration<double>(now - from.at).count();
    return dt > 0
               ? static_cast<double>(counts_[stage] - from.counts[stage]) / dt
               : 0.0;
  }

  void draw(Clock::time_point now, bool final) {
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    std::string frame;
    if (tty_) {
      const auto width =
          static_cast<std::size_t>(std::max(terminal_width() - 1, 20));
      // Back to the block's top to redraw it. A failure is logged to the same
      // terminal meanwhile, so after one the last block goes below, leaving the
      // log record in view.
      if (drawn_ && (finished_ || !final))
        frame += fmt::format("\x1b[{}A", kStages + 1);
      auto line = [&](std::string text) {
        if (text.size() > width) text.resize(width);
        frame += "\r\x1b[2K" + text + "\n";
      };
      line(fmt::format("relay demo: {} items, {:.1f} s{}", items_, elapsed,
                       final ? (finished_ ? ", done" : ", stopped") : ""));
      for (std::size_t s = 0; s < kStages; ++s) {
        constexpr std::size_t kBar = 30;
        const double done =
            items_ == 0
                ? 1.0
                : std::min(1.0, static_cast<double>(counts_[s]) / items_);
        const auto full = static_cast<std::size_t>(done * kBar);
        line(fmt::format("  {:<9} [{}{}] {:>{}}/{} {:5.1f}% {:>8} msg/s",
                         kStageNames[s], std::string(full, '#'),
                         std::string(kBar - full, '.'), counts_[s],
                         fmt::formatted_size("{}", items_), items_,
                         100.0 * done, human_rate(rate(s, now, final))));
      }
      drawn_ = true;
    } else {
      frame = fmt::format("[{:6.1f}s]", elapsed);
      for (std::size_t s = 0; s < kStages; ++s) {
        frame +=
            fmt::format("{} {} {}/{} ({} msg/s)", s ? ";" : "", kStageNames[s],
                        counts_[s], items_, human_rate(rate(s, now, final)));
      }
      frame += final ? (finished_ ? " done\n" : " stopped\n") : "\n";
    }
    std::fwrite(frame.data(), 1, frame.size(), stdout);
    std::fflush(stdout);
    // Keep about a second of history for the rates.
    samples_.push_back({now, counts_});
    while (samples_.size() > 1 &&
           now - samples_[1].at >= std::chrono::seconds(1)) {
      samples_.pop_front();
    }
  }

  std::uint64_t items_;
  bool tty_;
  std::vector<const relay::Actor*> actors_;
  std::array<std::uint64_t, kStages> counts_{};
  std::deque<Sample> samples_;
  Clock::time_point start_ = Clock::now();
  bool drawn_ = false;
  bool finished_ = false;
};

// Returns how many lines `path` holds.
std::uint64_t count_lines(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    throw std::runtime_error(fmt::format("cannot read '{}'", path));
  std::uint64_t lines = 0;
  char buffer[1 << 16];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, f)) {
    lines += static_cast<std::uint64_t>(std::count(buffer, buffer + n, '\n'));
  }
  std::fclose(f);
  return lines;
}

template <class T>
void add_to(std::vector<const relay::Actor*>& all,
            const std::vector<std::unique_ptr<T>>& group) {
  for (const auto& a : group) all.push_back(a.get());
}

int run(const Options& o) {
  // Fail on a bad path here, in the main process, rather than in the consumer.
  if (std::FILE* f = std::fopen(o.out.c_str(), "w")) {
    std::fclose(f);
  } else {
    std::fprintf(stderr, "demo: cannot write '%s': %s\n", o.out.c_str(),
                 std::strerror(errno));
    return 1;
  }

  // The handler first: the actors get (copies of) its queue.
  ProgressDisplay display(o.items, ::isatty(STDOUT_FILENO) == 1);
  std::vector<std::unique_ptr<Producer>> producers;
  for (std::uint64_t k = 0; k < o.producers; ++k) {
    producers.push_back(
        std::make_unique<Producer>(display.q, k, o.producers, o.items));
  }
  std::vector<std::unique_ptr<Prep>> prep;
  for (std::uint64_t k = 0; k < o.prep; ++k) {
    prep.push_back(std::make_unique<Prep>(display.q, o.delay_us, o.fail_at));
  }
  std::vector<std::unique_ptr<Post>> post;
  for (std::uint64_t k = 0; k < o.post; ++k) {
    post.push_back(std::make_unique<Post>(display.q, o.delay_us));
  }
  Consumer consumer(display.q, o.out);

  std::vector<const relay::Actor*> all;
  add_to(all, producers);
  add_to(all, prep);
  add_to(all, post);
  all.push_back(&consumer);
  display.watch(all);

  relay::Relay relay(o.maxsize, "demo");
  relay.connect(relay::group("producers", producers),
                relay::group("prep", prep), relay::group("post", post),
                relay::group("consumer", consumer));

  const auto t0 = Clock::now();
  // Forks every actor; returns when all have ended cleanly, else throws.
  relay.start(display);
  const double seconds =
      std::chrono::duration<double>(Clock::now() - t0).count();

  // What actors put is all there once start() returned; with the bounded queue
  // nothing is expected after eol, but count it if there is.
  while (auto m = display.q.get_nowait()) display.take(*m);

  const std::uint64_t lines = count_lines(o.out);
  fmt::print(
      "demo: {} items in {:.2f} s, {} msg/s (actors: {} producers, {} prep, {} "
      "post, 1 consumer)\n"
      "demo: {} lines in {}\n",
      o.items, seconds,
      human_rate(seconds > 0 ? static_cast<double>(o.items) / seconds : 0.0),
      o.producers, o.prep, o.post, lines, o.out);
  if (lines != o.items || display.counts()[kConsume] != o.items) {
    std::fprintf(stderr,
                 "demo: expected %llu results, the file has %llu lines\n",
                 static_cast<unsigned long long>(o.items),
                 static_cast<unsigned long long>(lines));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_args(argc, argv);
  try {
    return run(options);
  } catch (const relay::Interrupted&) {
    // Uncaught, it ends the process as the signal would (exit status 130/143).
    throw;
  } catch (const relay::Error& e) {
    std::fprintf(stderr, "demo: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo: %s\n", e.what());
    return 1;
  }
}
