#include "relay/message.h"

#include <sstream>

namespace relay {

const msgpack::object& Message::at(std::size_t i) const {
  if (i >= size()) {
    throw TypeError("message has " + std::to_string(size()) + " value(s); there is no value " +
                    std::to_string(i));
  }
  return p_->array.via.array.ptr[i];
}

void Message::throw_type_error(std::size_t i, const std::string& expected,
                               const msgpack::object& actual, const std::string& detail) {
  throw TypeError("value " + std::to_string(i) + ": expected " + expected + ", got " +
                  internal::wire_type(actual) + (detail.empty() ? "" : ": " + detail));
}

void Message::throw_arity_error(std::size_t expected) const {
  throw TypeError("message has " + std::to_string(size()) + " value(s), expected " +
                  std::to_string(expected) + ": " + to_string());
}

bool Message::is(Control c) const noexcept {
  if (size() != 1) return false;
  const msgpack::object& o = p_->array.via.array.ptr[0];
  return o.type == msgpack::type::EXT && o.via.ext.type() == internal::kControlExt &&
         o.via.ext.size == 1 && static_cast<Control>(o.via.ext.data()[0]) == c;
}

namespace {

void print(std::ostream& out, const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::ARRAY:
      out << '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out << ", ";
        print(out, o.via.array.ptr[i]);
      }
      out << ']';
      return;
    case msgpack::type::MAP:
      out << '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out << ", ";
        print(out, o.via.map.ptr[i].key);
        out << ": ";
        print(out, o.via.map.ptr[i].val);
      }
      out << '}';
      return;
    case msgpack::type::EXT:
      if (o.via.ext.type() == internal::kControlExt && o.via.ext.size == 1) {
        out << to_string(static_cast<Control>(o.via.ext.data()[0]));
        return;
      }
      break;
    default:
      break;
  }
  out << o;
}

}  // namespace

std::string Message::to_string() const {
  if (!p_) return "[]";
  std::ostringstream out;
  print(out, p_->array);
  return out.str();
}

}  // namespace relay
