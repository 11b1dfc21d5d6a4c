// Across hosts: a driver and its workers on different hosts, simulated with
// network namespaces (tests/netns.h). Host A (10.99.N.1) runs the driver,
// host B (10.99.N.2) two worker processes, each with a host name of its own
// ("b1", "b2"). All of them are tests/cluster_main (see its header for the
// pipeline and what it prints). NetnsTest checks the harness itself.
//
// Needs root; tagged no-sandbox (ip netns fails in Bazel's sandbox) and
// exclusive (timing bounds). CLUSTER_TEST_VERBOSE=1 (--test_env) prints every
// program's output after each test.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
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
using relay::testing::SetLinkDown;
using relay::testing::Spawn;
using relay::testing::Spawned;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

bool ExitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

// ---- The harness ----

class NetnsTest : public ProcessTest {};

// A program started in B reaches a socket the test listens on in A, and has
// the host name it was given.
TEST_F(NetnsTest, TwoHostsCanTalk) {
  Netns a, b;
  const Link link = Connect(a, b);
  EXPECT_EQ(link.addr_a.rfind("10.99.", 0), 0u);
  EXPECT_LE(link.veth_a.size(), 15u);
  EXPECT_LE(link.veth_b.size(), 15u);

  // The socket is made inside A and stays there.
  int port = 0;
  const int listener = a.Within([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, link.addr_a.c_str(), &addr.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0) {
      ::close(fd);
      return -1;
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    return fd;
  });
  ASSERT_GE(listener, 0) << "cannot listen on " << link.addr_a << " inside " << a.name();

  auto client = Spawn(
      b,
      {"/bin/bash", "-c",
       "echo \"hello from $(hostname)\" >/dev/tcp/" + link.addr_a + "/" + std::to_string(port)},
      {}, "hostb");
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no connection from B within 5 s\n"
                                    << (Spawned::PumpAll(), client->Transcript());
  const int conn = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(conn, 0);
  std::string got;
  char buf[256];
  for (ssize_t n; (n = ::read(conn, buf, sizeof buf)) > 0;) got.append(buf, n);
  ::close(conn);
  ::close(listener);
  EXPECT_EQ(got, "hello from hostb\n");
  const int status = client->WaitExit(milliseconds(5000));
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << client->Transcript();
}

// After SetLinkDown nothing gets through: a connect from B fails.
TEST_F(NetnsTest, LinkDownCutsTraffic) {
  Netns a, b;
  const Link link = Connect(a, b);
  ASSERT_EQ(SetLinkDown(b, link.veth_b), "");
  auto client = Spawn(b, {"/bin/bash", "-c", "exec 3<>/dev/tcp/" + link.addr_a + "/9"});
  const int status = client->WaitExit(milliseconds(10000));
  ASSERT_NE(status, -1) << "connect from B still pending 10 s after the cut";
  EXPECT_FALSE(ExitedWith(status, 0)) << client->Transcript();
}

// Whether `pid` runs (exists and is not a zombie waiting for its parent).
bool Running(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return false;
  int n = 0;
  char comm[256] = {}, state = 0;
  n = std::fscanf(f, "%*d (%255[^)]) %c", comm, &state);
  std::fclose(f);
  return n == 2 && state != 'Z' && state != 'X';
}

// Namespaces and every process started in them (also those that left the
// program's process group) are gone after the scope.
TEST_F(NetnsTest, CleansUpNamespacesAndProcesses) {
  std::string path;
  std::vector<pid_t> started;
  {
    Netns a;
    path = a.path();
    // `wait` keeps bash itself alive: with a last command that is not a
    // builtin, bash may exec it in place, and the count was 2 or 3 by chance.
    auto p = Spawn(a, {"/bin/bash", "-c", "setsid sleep 100 & sleep 100 & wait"});
    // A process in the middle of an exec shows no environment for a moment,
    // so one scan may miss it: keep the first scan that sees all three.
    for (int i = 0; i < 500 && started.size() < 3; ++i) {
      started = p->Remaining();
      if (started.size() < 3) std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_EQ(started.size(), 3u) << "bash and its two sleeps";
  }
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0) << path << " still exists";
  for (pid_t p : started) {
    bool gone = false;
    for (int i = 0; i < 200 && !(gone = !Running(p)); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(gone) << "pid " << p << " survived its Spawned";
  }
}

// Listens on tcp `addr`:`port` inside `ns`, holding the port for the test;
// returns the descriptor (close it to free the port), or -1.
int Occupy(Netns& ns, const std::string& addr, int port) {
  return ns.Within([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 1) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  });
}

// The tcp ports listened on inside `ns` (from `ss -ltnH`), or {-1} if ss
// did not run.
std::vector<int> ListeningPorts(Netns& ns) {
  auto ss = Spawn(ns, {"/usr/bin/ss", "-ltnH"});
  if (!ExitedWith(ss->WaitExit(milliseconds(10000)), 0)) return {-1};
  std::vector<int> ports;
  std::istringstream lines(ss->out());
  for (std::string line; std::getline(lines, line);) {
    // State Recv-Q Send-Q Local:Port Peer:Port
    std::istringstream fields(line);
    std::string state, recvq, sendq, local;
    fields >> state >> recvq >> sendq >> local;
    const auto colon = local.rfind(':');
    if (colon != std::string::npos) ports.push_back(std::atoi(local.c_str() + colon + 1));
  }
  return ports;
}

// ---- Across hosts ----

constexpr int kPort = 5555;  // a namespace of our own: nothing else can hold it

