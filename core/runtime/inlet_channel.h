// relay/runtime/inlet_channel.h: how the driver runs relay::Inlet's side in
// the main process (see inlet.h). Each function does nothing for an actor
// that is not an Inlet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "relay/actor.h"

namespace relay::internal {

bool is_inlet(const Actor& actor);
// The local socket between the main process and Inlet `id`'s process.
std::string inlet_endpoint(const std::string& data_prefix, std::uint32_t id);
// Before the fork: where the Inlet's process binds, and the main process
// connects, and the Relay's maxsize (which bounds how far ahead it may be).
void set_inlet_endpoint(Actor& actor, const std::string& endpoint,
                        std::optional<std::size_t> maxsize);
// After every fork, before the Handler runs: send() works from now on.
// Without a Handler the stream ends at once.
void begin_inlet(Actor& actor, bool has_handler);
// After the Handler's run() returned: closes the stream if it is open.
void finish_inlet(Actor& actor);
// After the run: send() throws from now on.
void end_inlet(Actor& actor);

}  // namespace relay::internal
