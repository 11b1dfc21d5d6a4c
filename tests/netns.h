// tests/netns.h: several hosts on one machine, for multi-host tests.
//
// A Netns is a network namespace of its own (a "host": its own interfaces,
// addresses, ports and abstract unix sockets), made on construction and
// deleted on destruction. Connect() joins two of them with a veth pair and
// addresses 10.99.N.1/24 and 10.99.N.2/24; nothing is created in the machine's
// own namespace, and no address outside 10.99.0.0/16 is used, so a test can
// only talk to hosts it made itself.
//
//   Netns a, b;                            // throws std::runtime_error on failure
//   Link link = Connect(a, b);             // link.addr_a == "10.99.N.1"
//   auto p = Spawn(b, {"tests/prog", "--to", link.addr_a});
//   p->WaitForOutput("ready", 10s);        // stdout and stderr are captured
//   SetLinkDown(b, link.veth_b);           // a network cut
//
// Needs root and a test tagged "no-sandbox" (`ip netns add` fails inside
// Bazel's sandbox). Destructors never throw and are what cleans up when an
// assertion fails; a namespace left by a test process that died without them
// (the watchdog's _exit) is deleted by the next Netns made on the machine.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace relay::testing {

// Runs `ip args...` (found in /usr/sbin, /sbin or /usr/bin: Bazel's test PATH
// has no sbin). Returns an empty string on success, else the command line and
// what `ip` printed.
std::string RunIp(const std::vector<std::string>& args);

// One network namespace, "relaytest-<pid>-<k>", with `lo` up.
class Netns {
 public:
  // Creates the namespace. Throws std::runtime_error with `ip`'s text.
  Netns();
  // Deletes the namespace (its veth ends, and their peers, go with it).
  // Processes still inside keep it alive until they end: kill them first
  // (a Spawned is destroyed before the Netns it runs in when declared after it).
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const noexcept { return name_; }
  // /run/netns/<name>: setns() on it enters the namespace.
  std::string path() const { return "/run/netns/" + name_; }

  // Runs `fn()` with the calling thread inside the namespace, then returns to
  // the namespace it was in. Sockets made inside stay in the namespace, so a
  // test can listen on a host's address from its own process. Throws
  // std::runtime_error if the namespace cannot be entered.
  template <class F>
  auto Within(F&& fn) {
    Enter();
    struct Back {
      const Netns* self;
      ~Back() { self->Leave(); }
    } back{this};
    return fn();
  }

 private:
  void Enter() const;
  void Leave() const noexcept;
  std::string name_;
  mutable int saved_ = -1;  // this thread's namespace while inside Within()
};

// A veth pair between two namespaces.
struct Link {
  std::string veth_a;  // in a, holding addr_a/24
  std::string veth_b;  // in b, holding addr_b/24
  std::string addr_a;  // "10.99.N.1"
  std::string addr_b;  // "10.99.N.2"
};

// Connects `a` and `b` with a veth pair created directly inside them (names
// "rt<pid>-<k>a"/"b", at most 15 characters), addresses 10.99.N.1/24 in `a`
// and 10.99.N.2/24 in `b`, both ends up. Deleting either namespace deletes the
// pair. Throws std::runtime_error with `ip`'s text.
Link Connect(const Netns& a, const Netns& b);

// `ip link set VETH down` inside `ns`: the pair carries nothing more, and
// nothing tells the other end's sockets (a silent network cut). Returns an
// empty string on success, else the error text.
std::string SetLinkDown(const Netns& ns, const std::string& veth);
std::string SetLinkUp(const Netns& ns, const std::string& veth);

// A program started inside a namespace, in a process group of its own, with
// its stdout and stderr captured. Every process it starts (found by an
// environment variable they inherit) is killed and reaped, and its pipes
// closed, on destruction.
class Spawned {
 public:
  ~Spawned();
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  pid_t pid() const noexcept { return pid_; }
  // What the program wrote so far (call Pump(), or one of the waits, first).
  const std::string& out() const noexcept { return out_; }
  const std::string& err() const noexcept { return err_; }
  // Both, labelled, for failure messages.
  std::string Transcript() const;

  // Reads what every live Spawned has written, without blocking (so that no
  // program blocks on a full pipe while the test waits on another).
  static void PumpAll();

  // Waits at most `limit` until stdout holds `needle`; returns whether it does.
  bool WaitForOutput(const std::string& needle, std::chrono::milliseconds limit);
  // Waits at most `limit` for the program to end; returns its wait status, or
  // -1 if it still runs. Reads the rest of its output once it ended.
  int WaitExit(std::chrono::milliseconds limit);
  // Whether it has ended (reaped by WaitExit()).
  bool ended() const noexcept { return ended_; }
  // The wait status once ended.
  int status() const noexcept { return status_; }

  // SIGKILL to the program only (not its group): its children are left to
  // notice by themselves, as when a host's main process dies.
  void KillMain();
  // SIGKILL to every process it started (its group, and any that left the
  // group), then reaps the program. Safe to call twice.
  void KillAll() noexcept;
  // The processes still running that it started, the program included
  // (those carrying its environment token).
  std::vector<pid_t> Remaining() const;

 private:
  friend std::unique_ptr<Spawned> Spawn(const Netns&, const std::vector<std::string>&,
                                        const std::vector<std::string>&, const std::string&);
  Spawned() = default;
  void Pump();
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::string token_;
  bool ended_ = false;
  int status_ = 0;
};

// Starts `argv` (argv[0] is the path, relative to the current directory or
// absolute) inside `ns`, with this process's environment plus `env`
// ("NAME=value" entries). A non-empty `hostname` gives the program a UTS
// namespace of its own with that host name (namespaces made by Netns share the
// machine's otherwise). Throws std::runtime_error if it cannot fork; a program
// that cannot be set up or executed exits with 127 after writing why to stderr.
std::unique_ptr<Spawned> Spawn(const Netns& ns, const std::vector<std::string>& argv,
                               const std::vector<std::string>& env = {},
                               const std::string& hostname = {});

// Status text for failure messages: "exited with 1", "killed by signal 9".
std::string DescribeStatus(int status);

}  // namespace relay::testing
