// relay-monitor --http against a real run (issue 13, point 1): a headless
// Chromium renders the page and the test reads its DOM, promtool checks a
// scrape of /metrics, and malformed or oversized requests get 4xx while the
// monitor keeps serving. Two targets run this file: dashboard_test (all but
// the browser) and dashboard_browser_test (the browser, not under the
// sanitizers: Chromium is not built with their runtimes).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "relay/relay.h"
#include "tests/testing.h"

extern char** environ;

namespace {

using relay::testing::ProcessTest;
using relay::testing::SharedBlock;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;

std::string HostName() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp ? tmp : "/tmp";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts `argv` (searched in PATH) in a process group of its own, stdout and
// stderr to the files given; returns its pid or -1.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? pid : -1;
}

// Waits at most `limit` for `pid`; returns its exit status, or -1 after
// killing its whole process group (it ran over, or died of a signal).
int Reap(pid_t pid, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ::kill(-pid, SIGKILL);  // what it left behind in its group
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// Runs `argv` to its end (at most `limit`); returns its exit status and
// puts its stdout in `out`.
int RunProgram(const std::vector<std::string>& argv, std::string& out, std::chrono::seconds limit,
               const std::string& name) {
  const std::string out_path = TmpDir() + "/" + name + ".out";
  const std::string err_path = TmpDir() + "/" + name + ".err";
  const pid_t pid = Spawn(argv, out_path, err_path);
  if (pid < 0) return -1;
  const int status = Reap(pid, limit);
  out = Slurp(out_path);
  if (status != 0) std::cerr << argv[0] << " said:\n" << Slurp(err_path) << '\n';
  return status;
}

// Sends `request` as is to 127.0.0.1:port; returns the reply (what came
// back before the server closed, or 5 s passed), "" if it could not connect.
std::string Raw(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    // A server may answer (and close) before it has read everything sent.
    for (std::size_t at = 0; at < request.size();) {
      const ssize_t n = ::send(fd, request.data() + at, request.size() - at, MSG_NOSIGNAL);
      if (n <= 0) break;
      at += static_cast<std::size_t>(n);
    }
    // Until the server closes or one whole reply is in: it may keep the
    // connection open after an error reply.
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
      reply.append(buf, n);
      const std::size_t end = reply.find("\r\n\r\n");
      const std::size_t length = reply.find("Content-Length: ");
      if (end != std::string::npos && length != std::string::npos && length < end &&
          reply.size() >= end + 4 + std::stoul(reply.substr(length + 16))) {
        break;
      }
    }
  }
  ::close(fd);
  return reply;
}

