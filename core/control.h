// relay/control.h: control values that travel in messages.
#pragma once

#include <cstdint>

namespace relay {

// The seed's control values, for programs to send and put. relay itself never
// sends either: it ends streams with frames of its own, so a receiver's loop()
// ends when its senders have ended, whatever the messages said.
//   eol     "done": a sink puts Control::eol to a Handler's queue once it has
//           finished, and the Handler's run() returns when it sees it.
//   poison  the seed's poison pill, kept as a value: it arrives in recv() like
//           any message (m.is(Control::poison)), for programs that want to
//           tell an actor to stop early or mark the last item themselves.
// On the wire a Control is a msgpack ext value, so it never compares equal to
// a number.
enum class Control : std::uint8_t { poison = 0, eol = 1 };

// Returns "poison" or "eol".
const char* to_string(Control c) noexcept;

// Log levels for Actor::log().
enum class Level : std::uint8_t { trace, debug, info, warn, error, critical };

}  // namespace relay