class ClusterTest : public ProcessTest {
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
    const char* tmp = std::getenv("TEST_TMPDIR");
    tmp_ = tmp ? tmp : "/tmp";
  }

  void TearDown() override {
    // CLUSTER_TEST_VERBOSE=1 shows what every program printed, also when
    // the test passed.
    if (std::getenv("CLUSTER_TEST_VERBOSE")) std::fprintf(stderr, "%s", All().c_str());
    // Processes first (they keep the namespaces alive), then the hosts, then
    // the base checks that no child is left.
    procs_.clear();
    b_.reset();
    a_.reset();
    ProcessTest::TearDown();
  }

  // The application flags, the same for the driver and its workers (both
  // build the same Relay).
  std::vector<std::string> AppArgs(long long items, int delay_ms) const {
    return {"--items", std::to_string(items), "--delay-ms", std::to_string(delay_ms)};
  }

  Spawned& Start(Netns& ns, const std::string& host, std::vector<std::string> args,
                 std::vector<std::string> env = {}) {
    args.insert(args.begin(), "tests/cluster_main");
    env.push_back("CLUSTER_HOST=" + host);
    procs_.push_back(Spawn(ns, args, env, host));
    return *procs_.back();
  }

  Spawned& Driver(std::vector<std::string> extra, std::size_t workers, long long items,
                  int delay_ms, std::vector<std::string> env = {}) {
    std::vector<std::string> args = {
        "--listen", url_, "--workers", std::to_string(workers), "--join-timeout-ms", "20000"};
    args.insert(args.end(), extra.begin(), extra.end());
    for (auto& a : AppArgs(items, delay_ms)) args.push_back(a);
    return Start(*a_, "a", args, env);
  }

  Spawned& Worker(const std::string& host, std::vector<std::string> extra, long long items,
                  int delay_ms, std::vector<std::string> env = {}) {
    std::vector<std::string> args = {"--relay-worker", url_};
    args.insert(args.end(), extra.begin(), extra.end());
    for (auto& a : AppArgs(items, delay_ms)) args.push_back(a);
    return Start(*b_, host, args, env);
  }

  // Makes a cluster key with relay-keygen; returns its path.
  std::string MakeKey(const std::string& name) {
    const std::string path = tmp_ + "/" + name + ".key";
    ::unlink(path.c_str());
    auto keygen = Spawn(*a_, {"workers/relay-keygen", path});
    const int status = keygen->WaitExit(milliseconds(10000));
    EXPECT_TRUE(ExitedWith(status, 0))
        << "relay-keygen " << path << ": " << DescribeStatus(status) << "\n"
        << keygen->Transcript();
    return path;
  }

  // A driver waits for one worker; a worker started with `odd_flags` is
  // turned away at once with `refusal` in its output, before it runs
  // anything; a worker that agrees then joins, and the run ends well.
  void ExpectTurnedAwayThenRunWithAGoodWorker(std::vector<std::string> odd_flags,
                                              const std::string& refusal) {
    Spawned& driver = Driver({"--insecure"}, 1, 500, 0);
    Spawned& odd = Worker("odd", std::move(odd_flags), 500, 0);
    const int os = odd.WaitExit(milliseconds(10000));
    ASSERT_NE(os, -1) << "the mismatched worker still waits after 10 s\n" << All();
    EXPECT_TRUE(ExitedWith(os, 1)) << DescribeStatus(os) << "\n" << All();
    EXPECT_THAT(odd.out(), HasSubstr(refusal)) << All();
    EXPECT_THAT(odd.out(), Not(HasSubstr("worker done"))) << All();
    Spawned& w = Worker("good", {"--insecure"}, 500, 0);
    const int status = driver.WaitExit(milliseconds(30000));
    ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
    EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
    EXPECT_THAT(driver.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=good\n"))
        << All();
    EXPECT_THAT(driver.out(), HasSubstr("turned away the worker on odd")) << All();
    EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0)) << All();
  }

  // Every process's output, for failure messages.
  std::string All() const {
    Spawned::PumpAll();
    std::string s;
    for (const auto& p : procs_) s += p->Transcript() + "\n";
    return s;
  }

  std::unique_ptr<Netns> a_, b_;
  Link link_;
  std::string url_;
  std::string tmp_;
  std::vector<std::unique_ptr<Spawned>> procs_;
};

// Two workers on host B run the four forwarders between a local source and a
// local sink: every item arrives exactly once, and both workers did work.
TEST_F(ClusterTest, EndToEndCountsExact) {
  constexpr long long kItems = 2000;
  Spawned& driver = Driver({"--insecure"}, 2, kItems, 0);
  Spawned& w1 = Worker("b1", {"--insecure"}, kItems, 0);
  Spawned& w2 = Worker("b2", {"--insecure"}, kItems, 0);

  const int status = driver.WaitExit(milliseconds(40000));
  ASSERT_NE(status, -1) << "driver still running after 40 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=2000 sum=2001000 forwarders=4 hosts=b1,b2\n"))
      << All();
  // The driver's handles on the remote actors ended with them.
  EXPECT_THAT(driver.out(), HasSubstr("forwarder handles: exit0,exit0,exit0,exit0,\n")) << All();

  for (Spawned* w : {&w1, &w2}) {
    const int ws = w->WaitExit(milliseconds(10000));
    EXPECT_TRUE(ExitedWith(ws, 0)) << "worker " << w->pid() << " " << DescribeStatus(ws) << "\n"
                                   << All();
    EXPECT_THAT(w->out(), HasSubstr("worker done")) << All();
  }
  // No actor outlives its worker.
  for (Spawned* w : {&driver, &w1, &w2}) {
    std::vector<pid_t> left;
    for (int i = 0; i < 200 && !(left = w->Remaining()).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(left.empty()) << left.size() << " process(es) of pid " << w->pid()
                              << " still running 2 s after it ended";
  }
}

