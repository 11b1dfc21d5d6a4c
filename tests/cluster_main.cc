// A driver-or-worker program for cluster_test: the same program is the driver
// (run plainly) and every worker (run with --relay-worker URL, which
// relay::init() strips), so both build the same Relay and agree on actor ids.
//
//   src (1 actor, local) -> work (4 forwarders, on workers) -> sink (local)
//
// The source sends 1..N; each forwarder passes the number on with its pid and
// the value of $CLUSTER_HOST (the test gives each worker its own: hosts made
// with network namespaces share one host name); the sink reports to the
// driver's Handler, which prints "running" at the first item and, after a good
// run:
//   count=<n> sum=<s> forwarders=<distinct forwarder pids> hosts=<h1,h2,...>
// and exits 0. A failed run prints "error: <what>" and exits 1. A worker
// prints "worker done" (exit 0) or "worker error: <what>" (exit 1).
//
// Flags (after relay::init): --listen URL, --broker URL (a relay-broker),
// --workers N (expected),
// --items N, --delay-ms MS (per item, in each forwarder), --key FILE,
// --place spread|label:NAME, --insecure, --join-timeout-ms MS, --fail-at N
// (the forwarder that gets item N throws), --forwarders N (default 4),
// --put-all (the sink also puts every item to the driver's queue; the driver
// prints "puts=<n> put_sum=<s>"), --log-all (forwarders log every item),
// --all-on-workers (src and sink run on workers too), --maxsize N (the
// Relay's, default 100), --extra-queue (one more queue, bounded to 5, alive
// at start()), --ports FIRST-LAST (Relay::ports()).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bazel/cli.h"
#include "relay/relay.h"

namespace {

struct Options {
  std::string listen;
  std::string broker;
  std::string monitor;
  std::size_t workers = 0;
  long long items = 1000;
  int delay_ms = 0;
  std::string key;
  std::string place = "spread";
  bool insecure = false;
  long long join_timeout_ms = 30000;
  long long fail_at = 0;  // a forwarder throws when it gets this item
  int forwarders = 4;
  bool put_all = false;         // the sink puts every item to the driver's queue
  bool log_all = false;         // each forwarder logs every item
  bool all_on_workers = false;  // src and sink too, not only work
  std::size_t maxsize = 100;
  bool extra_queue = false;
  unsigned first_port = 0;  // Relay::ports(), if set
  unsigned last_port = 0;
};

// Parses the flags relay::init() left; returns nullopt and sets `status` for
// --help, --version and bad usage.
std::optional<Options> Parse(int argc, char** argv, int& status) {
  Options o;
  CLI::App app("The driver and workers of cluster_test.", "cluster_main");
  relay::cli::setup(app);
  std::string ports;
  app.add_option("--listen", o.listen)->type_name("URL");
  app.add_option("--broker", o.broker)->type_name("URL");
  app.add_option("--monitor", o.monitor)->type_name("URL");
  app.add_option("--workers", o.workers)->type_name("N");
  app.add_option("--items", o.items)->type_name("N");
  app.add_option("--delay-ms", o.delay_ms)->type_name("MS");
  app.add_option("--key", o.key)->type_name("FILE");
  app.add_option("--place", o.place)->type_name("spread|label:NAME");
  app.add_flag("--insecure", o.insecure);
  app.add_option("--join-timeout-ms", o.join_timeout_ms)->type_name("MS");
  app.add_option("--fail-at", o.fail_at)->type_name("N");
  app.add_option("--forwarders", o.forwarders)->type_name("N");
  app.add_flag("--put-all", o.put_all);
  app.add_flag("--log-all", o.log_all);
  app.add_flag("--all-on-workers", o.all_on_workers);
  app.add_option("--maxsize", o.maxsize)->type_name("N");
  app.add_flag("--extra-queue", o.extra_queue);
  app.add_option("--ports", ports)->type_name("FIRST-LAST");
  status = relay::cli::parse(app, argc, argv, [&] {
    if (!ports.empty()) {
      const auto dash = ports.find('-');
      if (dash == std::string::npos) throw CLI::ValidationError("--ports", "bad range " + ports);
      try {
        o.first_port = static_cast<unsigned>(std::stoul(ports.substr(0, dash)));
        o.last_port = static_cast<unsigned>(std::stoul(ports.substr(dash + 1)));
      } catch (const std::logic_error&) {
        throw CLI::ValidationError("--ports", "bad range " + ports);
      }
    }
    if (o.place != "spread" && o.place.rfind("label:", 0) != 0) {
      throw CLI::ValidationError("--place", "bad place " + o.place);
    }
  });
  if (status >= 0) return std::nullopt;
  return o;
}

class Source : public relay::Actor {
 public:
  explicit Source(long long items) : items_(items) {}
  void loop() override {
    for (long long i = 1; i <= items_; ++i) send(i);
  }

