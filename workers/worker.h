// workers/worker.h: the runtime that hosts actors on another host.
//
// A program started with --relay-worker tcp://DRIVER:PORT runs as a worker:
// its Relay::start() calls run_worker() instead of driving the run. The worker
// joins the driver's broker, waits to be assigned actors, forks them (they
// then join the broker themselves over tcp), reports each one's exit, and
// pings the broker. It stops its actors when the broker says abort, and when
// the broker falls silent for kHostTimeout (driver gone or network cut).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "relay/internal/plan.h"
#include "relay/internal/process.h"
#include "relay/internal/security.h"

namespace relay::workers {

struct WorkerConfig {
  std::string driver;               // tcp://HOST:PORT of the driver's broker
  std::vector<std::string> labels;  // matched by Placement::label()
  std::optional<internal::CurveKey> key;
  std::chrono::milliseconds join_wait{60000};  // how long to wait for the driver
};

// Joins the driver and runs the actors it assigns. `plan` is this program's
// plan (the same as the driver's); run_worker() fills in its endpoints.
// `fork_actor` forks the process of one actor and returns its handle (the
// one its Actor object holds, so that pid(), is_alive() and join() work in
// the worker too); run_worker() reaps it. Returns
// when the run ended well; throws relay::Error otherwise.
void run_worker(internal::Plan& plan, const WorkerConfig& config,
                const std::function<std::shared_ptr<internal::ProcessHandle>(std::uint32_t id)>&
                    fork_actor,
                const std::shared_ptr<spdlog::logger>& logger);

// The address of this host on the route to `endpoint`'s host (a tcp:// URL).
std::string local_address_towards(const std::string& endpoint);

}  // namespace relay::workers
