#include "relay/internal/frames.h"

#include <cstring>
#include <string>

namespace relay::internal {
namespace frames_internal {

void wrong_type(const std::string& expected, const msgpack::object& o) {
  throw EncodeError("expected " + expected + ", got " + wire_type(o));
}

void out_of_range(const msgpack::object& o, const std::string& type) {
  const std::string value = o.type == msgpack::type::NEGATIVE_INTEGER ? std::to_string(o.via.i64)
                                                                      : std::to_string(o.via.u64);
  throw EncodeError(value + ", which does not fit " + type);
}

std::string field_name(const char* names, std::size_t index) {
  const char* p = names;
  for (std::size_t i = 0; i < index; ++i) {
    p = std::strchr(p, ',');
    if (p == nullptr) return std::to_string(index);
    ++p;
  }
  while (*p == ' ') ++p;
  const char* end = std::strchr(p, ',');
  return end == nullptr ? std::string(p) : std::string(p, end);
}

Ctl read_kind(const msgpack::object& o) {
  std::uint8_t kind = 0;
  try {
    read_field(o, kind);
  } catch (const EncodeError& e) {
    throw EncodeError(std::string("control frame kind: ") + e.what());
  }
  return static_cast<Ctl>(kind);
}

const msgpack::object* frame_array(const msgpack::object& o, std::size_t fields, const char* name) {
  if (o.type != msgpack::type::ARRAY) {
    throw EncodeError(std::string(name) + ": expected an array, got " + wire_type(o));
  }
  if (o.via.array.size != fields) {
    throw EncodeError(std::string(name) + ": an array of " + std::to_string(o.via.array.size) +
                      ", expected " + std::to_string(fields));
  }
  return o.via.array.ptr;
}

template <std::size_t I = 0>
ControlFrame read_control(const msgpack::object& o, Ctl kind) {
  if constexpr (I == std::variant_size_v<ControlFrame>) {
    throw EncodeError("unknown control frame kind " + std::to_string(static_cast<unsigned>(kind)));
  } else {
    using F = std::variant_alternative_t<I, ControlFrame>;
    if (F::kKind != kind) return read_control<I + 1>(o, kind);
    ControlFrame frame{std::in_place_index<I>};
    read_frame(o, std::get<I>(frame));
    return frame;
  }
}

}  // namespace frames_internal

ControlFrame decode_control(const msgpack::object& o) {
  if (o.type != msgpack::type::ARRAY) {
    throw EncodeError("control frame: expected an array, got " + wire_type(o));
  }
  if (o.via.array.size == 0) throw EncodeError("control frame: an empty array");
  return frames_internal::read_control(o, frames_internal::read_kind(o.via.array.ptr[0]));
}

ControlFrame decode_control(msgpack::zone& zone, const char* data, std::size_t size) {
  return decode_control(decode_value(zone, data, size));
}

Ctl kind_of(const ControlFrame& frame) {
  return std::visit([](const auto& f) { return std::decay_t<decltype(f)>::kKind; }, frame);
}

const char* name_of(const ControlFrame& frame) {
  return std::visit([](const auto& f) { return std::decay_t<decltype(f)>::kName; }, frame);
}

}  // namespace relay::internal