// relay-monitor on another host sees the remote actors' logs, the counters
// and the end of the run when it holds the cluster key; without it, it is
// refused and hears nothing.
TEST_F(ClusterTest, MonitorOnAnotherHostNeedsTheKey) {
  constexpr long long kItems = 2000;
  const std::string good = MakeKey("good");
  const std::string bad = MakeKey("bad");
  ASSERT_FALSE(HasFailure());
  const std::string monitor_url = "tcp://" + link_.addr_a + ":" + std::to_string(kPort + 1);
  // About 2 s of work, so that the monitors join while it runs.
  Spawned& driver = Driver({"--key", good, "--monitor", monitor_url}, 1, kItems, 4);
  procs_.push_back(Spawn(*b_, {"broker/relay-monitor", "--key", good, "--timeout", "30",
                               monitor_url}));
  Spawned& watcher = *procs_.back();
  procs_.push_back(
      Spawn(*b_, {"broker/relay-monitor", "--key", bad, "--timeout", "3", monitor_url}));
  Spawned& snoop = *procs_.back();
  Spawned& w = Worker("b1", {"--relay-key", good}, kItems, 4);

  const int status = driver.WaitExit(milliseconds(40000));
  ASSERT_NE(status, -1) << "driver still running after 40 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0)) << All();

  EXPECT_TRUE(ExitedWith(watcher.WaitExit(milliseconds(10000)), 0)) << All();
  EXPECT_THAT(watcher.out(), HasSubstr("] (Forwarder-")) << All();  // remote actors' logs
  EXPECT_THAT(watcher.out(), HasSubstr("forwarded 100 on b1")) << All();
  EXPECT_THAT(watcher.out(), HasSubstr("info [sink] (Sink-0) sink got 2000\n")) << All();
  EXPECT_THAT(watcher.out(), HasSubstr(" stats [work] (Forwarder-")) << All();
  EXPECT_THAT(watcher.out(), HasSubstr("end: the run ended well\n")) << All();

  EXPECT_TRUE(ExitedWith(snoop.WaitExit(milliseconds(40000)), 3)) << All();
  EXPECT_THAT(snoop.out(), Not(HasSubstr("[sink]"))) << All();
  // A peer with another key encrypts its hello to the wrong server key, so
  // the CURVE handshake itself fails; the ZAP handler refuses the peers that
  // get past it (those that know the cluster's public key but not its secret).
}

// With a cluster key, a worker holding another key does not join: the run
// goes on with the good worker only (the driver expects one) and the bad
// worker never runs to completion.
TEST_F(ClusterTest, UnauthenticatedWorkerRefused) {
  constexpr long long kItems = 500;
  const std::string good = MakeKey("good");
  const std::string bad = MakeKey("bad");
  ASSERT_FALSE(HasFailure());

  Spawned& driver = Driver({"--key", good}, 1, kItems, 0);
  // The bad worker knocks first, so that a driver that accepts anyone would
  // take it.
  Spawned& intruder = Worker("bad", {"--relay-key", bad}, kItems, 0);
  std::this_thread::sleep_for(milliseconds(1500));
  Spawned::PumpAll();
  Spawned& w = Worker("good", {"--relay-key", good}, kItems, 0);

  const int status = driver.WaitExit(milliseconds(40000));
  ASSERT_NE(status, -1) << "driver still running after 40 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=good\n")) << All();

  const int ws = w.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(ws, 0)) << DescribeStatus(ws) << "\n" << All();

  // The intruder may give up with an error or keep knocking; it must not
  // have run the pipeline.
  const int is = intruder.WaitExit(milliseconds(2000));
  if (is != -1) {
    EXPECT_FALSE(ExitedWith(is, 0)) << "the worker with the wrong key ended well\n" << All();
  }
  EXPECT_THAT(intruder.out(), Not(HasSubstr("worker done"))) << All();
}

// A worker that waits longer than the host timeout for the others is not
// taken for lost: it pings while it waits to be given actors.
TEST_F(ClusterTest, EarlyWorkerWaitsForTheOthers) {
  Spawned& driver = Driver({"--insecure"}, 2, 500, 0);
  Spawned& w1 = Worker("b1", {"--insecure"}, 500, 0);
  ASSERT_TRUE(driver.WaitForOutput("worker joined: b1", milliseconds(10000))) << All();
  std::this_thread::sleep_for(milliseconds(4000));
  Spawned& w2 = Worker("b2", {"--insecure"}, 500, 0);
  const int status = driver.WaitExit(milliseconds(30000));
  ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=b1,b2\n"))
      << All();
  for (Spawned* w : {&w1, &w2}) EXPECT_TRUE(ExitedWith(w->WaitExit(milliseconds(10000)), 0)) << All();
}

// A worker whose program built another relay (here: three forwarders, not
// four) is turned away at once with both layouts named; the run goes on with
// a worker that agrees.
TEST_F(ClusterTest, WorkerWithAnotherRelayTurnedAway) {
  ExpectTurnedAwayThenRunWithAGoodWorker(
      {"--insecure", "--forwarders", "3"},
      "its program built a different relay (src[1] -> work[3] -> sink[1]; maxsize 100; queues "
      "#1; work on workers) than the driver's (src[1] -> work[4] -> sink[1]; maxsize 100; "
      "queues #1; work on workers): they differ in layout ('src[1] -> work[3] -> sink[1]' "
      "against the driver's 'src[1] -> work[4] -> sink[1]')");
}

// A worker whose relay has another maxsize (10, not 100) would pair a sender
// window of 10 with a receiver that returns credit after 50 messages, and the
// run would hang: it is turned away at once, naming both maxsizes, and the
// run goes on with a worker that agrees.
TEST_F(ClusterTest, WorkerWithAnotherMaxsizeTurnedAway) {
  ExpectTurnedAwayThenRunWithAGoodWorker(
      {"--insecure", "--maxsize", "10"},
      "its program built a different relay (src[1] -> work[4] -> sink[1]; maxsize 10; queues "
      "#1; work on workers) than the driver's (src[1] -> work[4] -> sink[1]; maxsize 100; "
      "queues #1; work on workers): they differ in maxsize ('maxsize 10' against the driver's "
      "'maxsize 100')");
}