 private:
  long long items_;
};

class Forwarder : public relay::Actor {
 public:
  Forwarder(int delay_ms, long long fail_at, bool log_all)
      : delay_ms_(delay_ms), fail_at_(fail_at), log_all_(log_all) {}
  void startup() override {
    const char* h = std::getenv("CLUSTER_HOST");
    host_ = h ? h : "?";
  }
  void recv(const relay::Message& m) override {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    if (m.get<long long>(0) == fail_at_) {
      throw std::runtime_error("forwarder failed at " + std::to_string(fail_at_));
    }
    send(m.get<long long>(0), static_cast<long long>(::getpid()), host_);
    if (++count_ % 100 == 0) log("forwarded {} on {}", count_, host_);
    if (log_all_) log("item {}", m.get<long long>(0));
  }

 private:
  int delay_ms_;
  long long fail_at_;
  bool log_all_;
  std::string host_;
  long long count_ = 0;
};

// Reports the first item at once (so that the test knows the run is under
// way), each new forwarder once, and the totals at the end.
class Sink : public relay::Actor {
 public:
  Sink(relay::Queue& q, bool put_all) : q_(q), put_all_(put_all) {}
  void recv(const relay::Message& m) override {
    const auto [value, pid, host] = m.as<long long, long long, std::string>();
    if (count_ == 0) q_.put(std::string("first"));
    if (put_all_) q_.put(std::string("item"), value);
    ++count_;
    sum_ += value;
    if (pids_.insert(pid).second) q_.put(std::string("forwarder"), pid, host);
  }
  void shutdown() override {
    log("sink got {}", count_);
    q_.put(std::string("total"), count_, sum_);
  }

 private:
  relay::Queue& q_;
  bool put_all_;
  long long count_ = 0;
  long long sum_ = 0;
  std::set<long long> pids_;
};

class Report : public relay::Handler {
 public:
  void run() override {
    for (;;) {
      const relay::Message m = q.get();
      const auto tag = m.get<std::string>(0);
      if (tag == "first") {
        std::printf("running\n");
        std::fflush(stdout);
      } else if (tag == "item") {
        ++puts;
        put_sum += m.get<long long>(1);
      } else if (tag == "forwarder") {
        pids.insert(m.get<long long>(1));
        hosts.insert(m.get<std::string>(2));
      } else if (tag == "total") {
        count = m.get<long long>(1);
        sum = m.get<long long>(2);
        return;
      }
    }
  }
  long long count = -1;
  long long sum = -1;
  long long puts = 0;
  long long put_sum = 0;
  std::set<long long> pids;
  std::set<std::string> hosts;
};

}  // namespace

int main(int argc, char** argv) {
  relay::init(argc, argv);  // relay's own flags first: the rest are ours
  int status = -1;
  const std::optional<Options> parsed = Parse(argc, argv, status);
  if (!parsed) return status;
  const Options& o = *parsed;
  const bool worker = relay::is_worker();
  try {
    Report report;
    Source source(o.items);
    std::vector<std::unique_ptr<Forwarder>> work;
    for (int i = 0; i < o.forwarders; ++i)
      work.push_back(std::make_unique<Forwarder>(o.delay_ms, o.fail_at, o.log_all));
    Sink sink(report.q, o.put_all);
    std::optional<relay::Queue> extra;
    if (o.extra_queue) extra.emplace(5);

    relay::Relay relay(o.maxsize);
    relay.connect(relay::group("src", source), relay::group("work", work),
                  relay::group("sink", sink));
    relay.place("work", o.place == "spread" ? relay::Placement::workers()
                                            : relay::Placement::label(o.place.substr(6)));
    if (o.all_on_workers) {
      relay.place("src", relay::Placement::workers());
      relay.place("sink", relay::Placement::workers());
    }
    if (o.first_port != 0) relay.ports(o.first_port, o.last_port);
    if (!o.key.empty()) relay.secure(o.key);
    if (o.insecure) relay.allow_insecure_network();
    if (!o.listen.empty()) relay.listen(o.listen);
    if (!o.broker.empty()) relay.broker(o.broker);
    if (!o.monitor.empty()) relay.monitor(o.monitor);
    if (o.workers > 0) {
      relay.expect_workers(o.workers, std::chrono::milliseconds(o.join_timeout_ms));
    }
    relay.start(report);

    // Whichever process ran them, the forwarders' handles have ended.
    std::string ended;
    for (const auto& f : work) {
      ended +=
          f->is_alive() ? "alive," : "exit" + std::to_string(f->exitcode().value_or(-99)) + ",";
    }
    if (worker) {
      std::printf("worker done\n");
      return 0;
    }
    std::printf("forwarder handles: %s\n", ended.c_str());
    std::string hosts;
    for (const auto& h : report.hosts) hosts += (hosts.empty() ? "" : ",") + h;
    std::printf("count=%lld sum=%lld forwarders=%zu hosts=%s\n", report.count, report.sum,
                report.pids.size(), hosts.c_str());
    if (o.put_all) std::printf("puts=%lld put_sum=%lld\n", report.puts, report.put_sum);
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s%s\n", worker ? "worker error: " : "error: ", e.what());
    return 1;
  }
}
