// relay/control.h: control values that travel in messages.
#pragma once

#include <cstdint>

namespace relay {

// Values relay uses for end of stream, also usable by programs: a sink may put
// Control::eol to a Handler's queue to say that it is done. On the wire a Control
// is a msgpack ext value, so it never compares equal to a number.
enum class Control : std::uint8_t { poison = 0, eol = 1 };

// Returns "poison" or "eol".
const char* to_string(Control c) noexcept;

// Log levels for Actor::log().
enum class Level : std::uint8_t { trace, debug, info, warn, error, critical };

}  // namespace relay
