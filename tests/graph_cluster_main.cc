// A driver-or-worker program for graph_cluster_test: a graph, not a chain,
// across hosts. The same program is the driver (run plainly) and the worker
// (run with --relay-worker URL, which relay::init() strips):
//
//   src[1] -> count[3] by key 1 -> {sink[1], errors[1] from 'bad'}
//
// src (local) sends (i, i % 10) for i in 1..N. The three counters (placed on
// workers) get each key at one of them; every multiple of 5 goes to their
// "bad" output (send_to), the rest on to the sink, with the counter's name
// and the host ($CLUSTER_HOST). The sink and the error sink (both local)
// report to the driver's Handler, which prints after a good run:
//   good=<n> good_sum=<s> bad=<n> bad_sum=<s> keys=<k> split=<keys seen from two counters>
//   hosts=<h,...>
// and exits 0. A failed run prints "error: <what>" and exits 1; a worker
// prints "worker done" (exit 0) or "worker error: <what>" (exit 1).
//
// Flags (after relay::init): --listen URL, --workers N, --items N,
// --insecure, --join-timeout-ms MS, --broadcast (count is a broadcast group
// instead of by key: another graph), --archive (one more edge, from count's
// default output to a local "archive" group: another graph).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "relay/relay.h"

namespace {

struct Options {
  std::string listen;
  std::size_t workers = 0;
  long long items = 1000;
  bool insecure = false;
  long long join_timeout_ms = 30000;
  bool broadcast = false;
  bool archive = false;
};

[[noreturn]] void Usage(const char* argv0, const std::string& why) {
  std::fprintf(stderr,
               "%s: %s\nusage: %s [--listen URL] [--workers N] [--items N] [--insecure]\n"
               "  [--join-timeout-ms MS] [--broadcast] [--archive]\n",
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
    if (a == "--listen") {
      o.listen = value();
    } else if (a == "--workers") {
      o.workers = std::stoul(value());
    } else if (a == "--items") {
      o.items = std::stoll(value());
    } else if (a == "--insecure") {
      o.insecure = true;
    } else if (a == "--join-timeout-ms") {
      o.join_timeout_ms = std::stoll(value());
    } else if (a == "--broadcast") {
      o.broadcast = true;
    } else if (a == "--archive") {
      o.archive = true;
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
    for (long long i = 1; i <= items_; ++i) send(i, static_cast<int>(i % 10));
  }

 private:
  long long items_;
};

class KeyCounter : public relay::Actor {
 public:
  void startup() override {
    const char* h = std::getenv("CLUSTER_HOST");
    host_ = h ? h : "?";
  }
  void recv(const relay::Message& m) override {
    const auto [value, key] = m.as<long long, int>();
    if (value % 5 == 0) {
      send_to("bad", value);
    } else {
      send(value, key, name(), host_);
    }
  }

 private:
  std::string host_;
};

class Sink : public relay::Actor {
 public:
  explicit Sink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    const auto [value, key, counter, host] = m.as<long long, int, std::string, std::string>();
    ++count_;
    sum_ += value;
    counters_[key].insert(counter);
    hosts_.insert(host);
  }
  void shutdown() override {
    long long split = 0;
    for (const auto& [key, counters] : counters_) split += counters.size() > 1;
    std::string hosts;
    for (const auto& h : hosts_) hosts += (hosts.empty() ? "" : ",") + h;
    q_.put(std::string("good"), count_, sum_, static_cast<long long>(counters_.size()), split,
           hosts);
  }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
  std::map<int, std::set<std::string>> counters_;
  std::set<std::string> hosts_;
};

class ErrorSink : public relay::Actor {
 public:
  explicit ErrorSink(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    ++count_;
    sum_ += m.get<long long>(0);
  }
  void shutdown() override { q_.put(std::string("bad"), count_, sum_); }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
};

class Archive : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// Collects the two sinks' reports.
class Report : public relay::Handler {
 public:
  void run() override {
    for (int reports = 0; reports < 2; ++reports) {
      const relay::Message m = q.get();
      if (m.get<std::string>(0) == "good") {
        good = m.get<long long>(1);
        good_sum = m.get<long long>(2);
        keys = m.get<long long>(3);
        split = m.get<long long>(4);
        hosts = m.get<std::string>(5);
      } else {
        bad = m.get<long long>(1);
        bad_sum = m.get<long long>(2);
      }
    }
  }
  long long good = -1, good_sum = -1, bad = -1, bad_sum = -1, keys = -1, split = -1;
  std::string hosts;
};

}  // namespace

int main(int argc, char** argv) {
  relay::init(argc, argv);
  const Options o = Parse(argc, argv);
  const bool worker = relay::is_worker();
  try {
    Report report;
    Source source(o.items);
    std::vector<std::unique_ptr<KeyCounter>> counters;
    for (int i = 0; i < 3; ++i) counters.push_back(std::make_unique<KeyCounter>());
    Sink sink(report.q);
    ErrorSink errors(report.q);
    Archive archive;

    relay::Relay relay(50);
    relay::Group count = relay::group("count", counters);
    if (o.broadcast) {
      relay.connect(relay::group("src", source), relay::broadcast(count),
                    relay::group("sink", sink));
    } else {
      relay.connect(relay::group("src", source), relay::by_key(count, 1),
                    relay::group("sink", sink));
    }
    relay.connect(relay::output("count", "bad"), relay::group("errors", errors));
    if (o.archive) relay.connect("count", relay::group("archive", archive));
    relay.place("count", relay::Placement::workers());
    if (o.insecure) relay.allow_insecure_network();
    if (!o.listen.empty()) relay.listen(o.listen);
    if (o.workers > 0) {
      relay.expect_workers(o.workers, std::chrono::milliseconds(o.join_timeout_ms));
    }
    relay.start(report);
    if (worker) {
      std::printf("worker done\n");
      return 0;
    }
    std::printf("good=%lld good_sum=%lld bad=%lld bad_sum=%lld keys=%lld split=%lld hosts=%s\n",
                report.good, report.good_sum, report.bad, report.bad_sum, report.keys, report.split,
                report.hosts.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s%s\n", worker ? "worker error: " : "error: ", e.what());
    return 1;
  }
}
