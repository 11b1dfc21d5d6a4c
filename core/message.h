// relay/message.h: one received message.
//
// A Message holds the values given to one send() or Queue::put(), decoded from
// msgpack. It is cheap to copy (copies share the decoded data) and may be kept
// after recv() returns. Reading a value as the wrong type throws
// relay::TypeError, whose text names the index, the expected C++ type and the
// actual wire type.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "relay/control.h"
#include "relay/errors.h"
#include "relay/internal/codec.h"

namespace relay {

class Message {
 public:
  // An empty message (size() == 0).
  Message() = default;

  // Whether this message was delivered before, to a predecessor of this
  // actor that failed before its recv() returned (Relay::restart()).
  bool redelivered() const noexcept { return p_ && p_->redelivered; }

  // Returns how many values the message holds.
  std::size_t size() const noexcept { return p_ ? p_->array.via.array.size : 0; }

  // Returns value `i` as a T. Throws TypeError if there is no value `i` or it
  // does not convert to T.
  // Conversion is strict: a struct (MSGPACK_DEFINE_MAP) must find every one
  // of its keys and no other, an array struct (MSGPACK_DEFINE) or a
  // std::tuple exactly its number of fields, and an integer must fit T.
  template <class T>
  T get(std::size_t i) const {
    const msgpack::object& o = at(i);
    try {
      if constexpr (internal::shape_checked<T>::value) {
        T value = o.as<T>();
        if (std::string diff = internal::shape_difference(o, value); !diff.empty()) {
          throw_type_error(i, internal::type_name<T>(), o, diff);
        }
        return value;
      } else {
        return o.as<T>();
      }
    } catch (const msgpack::type_error&) {
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        throw_type_error(i, internal::type_name<T>(), o,
                         internal::integer_out_of_range(o, internal::type_name<T>()));
      }
      throw_type_error(i, internal::type_name<T>(), o);
    }
  }

  // Returns all values as a tuple. Throws TypeError if the message does not hold
  // exactly sizeof...(Ts) values or one does not convert.
  template <class... Ts>
  std::tuple<Ts...> as() const {
    if (size() != sizeof...(Ts)) throw_arity_error(sizeof...(Ts));
    return as_impl<Ts...>(std::index_sequence_for<Ts...>{});
  }

  // Returns whether the message is exactly the one control value `c`.
  bool is(Control c) const noexcept;

  // Returns a readable form, e.g. `[1, "item", eol]`.
  std::string to_string() const;

  // For relay's own use: wraps decoded data.
  explicit Message(std::shared_ptr<const internal::Payload> p) : p_(std::move(p)) {}
  // For relay's own use: the decoded data (send(const Message&) forwards
  // it); null for an empty Message made by the default constructor.
  const internal::Payload* payload() const noexcept { return p_.get(); }

 private:
  template <class... Ts, std::size_t... I>
  std::tuple<Ts...> as_impl(std::index_sequence<I...>) const {
    return std::tuple<Ts...>(get<Ts>(I)...);
  }
  const msgpack::object& at(std::size_t i) const;
  [[noreturn]] static void throw_type_error(std::size_t i, const std::string& expected,
                                            const msgpack::object& actual,
                                            const std::string& detail = {});
  [[noreturn]] void throw_arity_error(std::size_t expected) const;

  std::shared_ptr<const internal::Payload> p_;
};

}  // namespace relay
