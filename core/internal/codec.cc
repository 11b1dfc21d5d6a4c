#include "relay/internal/codec.h"

#include <cxxabi.h>

#include <algorithm>
#include <new>

namespace relay::internal {

std::string demangle(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  std::string s = status == 0 && name ? name.get() : type.name();
  // The standard library's spelling of common types is unreadable in an error.
  static constexpr std::pair<std::string_view, std::string_view> kShort[] = {
      {"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
       "std::string"},
      {"std::basic_string_view<char, std::char_traits<char> >", "std::string_view"},
  };
  for (const auto& [from, to] : kShort) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at)) {
      s.replace(at, from.size(), to);
      at += to.size();
    }
  }
  return s;
}

std::string wire_type(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER: return "positive integer";
    case msgpack::type::NEGATIVE_INTEGER: return "negative integer";
    case msgpack::type::FLOAT32: return "float32";
    case msgpack::type::FLOAT64: return "float64";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array of " + std::to_string(o.via.array.size);
    case msgpack::type::MAP: return "map of " + std::to_string(o.via.map.size);
    case msgpack::type::EXT:
      if (o.via.ext.type() == kControlExt) return "relay::Control";
      return "ext " + std::to_string(o.via.ext.type());
  }
  return "unknown";
}

void Buffer::grow(std::size_t need) {
  std::size_t cap = std::max<std::size_t>({need, capacity_ * 2, 256});
  char* p = static_cast<char*>(std::realloc(data_, cap));
  if (p == nullptr) throw std::bad_alloc();
  data_ = p;
  capacity_ = cap;
}

namespace {

// Values of at least this many bytes are not copied into the zone.
constexpr std::size_t kReferenceAtLeast = 256;

bool reference_large(msgpack::type::object_type, std::size_t length, void*) {
  return length >= kReferenceAtLeast;
}

bool reference_none(msgpack::type::object_type, std::size_t, void*) { return false; }

// No msgpack value takes less than one byte, a map entry less than two: a
// frame of n bytes can declare at most n elements. Nesting is bounded too, so
// that a hostile frame cannot exhaust the stack.
msgpack::unpack_limit limits_for(std::size_t size) {
  return msgpack::unpack_limit(size, size / 2, size, size, size, 64);
}

}  // namespace

msgpack::object decode_value(msgpack::zone& zone, const char* data, std::size_t size,
                             bool reference) {
  std::size_t offset = 0;
  msgpack::object o;
  try {
    o = msgpack::unpack(zone, data, size, offset, reference ? reference_large : reference_none,
                        nullptr, limits_for(size));
  } catch (const std::exception& e) {
    throw EncodeError(std::string("malformed msgpack frame (") + std::to_string(size) +
                      " bytes): " + e.what());
  }
  if (offset != size) {
    throw EncodeError("malformed msgpack frame: " + std::to_string(size - offset) +
                      " bytes after the value");
  }
  return o;
}

std::shared_ptr<const Payload> decode_message(const char* data, std::size_t size,
                                              std::shared_ptr<void> owner) {
  auto p = std::make_shared<Payload>();
  p->array = decode_value(p->zone, data, size, owner != nullptr);
  if (p->array.type != msgpack::type::ARRAY) {
    throw EncodeError("malformed message: expected a msgpack array, got " +
                      wire_type(p->array));
  }
  p->bytes = std::move(owner);
  return p;
}

}  // namespace relay::internal