// A worker that made another set of queues (one more, bounded) before
// start() could have its puts reach the wrong queue, as queues are named by
// creation order: it is turned away, naming both sets.
TEST_F(ClusterTest, WorkerWithOtherQueuesTurnedAway) {
  ExpectTurnedAwayThenRunWithAGoodWorker(
      {"--insecure", "--extra-queue"},
      "they differ in queues ('queues #1, #2 (maxsize 5)' against the driver's 'queues #1')");
}

// With ports(7100, 7109) on driver and worker, every port the run listens
// on besides the listen() port is in the range: the log endpoint and the
// sink's data inbox on the driver's host, the four forwarders' inboxes on
// the worker's. The run ends well.
TEST_F(ClusterTest, PortsRangeHoldsEveryListener) {
  constexpr long long kItems = 2000;
  const std::vector<std::string> ports = {"--insecure", "--ports", "7100-7109"};
  Spawned& driver = Driver(ports, 1, kItems, 2);
  Spawned& w = Worker("b1", ports, kItems, 2);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(20000))) << All();
  std::vector<int> on_a = ListeningPorts(*a_);
  std::vector<int> on_b = ListeningPorts(*b_);
  std::erase(on_a, kPort);
  EXPECT_EQ(on_a.size(), 2u) << "the log endpoint and the sink's inbox\n" << All();
  EXPECT_EQ(on_b.size(), 4u) << "the forwarders' inboxes\n" << All();
  for (const std::vector<int>* host : {&on_a, &on_b}) {
    for (int port : *host) {
      EXPECT_GE(port, 7100) << All();
      EXPECT_LE(port, 7109) << All();
    }
  }
  const int status = driver.WaitExit(milliseconds(30000));
  ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=2000 sum=2001000 forwarders=4 hosts=b1\n")) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0)) << All();
}

// Every port of the range is taken on the worker's host: its actors cannot
// bind their inboxes, and the driver's start() fails at once naming the
// range and the host rather than binding elsewhere.
TEST_F(ClusterTest, PortsRangeWithoutAFreePortIsAClearError) {
  std::vector<int> held;
  for (int port = 7200; port <= 7203; ++port) {
    held.push_back(Occupy(*b_, link_.addr_b, port));
    ASSERT_GE(held.back(), 0) << "cannot hold port " << port << " on " << link_.addr_b;
  }
  const std::vector<std::string> ports = {"--insecure", "--ports", "7200-7203"};
  Spawned& driver = Driver(ports, 1, 500, 0);
  Spawned& w = Worker("b1", ports, 500, 0);
  const int status = driver.WaitExit(milliseconds(15000));
  for (int fd : held) ::close(fd);
  ASSERT_NE(status, -1) << "driver still running after 15 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr(" failed: [work] (Forwarder-")) << All();
  EXPECT_THAT(driver.out(), HasSubstr(" on b1 (" + link_.addr_b +
                                      "): relay::Error: actor "
                                      "'Forwarder-"))
      << "the host of an actor that failed before its hello is not named\n"
      << All();
  EXPECT_THAT(driver.out(), HasSubstr("cannot bind its data inbox (ports()): no free port in "
                                      "7200-7203 on " +
                                      link_.addr_b))
      << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
}

// The start deadlines, with 3 s instead of 30 (RELAY_TESTING_START_WAIT_MS)
// and faults injected in the actor runtime in place of a firewall.
const std::string kShortStart = "RELAY_TESTING_START_WAIT_MS=3000";

// An actor on the worker never says hello (as if the control port were
// closed to it): the broker stops the run once the start barrier's time is
// up, naming the actor, its host and the endpoints it was given.
TEST_F(ClusterTest, ActorThatNeverSaysHelloStopsTheRun) {
  Spawned& driver = Driver({"--insecure"}, 1, 500, 0, {kShortStart});
  Spawned& w =
      Worker("b1", {"--insecure"}, 500, 0, {kShortStart, "RELAY_TESTING_SKIP_HELLO=Forwarder-2"});
  const int status = driver.WaitExit(milliseconds(20000));
  ASSERT_NE(status, -1) << "driver still waits 20 s after the start barrier's time was up\n"
                        << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(),
              HasSubstr("error: actor failed: [work] (Forwarder-2) pid 0 on b1 (" + link_.addr_b +
                        "): did not say hello within 3.0 s of the start barrier (given "
                        "control " +
                        url_ + ", log tcp://" + link_.addr_a + ":"))
      << All();
  EXPECT_THAT(driver.out(), HasSubstr("start barrier: 1 actor(s) did not say hello within 3.0 s: "
                                      "Forwarder-2 on b1"))
      << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
}

// The actors on the worker connect their logs to an endpoint nobody serves
// (as if the log port were closed to them): each gives up when its time is
// up, naming that endpoint, and the run stops.
TEST_F(ClusterTest, ActorWithoutLogSubscriptionFails) {
  const std::string nowhere = "tcp://" + link_.addr_a + ":1";
  Spawned& driver = Driver({"--insecure"}, 1, 500, 0, {kShortStart});
  Spawned& w =
      Worker("b1", {"--insecure"}, 500, 0, {kShortStart, "RELAY_TESTING_LOG_ENDPOINT=" + nowhere});
  const int status = driver.WaitExit(milliseconds(20000));
  ASSERT_NE(status, -1) << "driver still waits 20 s after the actors' time was up\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr(" failed: [work] (Forwarder-")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("' had no log subscription from the broker at " + nowhere +
                                      " within 3.0 s (is that port reachable from this host?)"))
      << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
}

