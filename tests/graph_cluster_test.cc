// A graph across hosts: the driver on host A (a network namespace, see
// tests/netns.h) runs src -> count (by key, placed on workers) -> {sink,
// errors from 'bad'}; the counters run on a worker on host B. All processes
// are tests/graph_cluster_main (see its header for the graph and what it
// prints).
//
// Needs root; tagged no-sandbox (ip netns fails in Bazel's sandbox) and
// exclusive (timing bounds). CLUSTER_TEST_VERBOSE=1 (--test_env) prints every
// program's output after each test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/netns.h"
#include "tests/testing.h"

namespace {

using relay::testing::Connect;
using relay::testing::DescribeStatus;
using relay::testing::Link;
using relay::testing::Netns;
using relay::testing::ProcessTest;
using relay::testing::Spawn;
using relay::testing::Spawned;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

bool ExitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

constexpr int kPort = 5555;  // a namespace of our own: nothing else can hold it
constexpr long long kItems = 1000;
// For items 1..1000: the multiples of 5 go to 'bad', the rest to the sink;
// the keys i % 10 of the rest are 1-4 and 6-9.
const std::string kGoodRun =
    "good=800 good_sum=400000 bad=200 bad_sum=100500 keys=8 split=0 hosts=";

class GraphClusterTest : public ProcessTest {
 protected:
  void SetUp() override {
    ProcessTest::SetUp();
    try {
      a_ = std::make_unique<Netns>();
      b_ = std::make_unique<Netns>();
      link_ = Connect(*a_, *b_);
    } catch (const std::exception& e) {
      GTEST_FAIL() << "cannot make the hosts: " << e.what();
    }
    url_ = "tcp://" + link_.addr_a + ":" + std::to_string(kPort);
  }

  void TearDown() override {
    if (std::getenv("CLUSTER_TEST_VERBOSE")) std::fprintf(stderr, "%s", All().c_str());
    // Processes first (they keep the namespaces alive), then the hosts, then
    // the base checks that no child is left.
    procs_.clear();
    b_.reset();
    a_.reset();
    ProcessTest::TearDown();
  }

  Spawned& Start(Netns& ns, const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), "tests/graph_cluster_main");
    args.push_back("--items");
    args.push_back(std::to_string(kItems));
    procs_.push_back(Spawn(ns, args, {"CLUSTER_HOST=" + host}, host));
    return *procs_.back();
  }

  Spawned& Driver() {
    return Start(*a_, "a",
                 {"--insecure", "--listen", url_, "--workers", "1", "--join-timeout-ms", "20000"});
  }

  Spawned& Worker(const std::string& host, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--relay-worker", url_, "--insecure"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Start(*b_, host, args);
  }

  // Waits for the driver to end well with the exact counts, the counters
  // having run on `host`, and for the worker to end well.
  void ExpectGoodRun(Spawned& driver, Spawned& worker, const std::string& host) {
    const int status = driver.WaitExit(milliseconds(30000));
    ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
    EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
    EXPECT_THAT(driver.out(), HasSubstr(kGoodRun + host + "\n")) << All();
    const int ws = worker.WaitExit(milliseconds(10000));
    EXPECT_TRUE(ExitedWith(ws, 0)) << DescribeStatus(ws) << "\n" << All();
    EXPECT_THAT(worker.out(), HasSubstr("worker done")) << All();
    for (Spawned* p : {&driver, &worker}) {
      std::vector<pid_t> left;
      for (int i = 0; i < 200 && !(left = p->Remaining()).empty(); ++i) {
        std::this_thread::sleep_for(milliseconds(10));
      }
      EXPECT_TRUE(left.empty()) << left.size() << " process(es) of pid " << p->pid()
                                << " still running 2 s after it ended";
    }
  }

  // A worker started with `odd_flags` builds another graph: it is turned
  // away at once with `refusal` in its output, before it runs anything; a
  // worker that agrees then joins, and the run ends well.
  void ExpectTurnedAwayThenRun(std::vector<std::string> odd_flags, const std::string& refusal) {
    Spawned& driver = Driver();
    Spawned& odd = Worker("odd", std::move(odd_flags));
    const int os = odd.WaitExit(milliseconds(10000));
    ASSERT_NE(os, -1) << "the mismatched worker still waits after 10 s\n" << All();
    EXPECT_TRUE(ExitedWith(os, 1)) << DescribeStatus(os) << "\n" << All();
    EXPECT_THAT(odd.out(), HasSubstr(refusal)) << All();
    EXPECT_THAT(odd.out(), Not(HasSubstr("worker done"))) << All();
    Spawned& good = Worker("good");
    ExpectGoodRun(driver, good, "good");
    EXPECT_THAT(driver.out(), HasSubstr("turned away the worker on odd")) << All();
  }

  std::string All() const {
    Spawned::PumpAll();
    std::string s;
    for (const auto& p : procs_) s += p->Transcript() + "\n";
    return s;
  }

  std::unique_ptr<Netns> a_, b_;
  Link link_;
  std::string url_;
  std::vector<std::unique_ptr<Spawned>> procs_;
};

const std::string kLayout = "src[1] -> count[3] by key 1 -> {sink[1], errors[1] from 'bad'}";

// The by_key counters on host B: every item reaches the sink or the error
// sink exactly once, and each key reached one counter only.
TEST_F(GraphClusterTest, ByKeyGraphAcrossHostsIsExact) {
  Spawned& driver = Driver();
  Spawned& worker = Worker("b1");
  ExpectGoodRun(driver, worker, "b1");
}

// A worker whose program made count a broadcast group is turned away,
// naming both layouts.
TEST_F(GraphClusterTest, WorkerWithBroadcastInsteadOfByKeyTurnedAway) {
  ExpectTurnedAwayThenRun(
      {"--broadcast"},
      "they differ in layout ('src[1] -> count[3] broadcast -> {sink[1], errors[1] from 'bad'}' "
      "against the driver's '" +
          kLayout + "')");
}

// A worker whose program added an edge (count -> archive) is turned away,
// naming both layouts.
TEST_F(GraphClusterTest, WorkerWithAnExtraEdgeTurnedAway) {
  ExpectTurnedAwayThenRun({"--archive"},
                          "they differ in layout ('src[1] -> count[3] by key 1 -> {sink[1], "
                          "errors[1] from 'bad', archive[1]}' against the driver's '" +
                              kLayout + "')");
}

}  // namespace