std::string Get(int port, const std::string& path) {
  return Raw(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// The body of a 200 reply, or "".
std::string Body(const std::string& reply) {
  if (reply.rfind("HTTP/1.1 200 ", 0) != 0) return "";
  const std::size_t at = reply.find("\r\n\r\n");
  return at == std::string::npos ? "" : reply.substr(at + 4);
}

// The number right after the first `prefix` in `text`, or -1 if there is
// none. (No <regex>: GCC 12 warns falsely inside it under the sanitizers.)
long long NumberAfter(const std::string& text, const std::string& prefix) {
  const std::size_t at = text.find(prefix);
  if (at == std::string::npos) return -1;
  const std::size_t begin = at + prefix.size();
  std::size_t end = begin;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
  return end == begin || end - begin > 18 ? -1 : std::stoll(text.substr(begin, end - begin));
}

// Polls until `ok()` or `limit`; returns whether it became true.
bool WaitFor(const std::function<bool()>& ok, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ok();
}

// A relay-monitor --http following `endpoint`, killed (group and all) and
// reaped when it goes.
class Monitor {
 public:
  Monitor(const std::string& endpoint, const std::string& name,
          std::vector<std::string> extra = {}) {
    err_ = TmpDir() + "/" + name + ".err";
    std::vector<std::string> argv{
        "broker/relay-monitor", "--http", "127.0.0.1:0", "--timeout", "30", "--linger", "60"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(endpoint);
    pid_ = Spawn(argv, TmpDir() + "/" + name + ".out", err_);
    // "relay-monitor: serving http://127.0.0.1:PORT/" on stderr.
    WaitFor(
        [&] {
          port_ = static_cast<int>(NumberAfter(Slurp(err_), "serving http://127.0.0.1:"));
          return port_ > 0;
        },
        std::chrono::seconds(10));
  }
  ~Monitor() { stop(); }
  // Kills it; returns whether it was still running (it lingers 60 s).
  bool stop() {
    if (pid_ <= 0) return false;
    int status = 0;
    const bool running = ::waitpid(pid_, &status, WNOHANG) == 0;
    ::kill(-pid_, SIGKILL);
    if (running) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return running;
  }
  int port() const { return port_; }
  std::string stderr_text() const { return Slurp(err_); }

 private:
  pid_t pid_ = -1;
  int port_ = -1;
  std::string err_;
};

// A source that waits for cell 0, then sends (and logs every 100th) until
// cell 1 is set or 40 s pass.
class Source : public relay::Actor {
 public:
  explicit Source(SharedBlock& shm) : shm_(shm) {}
  void loop() override {
    for (int i = 0; i < 2000 && shm_.at(0).load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const auto until = Clock::now() + std::chrono::seconds(40);
    for (int i = 0; shm_.at(1).load() == 0 && Clock::now() < until; ++i) {
      send(i);
      if (i % 100 == 0) log(relay::Level::warn, "sent {}", i);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

 private:
  SharedBlock& shm_;
};

class Forward : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m.get<int>(0)); }
};

class Sink : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// During the run: `during(endpoint)` once counts have reached the monitor;
// then it lets the source end.
class During : public relay::Handler {
 public:
  During(relay::Relay& relay, SharedBlock& shm, std::function<void(int port)> during)
      : relay_(relay), shm_(shm), during_(std::move(during)) {}
  void run() override {
    monitor = std::make_unique<Monitor>(relay_.monitor_endpoint(), "monitor");
    if (monitor->port() > 0) {
      // Subscriptions take a moment to reach the publisher.
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      shm_.at(0).store(1);
      counting = WaitFor(
          [&] {
            return NumberAfter(Body(Get(monitor->port(), "/api/state")),
                               "\"group\":\"sink\",\"name\":\"Sink-0\",\"sent\":0,"
                               "\"received\":") > 0;
          },
          std::chrono::seconds(15));
      for (relay::Actor* a : actors) pids[a->name()] = a->pid().value_or(0);
      if (counting) during_(monitor->port());
    }
    shm_.at(0).store(1);
    shm_.at(1).store(1);
  }
  std::unique_ptr<Monitor> monitor;
  bool counting = false;
  std::vector<relay::Actor*> actors;  // whose pids to note
  std::map<std::string, int> pids;    // by actor name, while it ran

 private:
  relay::Relay& relay_;
  SharedBlock& shm_;
  std::function<void(int)> during_;
};

// Renders http://127.0.0.1:port/ in headless Chromium after the page has
// polled for a while; returns the DOM.
std::string RenderedPage(int port, const std::string& name) {
  std::string dom;
  const int status =
      RunProgram({"chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
                  "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage",
                  "--user-data-dir=" + TmpDir() + "/chromium-" + name, "--virtual-time-budget=3000",
                  "--dump-dom", "http://127.0.0.1:" + std::to_string(port) + "/"},
                 dom, std::chrono::seconds(45), "chromium-" + name);
  EXPECT_EQ(status, 0) << "chromium failed";
  return dom;
}

using DashboardTest = ProcessTest;

// A browser shows the graph and counts while the run goes on, and its end
// after.
TEST_F(DashboardTest, BrowserShowsGraphCountsAndTheEnd) {
  SetWatchdog(std::chrono::seconds(120));
  SharedBlock shm;
  Source source(shm);
  Forward forward;
  Sink sink;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", source), relay::group("mid", forward),
                relay::group("sink", sink));
  std::string during;
  During handler(relay, shm, [&](int port) { during = RenderedPage(port, "during"); });
  handler.actors = {&source, &forward, &sink};
  relay.start(&handler);
  ASSERT_TRUE(handler.monitor && handler.monitor->port() > 0) << handler.monitor->stderr_text();
  ASSERT_TRUE(handler.counting) << "the sink's counts never reached /api/state";

  // While it ran: every group drawn, the edges between them, non-zero
  // counts for the sink, and the warnings in the log tail.
  EXPECT_THAT(during, HasSubstr("<span id=\"status\" class=\"running\">running</span>"));
  for (const char* g : {"src", "mid", "sink"}) {
    EXPECT_THAT(during, HasSubstr(std::string("class=\"group\" data-group=\"") + g + "\""));
  }
  // (The serializer may escape ">" in an attribute.)
  EXPECT_TRUE(during.find("data-edge=\"'src' -> 'mid'\"") != std::string::npos ||
              during.find("data-edge=\"'src' -&gt; 'mid'\"") != std::string::npos);
  const std::string sink_row = "data-actor=\"sink/Sink-0\" data-sent=\"0\" data-received=\"";
  ASSERT_GT(NumberAfter(during, sink_row), 0) << during;
  EXPECT_THAT(during.substr(during.find(sink_row)), HasSubstr("\" data-state=\"running\""));
  EXPECT_GE(NumberAfter(during, "warning [src] (Source-0) sent "), 0);
  // Each actor's host and pid, as the plan gave them.
  for (relay::Actor* a : std::vector<relay::Actor*>{&source, &forward, &sink}) {
    const std::string row = "data-actor=\"" + a->group() + "/" + a->name() + "\"";
    ASSERT_NE(during.find(row), std::string::npos) << during;
    const std::string rest = during.substr(during.find(row));
    EXPECT_THAT(rest,
                HasSubstr("data-host=\"" + HostName() + "\" data-pid=\"" +
                          std::to_string(handler.pids[a->name()]) + "\" data-restarts=\"0\""));
  }
  EXPECT_THAT(during, HasSubstr("<th class=\"t\">host</th><th>pid</th>"));

  // After the end the monitor lingers, and the page says how it ended.
  const int port = handler.monitor->port();
  ASSERT_TRUE(WaitFor(
      [&] {
        return Body(Get(port, "/api/state")).find("\"end\":{\"ok\":true") != std::string::npos;
      },
      std::chrono::seconds(10)));
  const std::string after = RenderedPage(port, "after");
  EXPECT_THAT(after, HasSubstr("<span id=\"status\" class=\"ended\">ended well</span>"));
  ASSERT_GT(NumberAfter(after, sink_row), 0) << after;
  EXPECT_THAT(after.substr(after.find(sink_row)), HasSubstr("\" data-state=\"ended\""));
  EXPECT_THAT(after.substr(after.find(sink_row)),
              HasSubstr("data-host=\"" + HostName() + "\" data-pid=\"" +
                        std::to_string(handler.pids["Sink-0"]) + "\""));
  EXPECT_TRUE(handler.monitor->stop()) << "the monitor did not linger after the end";
}

// A scrape of /metrics, during the run and after its end, passes promtool
// and carries the run's counters.
TEST_F(DashboardTest, MetricsPassPromtool) {
  SetWatchdog(std::chrono::seconds(90));
  SharedBlock shm;
  Source source(shm);
  Forward forward;
  Sink sink;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", source), relay::group("mid", forward),
                relay::group("sink", sink));
  std::string during;
  During handler(relay, shm, [&](int port) { during = Body(Get(port, "/metrics")); });
  relay.start(&handler);
  ASSERT_TRUE(handler.monitor && handler.monitor->port() > 0) << handler.monitor->stderr_text();
  ASSERT_TRUE(handler.counting) << "the sink's counts never reached /api/state";
  const int port = handler.monitor->port();
  ASSERT_TRUE(WaitFor(
      [&] { return Body(Get(port, "/metrics")).find("relay_run_up 0\n") != std::string::npos; },
      std::chrono::seconds(10)));
  const std::string after = Body(Get(port, "/metrics"));

  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"during", during}, {"after", after}}) {
    const std::string path = TmpDir() + "/metrics-" + name + ".txt";
    std::ofstream(path) << text;
    std::string out;
    EXPECT_EQ(RunProgram({"/bin/sh", "-c", "promtool check metrics < '" + path + "'"}, out,
                         std::chrono::seconds(20), "promtool-" + name),
              0)
        << text;
  }
  EXPECT_THAT(during, HasSubstr("relay_run_up 1\n"));
  const std::string sink_received =
      "\nrelay_messages_received_total{group=\"sink\",actor=\"Sink-0\",host=\"" + HostName() +
      "\"} ";
  EXPECT_GT(NumberAfter(during, sink_received), 0) << during;
  EXPECT_THAT(after, HasSubstr("# TYPE relay_messages_sent_total counter\n"));
  EXPECT_THAT(after, HasSubstr("\nrelay_run_up 0\n"));
  EXPECT_THAT(after, HasSubstr("\nrelay_run_ok 1\n"));
  // At the end every message the source sent has arrived at the sink.
  const long long sent =
      NumberAfter(after, "\nrelay_edge_messages_sent_total{edge=\"'src' -> 'mid'\"} ");
  EXPECT_GT(sent, 0) << after;
  EXPECT_EQ(NumberAfter(after, sink_received), sent);
  // Actors are not restarted: every one at 0, with its host.
  for (const char* actor : {"group=\"src\",actor=\"Source-0\"", "group=\"mid\",actor=\"Forward-0\"",
                            "group=\"sink\",actor=\"Sink-0\""}) {
    EXPECT_EQ(NumberAfter(after, std::string("\nrelay_actor_restarts_total{") + actor + ",host=\"" +
                                     HostName() + "\"} "),
              0)
        << after;
  }
  EXPECT_THAT(after, HasSubstr("# TYPE relay_actor_restarts_total counter\n"));
  EXPECT_THAT(after, HasSubstr("\nrelay_edge_backpressure{edge=\"'src' -> 'mid'\"} 0\n"));
  // 1 warning per 100 messages sent, from 0.
  EXPECT_EQ(NumberAfter(after, "\nrelay_log_records_total{level=\"warning\"} "), (sent + 99) / 100);
}