// The sink reports a data endpoint the worker's forwarders cannot reach (as
// if its port were closed): they fail when their time is up, naming the
// receiver and the endpoint, instead of queueing messages for ever.
TEST_F(ClusterTest, UnreachableDataInboxFailsItsSenders) {
  const std::string nowhere = "tcp://" + link_.addr_a + ":1";
  Spawned& driver =
      Driver({"--insecure"}, 1, 500, 0, {kShortStart, "RELAY_TESTING_DATA_ENDPOINT=" + nowhere});
  Spawned& w = Worker("b1", {"--insecure"}, 500, 0, {kShortStart});
  const int status = driver.WaitExit(milliseconds(20000));
  ASSERT_NE(status, -1) << "driver still waits 20 s after the senders' time was up\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr(" failed: [work] (Forwarder-")) << All();
  EXPECT_THAT(driver.out(),
              HasSubstr("' could not connect to the data inbox of Sink-0 at " + nowhere +
                        " within 3.0 s (is that port reachable from this host?)"))
      << All();
  EXPECT_THAT(driver.out(), Not(HasSubstr("count="))) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
}

// A slow run over two workers: the test kills one worker's main process with
// SIGKILL. The driver's start() throws ActorError naming the lost host and
// its actors within ~5 s; the lost worker's actors and the other worker end.
TEST_F(ClusterTest, WorkerKilledMidRunIsReported) {
  // 4 forwarders x 1 ms per item: about 25 s if nothing goes wrong.
  constexpr long long kItems = 100000;
  Spawned& driver = Driver({"--insecure"}, 2, kItems, 1);
  Spawned& w1 = Worker("b1", {"--insecure"}, kItems, 1);
  Spawned& w2 = Worker("b2", {"--insecure"}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000)))
      << "the run did not get under way within 30 s\n"
      << All();
  std::this_thread::sleep_for(milliseconds(300));

  const auto cut = Clock::now();
  w1.KillMain();
  const int status = driver.WaitExit(milliseconds(8000));
  ASSERT_NE(status, -1) << "driver did not report the lost worker within 8 s\n" << All();
  const long long ms = MsSince(cut);
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_LE(ms, 6500) << "reported after " << ms << " ms\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("error: ")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("lost")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("host '")) << All();
  // Hosts have host names of their own here; the error should name it.
  EXPECT_THAT(driver.out(), HasSubstr("b1")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("work")) << "the lost actors' group is not named\n" << All();
  EXPECT_THAT(driver.out(), Not(HasSubstr("count="))) << All();

  // The killed worker's actors notice that their worker is gone.
  std::vector<pid_t> left;
  for (int i = 0; i < 500 && !(left = w1.Remaining()).empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(left.empty()) << left.size()
                            << " actor process(es) of the killed worker still run after 5 s";
  // The surviving worker learns that the run failed and ends with an error.
  const int ws = w2.WaitExit(milliseconds(10000));
  EXPECT_NE(ws, -1) << "the surviving worker still runs 10 s after the driver ended\n" << All();
  EXPECT_TRUE(ExitedWith(ws, 1)) << DescribeStatus(ws) << "\n" << All();
  EXPECT_THAT(w2.out(), HasSubstr("worker error: ")) << All();
}

// A slow run over two workers: the link between the hosts goes down (a silent
// cut: no FIN, no RST). The driver reports the lost host within ~5 s, and the
// workers, cut off from their driver, stop their actors and exit.
TEST_F(ClusterTest, NetworkCutIsDetected) {
  constexpr long long kItems = 100000;
  Spawned& driver = Driver({"--insecure"}, 2, kItems, 1);
  Spawned& w1 = Worker("b1", {"--insecure"}, kItems, 1);
  Spawned& w2 = Worker("b2", {"--insecure"}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000)))
      << "the run did not get under way within 30 s\n"
      << All();
  std::this_thread::sleep_for(milliseconds(300));

  const auto cut = Clock::now();
  ASSERT_EQ(SetLinkDown(*b_, link_.veth_b), "");
  const int status = driver.WaitExit(milliseconds(10000));
  ASSERT_NE(status, -1) << "driver did not notice the cut within 10 s\n" << All();
  const long long ms = MsSince(cut);
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_LE(ms, 8000) << "reported after " << ms << " ms\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("error: ")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("lost")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("work")) << All();
  EXPECT_THAT(driver.out(), Not(HasSubstr("count="))) << All();

  // The workers are on their own now: they must notice and stop everything.
  for (Spawned* w : {&w1, &w2}) {
    const int ws = w->WaitExit(milliseconds(15000));
    EXPECT_NE(ws, -1) << "worker " << w->pid() << " still runs 15 s after the cut\n" << All();
    if (ws == -1) continue;
    EXPECT_TRUE(ExitedWith(ws, 1)) << DescribeStatus(ws) << "\n" << All();
    EXPECT_THAT(w->out(), HasSubstr("worker error: ")) << All();
    std::vector<pid_t> left;
    for (int i = 0; i < 300 && !(left = w->Remaining()).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(left.empty()) << left.size() << " actor process(es) of worker " << w->pid()
                              << " still run 3 s after it exited";
  }
}

// ---- A standalone relay-broker ----
//
// The broker runs on host A; the driver (Relay::broker(URL)) and its two
// workers on host B. Each joins the broker; data flows between the driver's
// actors and the workers' on B; queue puts, logs and the outcome reach the
// driver through the broker.

class StandaloneBrokerTest : public ClusterTest {
 protected:
  Spawned& Broker(std::vector<std::string> args) {
    args.insert(args.begin(), {"broker/relay-broker", "--listen", url_});
    procs_.push_back(Spawn(*a_, args, {}, "a"));
    return *procs_.back();
  }
  Spawned& DriverOnB(std::vector<std::string> extra, std::size_t workers, long long items,
                     int delay_ms) {
    std::vector<std::string> args = {"--broker", url_, "--workers", std::to_string(workers),
                                     "--join-timeout-ms", "20000"};
    args.insert(args.end(), extra.begin(), extra.end());
    for (auto& a : AppArgs(items, delay_ms)) args.push_back(a);
    return Start(*b_, "d", args);
  }
};

