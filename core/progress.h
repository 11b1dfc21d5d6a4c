// relay/progress.h: per-group counters of the running relay, and Progress, a
// Handler that draws them.
//
//   relay::Progress progress;      // draws to std::cout
//   progress.total("work", 1000);  // optional: the bar's end for group "work"
//   relay.start(progress);
//
// Progress shows, per group, how many messages its actors handled (received;
// sent, for a source group), the rate, with a total a bar, and how often the
// group's actors were restarted once that happened (Relay::restart()). On a terminal
// it redraws that block in place about 10 times a second; otherwise (a file, a
// pipe, a std::ostringstream) it writes one plain line per second. Either way
// it ends with one last drawing of the run's exact counts, marked "done" or
// "stopped". It needs no actor's help: the counts are the ones the actors
// report to the driver (see group_stats()), so actors need not be given its
// queue `q`, and anything put to `q` is dropped.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "relay/handler.h"

namespace relay {

// One group's counters, as the driver last heard them.
struct GroupStats {
  std::string name;
  bool receiver = false;       // whether the group has an inbox (not a source)
  std::size_t actors = 0;      // actors in the group
  std::size_t ended = 0;       // of those, the ones whose process has ended
  std::size_t failed = 0;      // of those, the ones that failed or were stopped
  std::uint64_t sent = 0;      // messages the group's actors sent
  std::uint64_t received = 0;  // messages they received
  std::uint64_t waiting = 0;   // messages sent to them, not yet taken
  std::uint64_t restarts = 0;  // times its actors were started again (Relay::restart())
};

// Returns the counters of the relay running in this process, one entry per
// group in the order connect() defined them. Safe from any thread: a
// Handler's run() calls it while start() runs. The driver refreshes them
// about every 250 ms from what the actors report (each about every 500 ms),
// and once more when the run is over, before a Handler waiting on its queue
// learns that (relay::Closed): from then on, until the next run, they are the
// run's final counts, exact for every actor that ended its stream. Empty
// before the first run, in a worker process, and for a run through a
// standalone relay-broker (Relay::broker()), whose counters only relay-monitor
// sees.
std::vector<GroupStats> group_stats();

// A Handler that draws group_stats() while the run goes on (see the top of
// this file). Its run() returns when the run is over; it does not throw.
class Progress : public Handler {
 public:
  // Draws to std::cout.
  Progress();
  // Draws to `out`, which must outlive the run. Redraws in place only if
  // `out` is std::cout or std::cerr and that is a terminal.
  explicit Progress(std::ostream& out);

  // Sets how many messages group `group` is to handle (receive; send, for a
  // source group): its bar and percentage. Returns *this.
  Progress& total(const std::string& group, std::uint64_t n);
  // Names the drawing in its first line (default "relay"). Returns *this.
  Progress& title(std::string title);
  // Sets how often it draws: default 100 ms on a terminal, 1 s otherwise.
  // Returns *this.
  Progress& period(std::chrono::milliseconds period);

  // The counters as last drawn: after start() has returned, the final ones.
  const std::vector<GroupStats>& last() const noexcept { return last_; }

  void run() override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Sample {
    Clock::time_point at;
    std::vector<std::uint64_t> handled;
  };

  void draw(Clock::time_point now, bool final);
  std::string plain(Clock::time_point now, bool final) const;
  std::string block(Clock::time_point now, bool final);
  double rate(std::size_t group, Clock::time_point now, bool final) const;

  std::ostream& out_;
  bool tty_ = false;
  int fd_ = -1;  // the terminal's, for its width
  std::string title_ = "relay";
  std::map<std::string, std::uint64_t> totals_;
  std::chrono::milliseconds period_{0};
  std::vector<GroupStats> last_;
  std::vector<Sample> samples_;  // about the last second, for the rates
  Clock::time_point start_;
  std::size_t drawn_lines_ = 0;  // lines of the block on the terminal now
};

}  // namespace relay
