#include "relay/progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <utility>

#include "relay/errors.h"
#include "relay/message.h"

namespace relay {

namespace {

std::string human_rate(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.2f}M", per_second / 1e6);
  if (per_second >= 1e4) return fmt::format("{:.1f}k", per_second / 1e3);
  return fmt::format("{:.0f}", per_second);
}

// What a group's bar counts: messages received, or sent for a source.
std::uint64_t handled(const GroupStats& g) { return g.receiver ? g.received : g.sent; }

// ", 2 restarts" once a group's actors were restarted, else nothing.
std::string restarts_text(const GroupStats& g) {
  if (g.restarts == 0) return {};
  return fmt::format(", {} restart{}", g.restarts, g.restarts == 1 ? "" : "s");
}

bool any_failed(const std::vector<GroupStats>& groups) {
  return std::any_of(groups.begin(), groups.end(),
                     [](const GroupStats& g) { return g.failed > 0; });
}

}  // namespace

Progress::Progress() : Progress(std::cout) {}

Progress::Progress(std::ostream& out) : out_(out) {
  if (&out == &std::cout) fd_ = STDOUT_FILENO;
  if (&out == &std::cerr) fd_ = STDERR_FILENO;
  tty_ = fd_ >= 0 && ::isatty(fd_) == 1;
}

Progress& Progress::total(const std::string& group, std::uint64_t n) {
  totals_[group] = n;
  return *this;
}

Progress& Progress::title(std::string title) {
  title_ = std::move(title);
  return *this;
}

Progress& Progress::period(std::chrono::milliseconds period) {
  period_ = period;
  return *this;
}

void Progress::run() {
  start_ = Clock::now();
  samples_.clear();
  drawn_lines_ = 0;
  const std::chrono::milliseconds period =
      period_.count() > 0 ? period_ : std::chrono::milliseconds(tty_ ? 100 : 1000);
  auto next_draw = start_ + period;
  try {
    // The queue only paces the loop: get() throws Closed once the run is over
    // and the driver has published the final counts (see group_stats()).
    for (;;) {
      const auto now = Clock::now();
      const auto wait = next_draw > now
                            ? std::chrono::duration_cast<std::chrono::milliseconds>(next_draw - now)
                            : std::chrono::milliseconds(0);
      (void)q.get(std::min(wait, std::chrono::milliseconds(50)));
      if (const auto t = Clock::now(); t >= next_draw) {
        draw(t, false);
        next_draw = t + period;
      }
    }
  } catch (const Closed&) {
  }
  draw(Clock::now(), true);
}

double Progress::rate(std::size_t group, Clock::time_point now, bool final) const {
  // Over about the last second while running; over the whole run at the end.
  Clock::time_point from = start_;
  std::uint64_t base = 0;
  if (!final && !samples_.empty() && group < samples_.front().handled.size()) {
    from = samples_.front().at;
    base = samples_.front().handled[group];
  }
  const double dt = std::chrono::duration<double>(now - from).count();
  const std::uint64_t n = handled(last_[group]);
  return dt > 0 && n >= base ? static_cast<double>(n - base) / dt : 0.0;
}

std::string Progress::plain(Clock::time_point now, bool final) const {
  std::string line = fmt::format("[{:6.1f}s]", std::chrono::duration<double>(now - start_).count());
  for (std::size_t g = 0; g < last_.size(); ++g) {
    const GroupStats& s = last_[g];
    const auto total = totals_.find(s.name);
    line += fmt::format("{} {} {}", g ? ";" : "", s.name, handled(s));
    if (total != totals_.end()) line += fmt::format("/{}", total->second);
    line += fmt::format(" ({} msg/s{})", human_rate(rate(g, now, final)), restarts_text(s));
  }
  if (last_.empty()) line += " no counters";
  if (final) line += any_failed(last_) ? " stopped" : " done";
  return line + "\n";
}

std::string Progress::block(Clock::time_point now, bool final) {
  int width = 80;
  winsize ws{};
  if (::ioctl(fd_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) width = ws.ws_col;
  const auto max = static_cast<std::size_t>(std::max(width - 1, 20));
  std::string frame;
  // Back to the block's top to draw it again. After a failure the driver logs
  // to the same terminal, so the last block goes below, leaving that in view.
  const bool failed = any_failed(last_);
  if (drawn_lines_ > 0 && !(final && failed)) frame += fmt::format("\x1b[{}A", drawn_lines_);
  std::size_t lines = 0;
  auto line = [&](std::string text) {
    if (text.size() > max) text.resize(max);
    frame += "\r\x1b[2K" + text + "\n";
    ++lines;
  };
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  line(fmt::format("{}: {:.1f} s{}", title_, elapsed,
                   final ? (failed ? ", stopped" : ", done") : ""));
  std::size_t name_width = 0;
  for (const GroupStats& s : last_) name_width = std::max(name_width, s.name.size());
  for (std::size_t g = 0; g < last_.size(); ++g) {
    const GroupStats& s = last_[g];
    const std::uint64_t n = handled(s);
    const std::string rate_text = human_rate(rate(g, now, final));
    if (const auto total = totals_.find(s.name); total != totals_.end()) {
      constexpr std::size_t kBar = 30;
      const double done =
          total->second == 0
              ? 1.0
              : std::min(1.0, static_cast<double>(n) / static_cast<double>(total->second));
      const auto full = static_cast<std::size_t>(done * kBar);
      line(fmt::format("  {:<{}} [{}{}] {:>{}}/{} {:5.1f}% {:>8} msg/s{}", s.name, name_width,
                       std::string(full, '#'), std::string(kBar - full, '.'), n,
                       fmt::formatted_size("{}", total->second), total->second, 100.0 * done,
                       rate_text, restarts_text(s)));
    } else {
      line(fmt::format("  {:<{}} {:>12} {:>8} msg/s  waiting {}  actors {}/{} ended{}", s.name,
                       name_width, n, rate_text, s.waiting, s.ended, s.actors, restarts_text(s)));
    }
  }
  drawn_lines_ = lines;
  return frame;
}

void Progress::draw(Clock::time_point now, bool final) {
  last_ = group_stats();
  const std::string text = tty_ ? block(now, final) : plain(now, final);
  out_ << text << std::flush;
  std::vector<std::uint64_t> counts;
  for (const GroupStats& s : last_) counts.push_back(handled(s));
  samples_.push_back({now, std::move(counts)});
  while (samples_.size() > 1 && now - samples_[1].at >= std::chrono::seconds(1)) {
    samples_.erase(samples_.begin());
  }
}

}  // namespace relay
