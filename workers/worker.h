// workers/worker.h: the runtime that hosts actors on another host.
//
// A program started with --relay-worker tcp://BROKER:PORT runs as a worker:
// its Relay::start() calls run_worker() instead of driving the run. The worker
// joins the broker (the driver's, or a standalone relay-broker), waits to be
// assigned actors, forks them (they then join the broker themselves over
// tcp), reports each one's exit, and pings the broker. It stops its actors
// when the broker says abort, and when the broker falls silent for
// kHostTimeout (driver gone or network cut). A driver that uses a standalone
// relay-broker takes the same part for the actors placed on its own host.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "relay/internal/frames.h"
#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/internal/security.h"
#include "relay/internal/wire.h"
#include "relay/runtime/spawner.h"

namespace relay::workers {

struct WorkerConfig {
  std::string driver;               // tcp://HOST:PORT of the broker to join
  std::vector<std::string> labels;  // matched by Placement::label()
  std::optional<internal::CurveKey> key;
  std::chrono::milliseconds join_wait{60000};  // how long to wait for an answer
};

// What a driver adds when it joins a standalone relay-broker as a member: it
// sends its plan with the join, and takes the frames only a driver gets.
struct DriverPart {
  std::string plan;  // internal::pack_broker_plan() of the driver's plan
  // The frames only a driver gets (qput, dlog, rended, result; not abort, end
  // or pong), on the serving thread; throws EncodeError for one it cannot use.
  std::function<void(const internal::ControlFrame& frame)> on_frame;
  // Descriptors watched while serving, and what to do when one is readable.
  std::vector<std::pair<int, std::function<void()>>> watches;
  // Set by the session while it serves: sends a frame to the broker (only
  // from on_frame or a watch callback).
  std::function<void(const std::string& frame)> send;
  // Called about every 200 ms while joining; may throw to give up (Ctrl-C).
  std::function<void()> while_joining;
};

// One host's part in a run: join the broker, fork the actors it assigns,
// then serve (report exits, ping, stop the actors on abort) until the run
// ends. join_and_fork() runs before any thread of the caller's exists (fork);
// serve() may run on a thread of its own.
class WorkerSession {
 public:
  using ForkActor = std::function<std::shared_ptr<internal::ProcessHandle>(std::uint32_t id)>;
  // Supervision: runs actor `id` as `incarnation` in a process the session's
  // spawner forked (runtime/spawner.h); never returns.
  using RunActor = std::function<void(std::uint32_t id, std::uint32_t incarnation)>;
  // `plan` is this program's plan (the same as the driver's); the session
  // fills in its endpoints. `driver` (may be null) makes this the driver.
  WorkerSession(internal::Plan& plan, WorkerConfig config, std::shared_ptr<spdlog::logger> logger,
                DriverPart* driver = nullptr);
  // Joins, waits for the assignment and forks those actors with `fork_actor`,
  // which returns the handle its Actor object holds (so that pid(),
  // is_alive() and join() work); the session reaps them. Throws relay::Error.
  // With supervised groups in the plan and `run_actor` given, it first forks
  // a spawner, so that the broker can have any actor started here later
  // (`spawn`: a restart, or an actor re-placed from a lost host).
  void join_and_fork(const ForkActor& fork_actor, const RunActor& run_actor = {});
  ~WorkerSession();
  // Returns when the run ended well; throws relay::Error otherwise. Every
  // actor it forked has been reaped when it returns or throws.
  void serve();

 private:
  void serve_until_end();
  void kill_and_reap() noexcept;
  // Supervision: starts actor `id` as `incarnation` through the spawner;
  // false (logged) if it could not.
  bool spawn(std::uint32_t id, std::uint32_t incarnation);
  // The wexit frame for the end of ids_[i].
  internal::WExit exit_frame(std::size_t i);
  std::string peer() const;
  internal::Plan& plan_;
  WorkerConfig config_;
  std::shared_ptr<spdlog::logger> logger_;
  DriverPart* driver_;
  std::string rid_;
  std::string address_;
  std::vector<std::uint32_t> ids_;
  std::vector<std::shared_ptr<internal::ProcessHandle>> handles_;
  std::vector<std::uint32_t> incarnations_;  // by index into ids_
  std::unique_ptr<internal::Spawner> spawner_;
  bool inflight_ = false;  // this session made the in-flight table
  std::size_t running_ = 0;
  std::string head_;  // the last exit_frame()'s message head
};

// A worker's whole part: join_and_fork() then serve().
void run_worker(internal::Plan& plan, const WorkerConfig& config,
                const WorkerSession::ForkActor& fork_actor,
                const WorkerSession::RunActor& run_actor,
                const std::shared_ptr<spdlog::logger>& logger);

// The address of this host on the route to `endpoint`'s host (a tcp:// URL).
std::string local_address_towards(const std::string& endpoint);

}  // namespace relay::workers