// Forwards each number; aborts the first time any of its kind sees
// `victim` (cell 2 counts the crashes).
class CrashOnce : public relay::Actor {
 public:
  CrashOnce(SharedBlock& shm, int victim) : shm_(shm), victim_(victim) {}
  void recv(const relay::Message& m) override {
    long long none = 0;
    if (m.get<int>(0) == victim_ && shm_.at(2).compare_exchange_strong(none, 1)) std::abort();
    send(m.get<int>(0));
  }

 private:
  SharedBlock& shm_;
  int victim_;
};

// The samples of a scrape, by series ("name{labels}").
std::map<std::string, long long> Samples(const std::string& text) {
  std::map<std::string, long long> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const std::size_t space = line.rfind(' ');
    if (line.empty() || line[0] == '#' || space == std::string::npos) continue;
    out[line.substr(0, space)] = std::atoll(line.c_str() + space + 1);
  }
  return out;
}

// Every counter (a series ending in _total) of `now` that is lower than in
// `before`, as "series: before -> now".
std::vector<std::string> CountersThatWentBack(const std::map<std::string, long long>& before,
                                              const std::map<std::string, long long>& now) {
  std::vector<std::string> back;
  for (const auto& [series, value] : now) {
    const std::string name = series.substr(0, series.find('{'));
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0) continue;
    const auto it = before.find(series);
    if (it != before.end() && value < it->second) {
      back.push_back(series + ": " + std::to_string(it->second) + " -> " + std::to_string(value));
    }
  }
  return back;
}

