// Supervision across hosts: a supervised group on workers whose host is lost
// mid-run (every process of it killed, or its network cut) starts again on
// another worker that its placement allows, and the run is still exact; with
// none, the run stops naming the group and the placement. The driver runs on
// host A, the workers on hosts B and C (network namespaces, see
// tests/netns.h); all processes are tests/supervision_cluster_main (see its
// header for the graph and what it prints).
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
using relay::testing::RunIp;
using relay::testing::SetLinkDown;
using relay::testing::Spawn;
using relay::testing::Spawned;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

bool ExitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

constexpr int kPort = 5555;  // a namespace of our own: nothing else can hold it
constexpr long long kItems = 3000;
// 2 ms of work per item on two workers: about 3 s of run without failures,
// long enough to lose a host in the middle of it.
constexpr long long kWorkUs = 2000;
// Every doubled number once: the sum of 2i for i in 1..3000.
const std::string kExact = "count=3000 sum=9003000 duplicates=0 hosts=";

class SupervisionClusterTest : public ProcessTest {
 protected:
  void SetUp() override {
    ProcessTest::SetUp();
    SetWatchdog(std::chrono::seconds(120));
    try {
      a_ = std::make_unique<Netns>();
      b_ = std::make_unique<Netns>();
      c_ = std::make_unique<Netns>();
      ab_ = Connect(*a_, *b_);
      ac_ = Connect(*a_, *c_);
    } catch (const std::exception& e) {
      GTEST_FAIL() << "cannot make the hosts: " << e.what();
    }
    // The driver listens on A's address towards B; C reaches it through its
    // own link to A (A takes packets for any of its addresses).
    const std::string route =
        RunIp({"-n", c_->name(), "route", "add", ab_.addr_a + "/32", "via", ac_.addr_a});
    ASSERT_EQ(route, "");
    url_ = "tcp://" + ab_.addr_a + ":" + std::to_string(kPort);
  }

  void TearDown() override {
    if (std::getenv("CLUSTER_TEST_VERBOSE")) std::fprintf(stderr, "%s", All().c_str());
    procs_.clear();
    c_.reset();
    b_.reset();
    a_.reset();
    ProcessTest::TearDown();
  }

  Spawned& Start(Netns& ns, const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), "tests/supervision_cluster_main");
    for (const std::string& a : {std::string("--items"), std::to_string(kItems),
                                 std::string("--work-us"), std::to_string(kWorkUs)}) {
      args.push_back(a);
    }
    procs_.push_back(Spawn(ns, args, {"CLUSTER_HOST=" + host}, host));
    return *procs_.back();
  }

  Spawned& Driver(std::size_t workers, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen", url_, "--workers", std::to_string(workers),
                                     "--join-timeout-ms", "20000"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Start(*a_, "a", args);
  }

  Spawned& Worker(Netns& ns, const std::string& host, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--relay-worker", url_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Start(ns, host, args);
  }

  // Waits at most `limit` until `p`'s output (its log is on stdout) holds
  // `needle`.
  static bool WaitForLog(Spawned& p, const std::string& needle, milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      Spawned::PumpAll();
      if (p.out().find(needle) != std::string::npos) return true;
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  // Waits for `p` to end with `code` within `limit`.
  void ExpectExit(Spawned& p, int code, milliseconds limit) {
    const int status = p.WaitExit(limit);
    ASSERT_NE(status, -1) << "pid " << p.pid() << " still running after " << limit.count()
                          << " ms\n"
                          << All();
    EXPECT_TRUE(ExitedWith(status, code)) << DescribeStatus(status) << "\n" << All();
  }

  // Nothing any program started is left running.
  void ExpectNothingLeft() {
    for (const auto& p : procs_) {
      std::vector<pid_t> left;
      for (int i = 0; i < 300 && !(left = p->Remaining()).empty(); ++i) {
        std::this_thread::sleep_for(milliseconds(10));
      }
      EXPECT_TRUE(left.empty()) << left.size() << " process(es) of pid " << p->pid()
                                << " still running 3 s after it ended\n"
                                << All();
    }
  }

  std::string All() const {
    Spawned::PumpAll();
    std::string s;
    for (const auto& p : procs_) s += p->Transcript() + "\n";
    return s;
  }

  std::unique_ptr<Netns> a_, b_, c_;
  Link ab_, ac_;
  std::string url_;
  std::vector<std::unique_ptr<Spawned>> procs_;
};

