// A driver-or-worker program for supervision_cluster_test: a supervised
// group on worker hosts that can be lost. The same program is the driver (run
// plainly) and the worker (run with --relay-worker URL [--relay-labels L],
// which relay::init() strips):
//
//   src[1] -> work[2] (restart, placed on workers) -> sink[1]
//
// src (local) sends 1..N. Each worker doubles its number after sleeping
// --work-us microseconds (so that the run lasts long enough for a host to be
// lost in it) and sends (2i, its host $CLUSTER_HOST). The sink (local) counts
// what arrives, and how many values came more than once. After the run the
// driver prints
//   count=<n> sum=<s> duplicates=<d> hosts=<h,...>
// and exits 0; a failed run prints "error: <what>" and exits 1. A worker
// prints "worker done" (exit 0) or "worker error: <what>" (exit 1).
//
// Flags (after relay::init): --listen URL, --workers N, --items N,
// --work-us US, --label L (work is placed on workers labelled L),
// --join-timeout-ms MS (also how long a lost host's actors wait for a worker),
// --crash-at N (a worker abort()s on item N, the first time it gets it),
// --poison N (a worker abort()s on item N every time).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "relay/relay.h"

namespace {

struct Options {
  std::string listen;
  std::size_t workers = 0;
  long long items = 2000;
  long long work_us = 0;
  std::string label;
  long long join_timeout_ms = 30000;
  long long crash_at = 0;
  long long poison = 0;
};

[[noreturn]] void Usage(const char* argv0, const std::string& why) {
  std::fprintf(stderr,
               "%s: %s\nusage: %s [--listen URL] [--workers N] [--items N] [--work-us US]\n"
               "  [--label L] [--join-timeout-ms MS] [--crash-at N] [--poison N]\n",
               argv0, why.c_str(), argv0);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(argv[0], "missing value for " + a);
      return argv[++i];
    };
    if (a == "--help") {
      std::printf("usage: %s [--listen URL] [--workers N] [--items N] [--work-us US] [--label L]"
                  " [--join-timeout-ms MS] [--crash-at N] [--poison N]\n",
                  argv[0]);
      std::exit(0);
    } else if (a == "--listen") {
      o.listen = value();
    } else if (a == "--workers") {
      o.workers = std::stoul(value());
    } else if (a == "--items") {
      o.items = std::stoll(value());
    } else if (a == "--work-us") {
      o.work_us = std::stoll(value());
    } else if (a == "--label") {
      o.label = value();
    } else if (a == "--join-timeout-ms") {
      o.join_timeout_ms = std::stoll(value());
    } else if (a == "--crash-at") {
      o.crash_at = std::stoll(value());
    } else if (a == "--poison") {
      o.poison = std::stoll(value());
    } else {
      Usage(argv[0], "unknown argument " + a);
    }
  }
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

class Doubler : public relay::Actor {
 public:
  explicit Doubler(const Options& o) : work_us_(o.work_us), crash_at_(o.crash_at), poison_(o.poison) {}
  void startup() override {
    const char* h = std::getenv("CLUSTER_HOST");
    host_ = h ? h : "?";
  }
  void recv(const relay::Message& m) override {
    if (work_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(work_us_));
    const long long v = m.get<long long>(0);
    if ((v == crash_at_ && !m.redelivered()) || v == poison_) std::abort();
    send(2 * v, host_);
  }

 private:
  long long work_us_;
  long long crash_at_;
  long long poison_;
  std::string host_;
};

class Sink : public relay::Actor {
 public:
  explicit Sink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    const auto [value, host] = m.as<long long, std::string>();
    if (!seen_.insert(value).second) ++duplicates_;
    sum_ += value;
    hosts_.insert(host);
  }
  void shutdown() override {
    std::string hosts;
    for (const auto& h : hosts_) hosts += (hosts.empty() ? "" : ",") + h;
    q_.put(static_cast<long long>(seen_.size()), sum_, duplicates_, hosts);
  }

 private:
  relay::Queue& q_;
  std::set<long long> seen_;
  long long sum_ = 0;
  long long duplicates_ = 0;
  std::set<std::string> hosts_;
};

}  // namespace

int main(int argc, char** argv) {
  relay::init(argc, argv);
  const Options o = Parse(argc, argv);
  const bool worker = relay::is_worker();
  try {
    relay::Queue results;
    Source source(o.items);
    Doubler w1(o), w2(o);
    std::vector<relay::Actor*> work{&w1, &w2};
    Sink sink(results);

    relay::Relay relay(20);
    relay.connect(relay::group("src", source), relay::group("work", work),
                  relay::group("sink", sink));
    relay.place("work", o.label.empty() ? relay::Placement::workers()
                                        : relay::Placement::label(o.label));
    relay.restart("work", relay::Restart{.max_restarts = 10});
    relay.allow_insecure_network();
    if (!o.listen.empty()) relay.listen(o.listen);
    if (o.workers > 0) {
      relay.expect_workers(o.workers, std::chrono::milliseconds(o.join_timeout_ms));
    }
    relay.start();
    if (worker) {
      std::printf("worker done\n");
      return 0;
    }
    const relay::Message m = results.get(std::chrono::seconds(5)).value();
    const auto [count, sum, duplicates, hosts] = m.as<long long, long long, long long, std::string>();
    std::printf("count=%lld sum=%lld duplicates=%lld hosts=%s\n", count, sum, duplicates,
                hosts.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s%s\n", worker ? "worker error: " : "error: ", e.what());
    return 1;
  }
}
