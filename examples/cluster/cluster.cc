// examples/cluster/cluster.cc: one relay over several hosts (README "Across
// hosts"), with the public API only.
//
//   numbers (driver) -> square (4 actors, on the workers) -> total (driver)
//
// The same program is the driver and every worker. Run plainly it is the
// driver: it listens for workers at tcp://127.0.0.1:5555 and publishes a
// monitor stream at tcp://127.0.0.1:5556. Run with --relay-worker URL (which
// relay::init() reads and removes) it is a worker: it joins the driver and
// runs the actors the driver gives it. --relay-key FILE secures both. With
// --broker URL the driver uses the standalone relay-broker there instead
// (which then listens for the workers and publishes the monitor stream).
//
//   cluster [--items N] [--listen URL] [--monitor URL]
//   cluster [--items N] --broker URL
//   cluster --relay-worker tcp://127.0.0.1:5555 [--relay-key FILE]
//
// Both sides must be given the same --items (they build the same Relay).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bazel/cli.h"
#include "relay/relay.h"

namespace {

class Numbers : public relay::Actor {  // source: 1..n
 public:
  explicit Numbers(long long n) : n_(n) {}
  void loop() override {
    for (long long i = 1; i <= n_; ++i) send(i);
  }

 private:
  long long n_;
};

class Square : public relay::Actor {  // runs on a worker
 public:
  void recv(const relay::Message& m) override {
    const long long i = m.get<long long>(0);
    send(i * i);
    ++count_;
  }
  void shutdown() override {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    log("squared {} numbers on {} (pid {})", count_, host, ::getpid());
  }

 private:
  long long count_ = 0;
};

class Total : public relay::Actor {  // sink: runs on the driver's host
 public:
  explicit Total(relay::Queue& out) : out_(out) {}
  void recv(const relay::Message& m) override {
    sum_ += m.get<long long>(0);
    ++count_;
  }
  void shutdown() override { out_.put(count_, sum_); }

 private:
  relay::Queue& out_;
  long long count_ = 0;
  long long sum_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // Takes --relay-worker, --relay-labels and --relay-key out of argv first:
  // the flags below are the program's own.
  try {
    relay::init(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fputs(relay::cli::usage_text("cluster", e.what()).c_str(), stderr);
    return relay::cli::kUsageStatus;
  }
  CLI::App app(
      "numbers -> square (4 actors, on the workers) -> total; prints the sum of\n"
      "the squares of 1..N. The driver listens at tcp://127.0.0.1:5555 and publishes\n"
      "for relay-monitor at tcp://127.0.0.1:5556 unless told otherwise. Run with\n"
      "--relay-worker URL [--relay-key FILE] it is a worker of the driver there;\n"
      "--relay-key FILE secures the driver and the workers. Both sides must be given\n"
      "the same --items. See README \"Across hosts\".",
      "cluster");
  relay::cli::setup(app);
  long long items = 200000;
  std::string listen = "tcp://127.0.0.1:5555";
  std::string monitor = "tcp://127.0.0.1:5556";
  std::string broker;
  app.add_option("--items", items, "Numbers to square (default 200000)")->type_name("N");
  app.add_option("--listen", listen, "Where workers join (default tcp://127.0.0.1:5555)")
      ->type_name("URL");
  app.add_option("--monitor", monitor, "Where to publish for relay-monitor")->type_name("URL");
  app.add_option("--broker", broker, "Use the standalone relay-broker there instead")
      ->type_name("URL")
      ->excludes("--listen")
      ->excludes("--monitor");
  app.footer("Exit status: 0 done, 1 the run failed, 2 bad usage.");
  const int parsed = relay::cli::parse(app, argc, argv, [&] {
    if (items < 1) throw CLI::ValidationError("--items", "wants a count >= 1");
  });
  if (parsed >= 0) return parsed;

  relay::Queue results;
  Numbers numbers(items);
  std::vector<std::unique_ptr<Square>> squares;
  for (int i = 0; i < 4; ++i) squares.push_back(std::make_unique<Square>());
  Total total(results);

  relay::Relay relay(/*maxsize=*/1000, /*log=*/"cluster");
  relay.connect(relay::group("numbers", numbers), relay::group("square", squares),
                relay::group("total", total));
  relay.place("square", relay::Placement::workers());  // the rest stays local
  try {
    if (broker.empty()) {
      relay.listen(listen);  // ignored in a worker
      relay.monitor(monitor);
    } else {
      relay.broker(broker);  // relay-broker listens and publishes instead
    }
  } catch (const std::invalid_argument& e) {
    relay::cli::usage_error(app, e.what());
  }
  try {
    relay.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  if (relay::is_worker()) {
    std::printf("worker: done\n");
    return 0;
  }
  const relay::Message m = results.get();
  std::printf("%lld squares, sum %lld\n", m.get<long long>(0), m.get<long long>(1));
  return 0;
}
