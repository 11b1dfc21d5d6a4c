#include "relay/runtime/overrides.h"

#include <cstdint>
#include <cstring>

#include "relay/actor.h"

namespace relay::internal {
namespace {

// The Itanium C++ ABI (GCC and Clang on Linux) represents a pointer to a
// virtual member function as {1 + offset of its vtable slot, this-adjustment}.
// Reading that slot in the object's vtable gives the final overrider, which we
// compare with the one in a class that overrides nothing.
template <class Pmf>
const void* final_overrider(const Actor& actor, Pmf pmf) {
  static_assert(sizeof(Pmf) == 2 * sizeof(std::uintptr_t), "Itanium ABI expected");
  std::uintptr_t words[2];
  std::memcpy(words, &pmf, sizeof words);
  if ((words[0] & 1) == 0) return reinterpret_cast<const void*>(words[0]);
  const char* object = reinterpret_cast<const char*>(&actor) + words[1];
  const void* const* vtable;
  std::memcpy(&vtable, object, sizeof vtable);
  return vtable[(words[0] - 1) / sizeof(void*)];
}

struct Plain final : Actor {};

const Plain& plain() {
  static const Plain* p = new Plain;
  return *p;
}

}  // namespace

bool overrides_loop(const Actor& actor) {
  return final_overrider(actor, &Actor::loop) != final_overrider(plain(), &Actor::loop);
}

bool overrides_recv(const Actor& actor) {
  return final_overrider(actor, &Actor::recv) != final_overrider(plain(), &Actor::recv);
}

}  // namespace relay::internal