// Supervision: an actor of a supervised group crashes and is started again
// while /metrics is scraped. No counter ever goes down between two scrapes
// (Prometheus' rate() would read a drop as a counter reset), and at the end
// every edge's sent equals its received, the sink's received and the
// source's sent, with nothing waiting and the crashed actor's restart
// counted.
TEST_F(DashboardTest, MetricsStayMonotonicOverARestart) {
  SetWatchdog(std::chrono::seconds(120));
  SharedBlock shm;
  Source source(shm);
  CrashOnce mid0(shm, 1000), mid1(shm, 1000);
  Sink sink;
  relay::Relay relay;
  relay.monitor("tcp://127.0.0.1:*");
  relay.connect(relay::group("src", source), relay::group("mid", mid0, mid1),
                relay::group("sink", sink));
  relay.restart("mid");
  const std::string host = HostName();
  auto restarts = [&](const std::map<std::string, long long>& samples) {
    long long n = 0;
    for (const char* actor : {"CrashOnce-0", "CrashOnce-1"}) {
      const auto it = samples.find("relay_actor_restarts_total{group=\"mid\",actor=\"" +
                                   std::string(actor) + "\",host=\"" + host + "\"}");
      if (it != samples.end()) n += it->second;
    }
    return n;
  };
  std::vector<std::string> went_back;
  int scrapes = 0;
  long long restarts_seen = 0;
  During handler(relay, shm, [&](int port) {
    // Until the restart, and for a second after it (at most 30 s).
    std::map<std::string, long long> before = Samples(Body(Get(port, "/metrics")));
    std::optional<Clock::time_point> restarted;
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until &&
           (!restarted || Clock::now() - *restarted < std::chrono::seconds(1))) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const std::map<std::string, long long> now = Samples(Body(Get(port, "/metrics")));
      if (now.empty()) continue;
      ++scrapes;
      for (std::string& b : CountersThatWentBack(before, now)) went_back.push_back(std::move(b));
      restarts_seen = restarts(now);
      if (restarts_seen > 0 && !restarted) restarted = Clock::now();
      before = now;
    }
  });
  relay.start(&handler);
  ASSERT_TRUE(handler.monitor && handler.monitor->port() > 0) << handler.monitor->stderr_text();
  ASSERT_TRUE(handler.counting) << "the sink's counts never reached /api/state";
  ASSERT_EQ(shm.at(2).load(), 1) << "a mid actor should have crashed";
  EXPECT_EQ(restarts_seen, 1) << "the restart never showed in /metrics";
  EXPECT_GT(scrapes, 10);
  EXPECT_THAT(went_back, ::testing::IsEmpty());

  const int port = handler.monitor->port();
  ASSERT_TRUE(WaitFor(
      [&] { return Body(Get(port, "/metrics")).find("relay_run_up 0\n") != std::string::npos; },
      std::chrono::seconds(10)));
  const std::map<std::string, long long> after = Samples(Body(Get(port, "/metrics")));
  ASSERT_EQ(after.count("relay_run_ok"), 1u);
  EXPECT_EQ(after.at("relay_run_ok"), 1);
  const std::string src =
      "relay_messages_sent_total{group=\"src\",actor=\"Source-0\",host=\"" + host + "\"}";
  const std::string sink_received =
      "relay_messages_received_total{group=\"sink\",actor=\"Sink-0\",host=\"" + host + "\"}";
  ASSERT_EQ(after.count(src), 1u) << Body(Get(port, "/metrics"));
  ASSERT_EQ(after.count(sink_received), 1u);
  const long long sent = after.at(src);
  EXPECT_GT(sent, 1000);  // past the number that crashed an actor
  EXPECT_EQ(after.at(sink_received), sent);
  for (const char* edge : {"'src' -> 'mid'", "'mid' -> 'sink'"}) {
    const std::string labels = std::string("{edge=\"") + edge + "\"}";
    for (const char* family :
         {"relay_edge_messages_sent_total", "relay_edge_messages_received_total"}) {
      const auto it = after.find(family + labels);
      ASSERT_NE(it, after.end()) << family << labels;
      EXPECT_EQ(it->second, sent) << family << labels;
    }
    EXPECT_EQ(after.at("relay_edge_messages_waiting" + labels), 0) << edge;
  }
  EXPECT_EQ(restarts(after), 1);
}