// Host B dies whole (every process of its worker SIGKILLed) while its actor
// works: the broker takes it for lost, starts that actor again on C, and
// every number still arrives exactly once.
TEST_F(SupervisionClusterTest, KilledHostsActorsStartAgainOnAnotherWorker) {
  Spawned& driver = Driver(2);
  Spawned& b = Worker(*b_, "b");
  Spawned& c = Worker(*c_, "c");
  ASSERT_TRUE(WaitForLog(driver, "worker b", milliseconds(20000))) << All();
  ASSERT_TRUE(WaitForLog(driver, "worker c", milliseconds(20000))) << All();
  ASSERT_TRUE(WaitForLog(b, "running 1 actor", milliseconds(20000))) << All();
  std::this_thread::sleep_for(milliseconds(1000));  // into the run
  ASSERT_FALSE(driver.ended()) << "the run ended before the host was lost\n" << All();
  b.KillAll();
  ExpectExit(driver, 0, milliseconds(60000));
  EXPECT_THAT(driver.out(), HasSubstr(kExact)) << All();
  EXPECT_THAT(driver.out(), HasSubstr("host 'b'")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("starts again on worker c")) << All();
  ExpectExit(c, 0, milliseconds(10000));
  EXPECT_THAT(c.out(), HasSubstr("worker done")) << All();
  ExpectNothingLeft();
}

// Host B's network is cut (its processes keep running, unheard), and C joins
// only mid-run: the actors of B start again on C, the run is exact, and B's
// worker, finding the broker silent, stops its stale actors and leaves nothing.
TEST_F(SupervisionClusterTest, CutHostsActorsMoveToAWorkerThatJoinedMidRun) {
  Spawned& driver = Driver(1);
  Spawned& b = Worker(*b_, "b");
  ASSERT_TRUE(WaitForLog(b, "running 2 actor", milliseconds(20000))) << All();
  Spawned& c = Worker(*c_, "c");
  ASSERT_TRUE(WaitForLog(driver, "joined mid-run", milliseconds(20000))) << All();
  ASSERT_FALSE(driver.ended()) << "the run ended before the host was lost\n" << All();
  ASSERT_EQ(SetLinkDown(*b_, ab_.veth_b), "");
  ExpectExit(driver, 0, milliseconds(60000));
  EXPECT_THAT(driver.out(), HasSubstr(kExact)) << All();
  EXPECT_THAT(driver.out(), HasSubstr("starts again on worker c")) << All();
  ExpectExit(c, 0, milliseconds(10000));
  ExpectExit(b, 1, milliseconds(15000));
  EXPECT_THAT(b.out(), HasSubstr("worker error:")) << All();
  ExpectNothingLeft();
}

// The lost host was the only one with the label the group is placed on: the
// run stops once the wait for such a worker is over, naming the group and
// the placement.
TEST_F(SupervisionClusterTest, NoWorkerFitsThePlacementStopsTheRun) {
  Spawned& driver = Driver(2, {"--label", "gpu", "--join-timeout-ms", "5000"});
  Spawned& b = Worker(*b_, "b", {"--relay-labels", "gpu", "--label", "gpu"});
  Spawned& c = Worker(*c_, "c", {"--label", "gpu"});
  ASSERT_TRUE(WaitForLog(b, "running 2 actor", milliseconds(20000))) << All();
  b.KillAll();
  ExpectExit(driver, 1, milliseconds(60000));
  EXPECT_THAT(driver.out(), HasSubstr("error:")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("group 'work'")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("workers labelled 'gpu'")) << All();
  EXPECT_THAT(driver.out(), Not(HasSubstr("count="))) << All();
  ExpectExit(c, 1, milliseconds(15000));
  ExpectNothingLeft();
}

// An actor on a worker crashes (abort) once: its worker's spawner starts it
// again there, and the run is exact.
TEST_F(SupervisionClusterTest, CrashedActorRestartsOnItsWorker) {
  Spawned& driver = Driver(1, {"--crash-at", "700"});
  Spawned& b = Worker(*b_, "b", {"--crash-at", "700"});
  ExpectExit(driver, 0, milliseconds(60000));
  EXPECT_THAT(driver.out(), HasSubstr(kExact + "b\n")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("killed by SIGABRT")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("restarted (pid")) << All();
  EXPECT_THAT(b.out(), HasSubstr("worker: started actor")) << All();
  ExpectExit(b, 0, milliseconds(10000));
  ExpectNothingLeft();
}

// A message that kills its actor on a worker every time: the worker reports
// what the actor was inside recv() with, so its attempts are counted, and
// the run stops naming it (no dead_letters queue).
TEST_F(SupervisionClusterTest, PoisonMessageOnAWorkerIsNamed) {
  Spawned& driver = Driver(1, {"--poison", "700"});
  Spawned& b = Worker(*b_, "b", {"--poison", "700"});
  ExpectExit(driver, 1, milliseconds(60000));
  EXPECT_THAT(driver.out(), HasSubstr("failed 3 time(s) on the message [700]")) << All();
  ExpectExit(b, 1, milliseconds(15000));
  ExpectNothingLeft();
}

}  // namespace
