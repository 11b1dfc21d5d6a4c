// relay/runtime/overrides.h: whether an actor overrides loop() or recv().
#pragma once

namespace relay {
class Actor;
namespace internal {

// Whether the actor's class overrides Actor::loop() / Actor::recv(). Used by
// Relay::start() to refuse a source without loop() or a receiver without
// recv() before any process starts.
bool overrides_loop(const Actor& actor);
bool overrides_recv(const Actor& actor);

}  // namespace internal
}  // namespace relay