// Malformed and oversized requests get 4xx, unknown paths 404, and the
// monitor keeps serving the good ones in between.
TEST_F(DashboardTest, RefusesBadRequestsAndKeepsServing) {
  // No relay behind the endpoint: the server runs all the same.
  Monitor monitor("tcp://127.0.0.1:1", "bad-requests");
  ASSERT_GT(monitor.port(), 0) << monitor.stderr_text();
  const int port = monitor.port();
  const std::string big(10000, 'a');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"HTTP/1.1 404 ", "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"},
      {"HTTP/1.1 400 ", "GARBAGE\r\n\r\n"},
      {"HTTP/1.1 400 ", std::string("\x00\x01\x02\xff\r\n\r\n", 8)},
      {"HTTP/1.1 400 ", "GET / HTTP/9.9\r\nConnection: close\r\n\r\n"},
      {"HTTP/1.1 414 ", "GET /" + big + " HTTP/1.1\r\nConnection: close\r\n\r\n"},
      {"HTTP/1.1 400 ", "GET / HTTP/1.1\r\nX-Big: " + big + "\r\nConnection: close\r\n\r\n"},
      {"HTTP/1.1 405 ", "POST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"},
      {"HTTP/1.1 413 ",
       "POST / HTTP/1.1\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n" + big},
      {"HTTP/1.1 413 ",
       "GET /metrics HTTP/1.1\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n" + big},
      {"HTTP/1.1 431 ",
       [] {
         std::string r = "GET / HTTP/1.1\r\n";
         for (int i = 0; i < 500; ++i) r += "X-" + std::to_string(i) + ": a\r\n";
         return r + "\r\n";
       }()},
  };
  for (const auto& [status, request] : cases) {
    EXPECT_THAT(Raw(port, request), StartsWith(status)) << request.substr(0, 60);
    EXPECT_THAT(Get(port, "/api/state"), StartsWith("HTTP/1.1 200 "));
  }
  EXPECT_THAT(Body(Get(port, "/")), HasSubstr("<title>relay monitor</title>"));
  EXPECT_TRUE(monitor.stop()) << "the monitor died";
}

// --http on a non-loopback address without a key is refused (status 2).
TEST_F(DashboardTest, RefusesAnOpenAddressWithoutKey) {
  std::string out;
  const std::string err_path = TmpDir() + "/open.err";
  const pid_t pid = Spawn({"broker/relay-monitor", "--http", "0.0.0.0:0", "tcp://127.0.0.1:1"},
                          TmpDir() + "/open.out", err_path);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(Reap(pid, std::chrono::seconds(10)), 2);
  EXPECT_THAT(Slurp(err_path), HasSubstr("--http 0.0.0.0:0 is not a loopback address"));
  EXPECT_THAT(Slurp(err_path), HasSubstr("--allow-insecure-network"));
}

}  // namespace