// With a cluster key: a worker holding another key knocks first and is not
// taken; the run goes through two good workers with exact counts, the
// workers' log records reach the driver, and relay-broker --runs 1 ends well.
TEST_F(StandaloneBrokerTest, EndToEndWithKey) {
  constexpr long long kItems = 2000;
  const std::string good = MakeKey("good");
  const std::string bad = MakeKey("bad");
  ASSERT_FALSE(HasFailure());
  Spawned& broker = Broker({"--key", good, "--runs", "1"});
  ASSERT_TRUE(broker.WaitForOutput("waiting for a driver", milliseconds(10000))) << All();
  Spawned& intruder = Worker("bad", {"--relay-key", bad}, kItems, 0);
  std::this_thread::sleep_for(milliseconds(1000));
  Spawned& driver = DriverOnB({"--key", good}, 2, kItems, 0);
  Spawned& w1 = Worker("b1", {"--relay-key", good}, kItems, 0);
  Spawned& w2 = Worker("b2", {"--relay-key", good}, kItems, 0);

  const int status = driver.WaitExit(milliseconds(40000));
  ASSERT_NE(status, -1) << "driver still running after 40 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=2000 sum=2001000 forwarders=4 hosts=b1,b2\n"))
      << All();
  EXPECT_THAT(driver.out(), HasSubstr("forwarder handles: exit0,exit0,exit0,exit0,\n")) << All();
  // Records logged on the workers, written by the driver's logger.
  EXPECT_THAT(driver.out(), HasSubstr("[relay] [info] [work] (Forwarder-")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("[relay] [info] [sink] (Sink-0) sink got 2000")) << All();
  for (Spawned* w : {&w1, &w2}) {
    EXPECT_TRUE(ExitedWith(w->WaitExit(milliseconds(10000)), 0)) << All();
    EXPECT_THAT(w->out(), HasSubstr("worker done")) << All();
  }
  const int bs = broker.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(bs, 0)) << DescribeStatus(bs) << "\n" << All();
  EXPECT_THAT(broker.out(), HasSubstr("run 1 ended well")) << All();
  EXPECT_THAT(broker.out(), HasSubstr("driver d runs Source-0, Sink-0")) << All();
  EXPECT_THAT(intruder.out(), Not(HasSubstr("worker done"))) << All();
  EXPECT_THAT(broker.out(), Not(HasSubstr("worker bad runs"))) << All();
}

// The driver is SIGKILLed mid-run: the broker reports its host lost within
// ~5 s and stops the run, the worker stops its actors and exits with an
// error, and the broker serves the next driver, whose run ends well.
TEST_F(StandaloneBrokerTest, OutlivesAKilledDriver) {
  constexpr long long kItems = 100000;  // 4 forwarders x 1 ms: ~25 s
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "2"});
  Spawned& driver = DriverOnB({}, 1, kItems, 1);
  Spawned& w1 = Worker("b1", {}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000)))
      << "the run did not get under way within 30 s\n"
      << All();
  const auto cut = Clock::now();
  driver.KillMain();
  ASSERT_TRUE(broker.WaitForOutput("run 1 failed", milliseconds(8000)))
      << "the broker did not notice the lost driver within 8 s\n"
      << All();
  EXPECT_LE(MsSince(cut), 6500) << All();
  EXPECT_THAT(broker.out(), HasSubstr("host 'd'")) << All();
  const int ws = w1.WaitExit(milliseconds(10000));
  EXPECT_NE(ws, -1) << "the worker still runs 10 s after its driver died\n" << All();
  EXPECT_TRUE(ExitedWith(ws, 1)) << DescribeStatus(ws) << "\n" << All();
  std::vector<pid_t> left;
  for (Spawned* p : {&driver, &w1}) {
    for (int i = 0; i < 500 && !(left = p->Remaining()).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(left.empty()) << left.size() << " actor process(es) of " << p->pid()
                              << " still run 5 s after the driver died";
  }

  // The next run.
  Spawned& again = DriverOnB({}, 1, 500, 0);
  Spawned& w2 = Worker("b2", {}, 500, 0);
  const int status = again.WaitExit(milliseconds(40000));
  ASSERT_NE(status, -1) << "second driver still running after 40 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(again.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=b2\n")) << All();
  EXPECT_TRUE(ExitedWith(w2.WaitExit(milliseconds(10000)), 0)) << All();
  const int bs = broker.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(bs, 1)) << "one of its two runs failed: " << DescribeStatus(bs) << "\n"
                                 << All();
  EXPECT_THAT(broker.out(), HasSubstr("run 2 ended well")) << All();
}

// An actor on a worker throws: the driver's start() reports it (group, name,
// the exception's text) as with an embedded broker, the worker ends with an
// error, and relay-broker says the run failed.
TEST_F(StandaloneBrokerTest, RemoteFailureReachesTheDriver) {
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "1"});
  Spawned& driver = DriverOnB({"--fail-at", "300"}, 1, 2000, 0);
  Spawned& w = Worker("b1", {"--fail-at", "300"}, 2000, 0);
  const int status = driver.WaitExit(milliseconds(30000));
  ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("error: ")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("[work] (Forwarder-")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("forwarder failed at 300")) << All();
  EXPECT_THAT(driver.out(), HasSubstr("on b1")) << "the failed actor's host is not named\n"
                                                << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
  EXPECT_TRUE(ExitedWith(broker.WaitExit(milliseconds(10000)), 1)) << All();
  EXPECT_THAT(broker.out(), HasSubstr("run 1 failed")) << All();
}

// Ctrl-C at the driver stops the whole run through the broker: the driver
// reports the interruption, the worker stops its actors, nothing is left.
TEST_F(StandaloneBrokerTest, InterruptAtTheDriverStopsTheRun) {
  constexpr long long kItems = 100000;
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "1"});
  Spawned& driver = DriverOnB({}, 1, kItems, 1);
  Spawned& w = Worker("b1", {}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000))) << All();
  const auto sent = Clock::now();
  ASSERT_EQ(::kill(driver.pid(), SIGINT), 0);
  const int status = driver.WaitExit(milliseconds(8000));
  ASSERT_NE(status, -1) << "driver still running 8 s after SIGINT\n" << All();
  EXPECT_LE(MsSince(sent), 4000) << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("error: relay: run interrupted by SIGINT")) << All();
  EXPECT_THAT(broker.out(), HasSubstr("stops the run: interrupted by SIGINT")) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
  for (Spawned* p : {&driver, &w}) {
    std::vector<pid_t> left;
    for (int i = 0; i < 300 && !(left = p->Remaining()).empty(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(left.empty()) << left.size() << " process(es) of " << p->pid() << " left";
  }
  EXPECT_NE(broker.WaitExit(milliseconds(10000)), -1) << All();
}

// SIGTERM to relay-broker stops the run it serves: the driver says why, and
// the broker exits 0 (stopped on purpose).
TEST_F(StandaloneBrokerTest, SigtermToTheBrokerStopsTheRun) {
  constexpr long long kItems = 100000;
  Spawned& broker = Broker({"--allow-insecure-network"});
  Spawned& driver = DriverOnB({}, 1, kItems, 1);
  Spawned& w = Worker("b1", {}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000))) << All();
  ASSERT_EQ(::kill(broker.pid(), SIGTERM), 0);
  const int status = driver.WaitExit(milliseconds(8000));
  ASSERT_NE(status, -1) << "driver still running 8 s after the broker's SIGTERM\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("relay-broker stopped by SIGTERM")) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 1)) << All();
  const int bs = broker.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(bs, 0)) << DescribeStatus(bs) << "\n" << All();
}

int Occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// A run that relay-broker cannot set up (its --ports range has no free port:
// the test holds it) fails alone: the driver's start() throws naming the
// cause, relay-broker keeps its sockets and serves the next driver once the
// port is free, and --runs 2 exits 1 for the failed run.
TEST_F(StandaloneBrokerTest, SurvivesARunItCannotSetUp) {
  constexpr int kLogPort = 7300;
  int held = Occupy(*a_, link_.addr_a, kLogPort);
  ASSERT_GE(held, 0) << "cannot hold port " << kLogPort << " on " << link_.addr_a;
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "2", "--ports",
                            std::to_string(kLogPort) + "-" + std::to_string(kLogPort)});
  Spawned& first = DriverOnB({}, 1, 500, 0);
  const int fs = first.WaitExit(milliseconds(15000));
  ASSERT_NE(fs, -1) << "the first driver still waits after 15 s\n" << All();
  EXPECT_TRUE(ExitedWith(fs, 1)) << DescribeStatus(fs) << "\n" << All();
  EXPECT_THAT(first.out(), HasSubstr("error: relay driver: the broker at " + url_ +
                                     " turned us away: relay-broker could not serve run 1: "
                                     "listen: cannot bind the log endpoint: no free port in "
                                     "7300-7300 on " +
                                     link_.addr_a))
      << All();
  EXPECT_EQ(broker.WaitExit(milliseconds(500)), -1) << "relay-broker ended with the run\n" << All();
  ::close(held);

  Spawned& second = DriverOnB({}, 1, 500, 0);
  Spawned& w = Worker("b1", {}, 500, 0);
  const int status = second.WaitExit(milliseconds(30000));
  ASSERT_NE(status, -1) << "the second driver still runs after 30 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(second.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=b1\n")) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0)) << All();
  const int bs = broker.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(bs, 1)) << "one of its two runs failed: " << DescribeStatus(bs) << "\n"
                                 << All();
  EXPECT_THAT(broker.out(), HasSubstr("run 2 ended well")) << All();
}

// Every queue put and every log record of a busy run reaches the driver
// through the broker (a ROUTER drops what does not fit its send limit, so the
// broker's has none).
TEST_F(StandaloneBrokerTest, EveryPutAndLogRecordReachesTheDriver) {
  constexpr long long kItems = 20000;
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "1", "--level", "warning"});
  Spawned& driver = DriverOnB({"--put-all", "--log-all"}, 1, kItems, 0);
  Spawned& w = Worker("b1", {"--put-all", "--log-all"}, kItems, 0);
  const int status = driver.WaitExit(milliseconds(60000));
  ASSERT_NE(status, -1) << "driver still running after 60 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=20000 sum=200010000 forwarders=4 hosts=b1\n"));
  EXPECT_THAT(driver.out(), HasSubstr("puts=20000 put_sum=200010000\n"));
  EXPECT_EQ(Occurrences(driver.out(), ") item "), kItems)
      << "log records lost on the way to the driver";
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0));
  EXPECT_TRUE(ExitedWith(broker.WaitExit(milliseconds(10000)), 0));
}

// Every group on workers: the driver runs no actor, and its death must still
// stop the run (the broker once kept waiting for it for ever).
TEST_F(StandaloneBrokerTest, DriverWithoutActorsIsStillWatched) {
  constexpr long long kItems = 100000;
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "1"});
  Spawned& driver = DriverOnB({"--all-on-workers"}, 1, kItems, 1);
  Spawned& w = Worker("b1", {"--all-on-workers"}, kItems, 1);
  ASSERT_TRUE(driver.WaitForOutput("running\n", milliseconds(30000))) << All();
  const auto cut = Clock::now();
  driver.KillMain();
  ASSERT_TRUE(broker.WaitForOutput("run 1 failed", milliseconds(8000)))
      << "the broker did not notice the lost driver within 8 s\n"
      << All();
  EXPECT_LE(MsSince(cut), 6500) << All();
  const int ws = w.WaitExit(milliseconds(10000));
  EXPECT_NE(ws, -1) << "the worker still runs 10 s after its driver died\n" << All();
  EXPECT_TRUE(ExitedWith(ws, 1)) << DescribeStatus(ws) << "\n" << All();
  EXPECT_NE(broker.WaitExit(milliseconds(10000)), -1) << All();
}

// A worker that joined while the broker waited for a driver, and died, is
// forgotten after 2.5 s of silence: the next worker gets the actors.
TEST_F(StandaloneBrokerTest, DeadEarlyWorkerIsForgotten) {
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "1"});
  ASSERT_TRUE(broker.WaitForOutput("waiting for a driver", milliseconds(10000))) << All();
  Spawned& gone = Worker("gone", {}, 500, 0);
  ASSERT_TRUE(gone.WaitForOutput("joining", milliseconds(10000))) << All();
  std::this_thread::sleep_for(milliseconds(500));
  gone.KillMain();
  std::this_thread::sleep_for(milliseconds(3500));
  Spawned& w = Worker("b2", {}, 500, 0);
  Spawned& driver = DriverOnB({}, 1, 500, 0);
  const int status = driver.WaitExit(milliseconds(30000));
  ASSERT_NE(status, -1) << "driver still running after 30 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("count=500 sum=125250 forwarders=4 hosts=b2\n")) << All();
  EXPECT_TRUE(ExitedWith(w.WaitExit(milliseconds(10000)), 0)) << All();
  EXPECT_TRUE(ExitedWith(broker.WaitExit(milliseconds(10000)), 0)) << All();
}

// Two drivers started together: one is served, the other waits for the next
// run (it used to be refused), and both end well.
TEST_F(StandaloneBrokerTest, DriversStartedTogetherAreServedInTurn) {
  Spawned& broker = Broker({"--allow-insecure-network", "--runs", "2"});
  Spawned& d1 = DriverOnB({}, 1, 3000, 0);
  Spawned& d2 = DriverOnB({}, 1, 3000, 0);
  Spawned& w1 = Worker("b1", {}, 3000, 0);
  Spawned& w2 = Worker("b2", {}, 3000, 0);
  for (Spawned* d : {&d1, &d2}) {
    const int status = d->WaitExit(milliseconds(40000));
    ASSERT_NE(status, -1) << "a driver still runs after 40 s\n" << All();
    EXPECT_TRUE(ExitedWith(status, 0)) << DescribeStatus(status) << "\n" << All();
    EXPECT_THAT(d->out(), HasSubstr("count=3000 sum=4501500 forwarders=4")) << All();
  }
  for (Spawned* w : {&w1, &w2}) EXPECT_TRUE(ExitedWith(w->WaitExit(milliseconds(10000)), 0)) << All();
  const int bs = broker.WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(bs, 0)) << DescribeStatus(bs) << "\n" << All();
  EXPECT_THAT(broker.out(), HasSubstr("run 2 ended well")) << All();
}

// relay-broker's command line: --help, and refusals with exit status 2.
TEST_F(StandaloneBrokerTest, CommandLine) {
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "broker/relay-broker");
    auto p = Spawn(*a_, args);
    const int status = p->WaitExit(milliseconds(10000));
    return std::make_pair(status, p->Transcript());
  };
  auto [help, help_text] = run({"--help"});
  EXPECT_TRUE(ExitedWith(help, 0)) << help_text;
  EXPECT_THAT(help_text, HasSubstr("--listen URL")) << help_text;
  auto [none, none_text] = run({});
  EXPECT_TRUE(ExitedWith(none, 2)) << none_text;
  EXPECT_THAT(none_text, HasSubstr("--listen is required")) << none_text;
  // Not loopback, no key: refused unless said loudly.
  auto [open, open_text] = run({"--listen", url_});
  EXPECT_TRUE(ExitedWith(open, 2)) << open_text;
  EXPECT_THAT(open_text, HasSubstr("--allow-insecure-network")) << open_text;
  auto [any, any_text] = run({"--listen", "tcp://*:5555"});
  EXPECT_TRUE(ExitedWith(any, 2)) << any_text;
  auto [ports, ports_text] =
      run({"--listen", url_, "--allow-insecure-network", "--ports", "7010-7000"});
  EXPECT_TRUE(ExitedWith(ports, 2)) << ports_text;
  EXPECT_THAT(ports_text, HasSubstr("--ports '7010-7000' is not FIRST-LAST")) << ports_text;
  // A monitor port in use is found at start, not when the first driver comes.
  Spawned& first = Broker({"--allow-insecure-network", "--monitor", "tcp://" + link_.addr_a + ":5560"});
  ASSERT_TRUE(first.WaitForOutput("waiting for a driver", milliseconds(10000))) << All();
  auto [busy, busy_text] =
      run({"--listen", "tcp://" + link_.addr_a + ":5561", "--allow-insecure-network", "--monitor",
           "tcp://" + link_.addr_a + ":5560"});
  EXPECT_TRUE(ExitedWith(busy, 2)) << busy_text;
  EXPECT_THAT(busy_text, HasSubstr("cannot bind")) << busy_text;
  // relay-monitor refuses what is not an endpoint, as bad usage.
  auto monitor = Spawn(*a_, {"broker/relay-monitor", "127.0.0.1:5556"});
  const int ms = monitor->WaitExit(milliseconds(10000));
  EXPECT_TRUE(ExitedWith(ms, 2)) << monitor->Transcript();
  EXPECT_THAT(monitor->Transcript(), HasSubstr("is not tcp://HOST:PORT"));
}

// A driver without the key of a keyed relay-broker cannot complete the CURVE
// handshake; it gives up after 10 s with a message that names the likely
// cause (its sends once blocked for ever on the refused connection).
TEST_F(StandaloneBrokerTest, DriverWithoutTheKeyGivesUp) {
  const std::string good = MakeKey("good");
  ASSERT_FALSE(HasFailure());
  Broker({"--key", good});
  Spawned& driver = DriverOnB({}, 1, 500, 0);
  const int status = driver.WaitExit(milliseconds(20000));
  ASSERT_NE(status, -1) << "driver without the key still waits after 20 s\n" << All();
  EXPECT_TRUE(ExitedWith(status, 1)) << DescribeStatus(status) << "\n" << All();
  EXPECT_THAT(driver.out(), HasSubstr("no answer from the broker at " + url_ +
                                      " within 10 s (is it running? same key?)"))
      << All();
}

}  // namespace
