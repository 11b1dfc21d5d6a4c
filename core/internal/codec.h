// relay/internal/codec.h: msgpack encoding of messages. Not part of the public
// API; the public headers include it only for their templates.
//
// A message on the wire is one msgpack array holding the values given to one
// send() or put(). relay::Control values are msgpack ext values of type
// kControlExt with one byte of payload.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <list>
#include <map>
#include <memory>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "relay/control.h"
#include "relay/errors.h"

namespace relay::internal {

inline constexpr std::int8_t kControlExt = 0x52;  // 'R'

// Returns a readable name of a C++ type: "int", "std::string", "std::vector<int>".
std::string demangle(const std::type_info& type);
template <class T>
std::string type_name() {
  return demangle(typeid(T));
}

// Returns the msgpack wire type of a value: "positive integer", "str", "array"...
std::string wire_type(const msgpack::object& o);

// A growable byte buffer, the packer's target. It can hand its storage off
// without a copy (release()), so that a large message goes to ZeroMQ as it is.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_), capacity_(o.capacity_) {
    o.data_ = nullptr;
    o.size_ = o.capacity_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = o.data_;
      size_ = o.size_;
      capacity_ = o.capacity_;
      o.data_ = nullptr;
      o.size_ = o.capacity_ = 0;
    }
    return *this;
  }
  ~Buffer() { std::free(data_); }

  void write(const char* p, std::size_t n) {
    if (n == 0) return;  // p may be null then (an empty bin), which memcpy must not see
    if (size_ + n > capacity_) grow(size_ + n);
    std::memcpy(data_ + size_, p, n);
    size_ += n;
  }
  void put(char c) { write(&c, 1); }
  // Makes room for n more bytes at the end and returns where they go.
  char* extend(std::size_t n) {
    if (size_ + n > capacity_) grow(size_ + n);
    char* at = data_ + size_;
    size_ += n;
    return at;
  }
  const char* data() const noexcept { return data_; }
  char* data() noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  void clear() noexcept { size_ = 0; }
  // Gives up the storage (to be freed with std::free); the buffer is empty after.
  char* release() noexcept {
    char* p = data_;
    data_ = nullptr;
    size_ = capacity_ = 0;
    return p;
  }

 private:
  void grow(std::size_t need);
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// How many arrays and maps deep a value may nest, the message's own array
// included: the decoder refuses deeper ones (its stack must stay bounded), so
// the encoder does too.
inline constexpr std::size_t kMaxDepth = 64;

// Whether the msgpack bytes nest arrays and maps deeper than kMaxDepth (a
// scan of the bytes that stops at the first level too deep; what does not
// parse counts as not too deep, for the decoder to refuse).
bool nested_too_deep(const char* data, std::size_t size) noexcept;

// Where value `index` of a packed message (a msgpack array) lies: its offset
// and length in bytes, or nothing if the message has fewer values or does not
// parse.
std::optional<std::pair<std::size_t, std::size_t>> value_span(const char* data, std::size_t size,
                                                              std::size_t index) noexcept;
// 64-bit FNV-1a of `size` bytes: the hash of relay::by_key (over a value's
// msgpack encoding). Fixed: keys must reach the same actor in every run.
std::uint64_t key_hash(const char* data, std::size_t size) noexcept;

// How many arrays and maps deep a C++ type packs, when its type alone says so
// (for the standard types msgpack-c packs as containers of their elements, at
// most: a std::vector<char> packs as bin, counted as one level); kUnknownDepth
// for anything else (MSGPACK_DEFINE structs, user adaptors, msgpack::object).
inline constexpr std::size_t kUnknownDepth = static_cast<std::size_t>(-1);
constexpr std::size_t depth_max(std::initializer_list<std::size_t> depths) {
  std::size_t m = 0;
  for (std::size_t d : depths) m = d > m ? d : m;
  return m;
}
constexpr std::size_t depth_plus_one(std::size_t d) {
  return d == kUnknownDepth ? kUnknownDepth : d + 1;
}
template <class T, class = void>
struct static_depth {
  static constexpr std::size_t value = kUnknownDepth;
};
template <class T>
inline constexpr std::size_t static_depth_v = static_depth<std::remove_cvref_t<T>>::value;
template <class T>
struct static_depth<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static constexpr std::size_t value = 0;
};
template <>
struct static_depth<std::string> {
  static constexpr std::size_t value = 0;
};
template <>
struct static_depth<std::string_view> {
  static constexpr std::size_t value = 0;
};
template <>
struct static_depth<const char*> {
  static constexpr std::size_t value = 0;
};
template <std::size_t N>
struct static_depth<char[N]> {
  static constexpr std::size_t value = 0;
};
template <>
struct static_depth<Control> {
  static constexpr std::size_t value = 0;
};
template <class T>
struct static_depth<std::optional<T>> {
  static constexpr std::size_t value = static_depth_v<T>;
};
template <class T, class A>
struct static_depth<std::vector<T, A>> {
  static constexpr std::size_t value = depth_plus_one(static_depth_v<T>);
};
template <class T, std::size_t N>
struct static_depth<std::array<T, N>> {
  static constexpr std::size_t value = depth_plus_one(static_depth_v<T>);
};
template <class K, class V, class C, class A>
struct static_depth<std::map<K, V, C, A>> {
  static constexpr std::size_t value =
      depth_plus_one(depth_max({static_depth_v<K>, static_depth_v<V>}));
};
template <class... Ts>
struct static_depth<std::tuple<Ts...>> {
  static constexpr std::size_t value = depth_plus_one(depth_max({0, static_depth_v<Ts>...}));
};
template <class A, class B>
struct static_depth<std::pair<A, B>> {
  static constexpr std::size_t value =
      depth_plus_one(depth_max({static_depth_v<A>, static_depth_v<B>}));
};

// Appends one message (a msgpack array of the values) to `out`. Throws
// EncodeError if a value cannot be encoded, or nests deeper than kMaxDepth.
template <class... Args>
void pack_message(Buffer& out, const Args&... args) {
  const std::size_t start = out.size();
  msgpack::packer<Buffer> pk(out);
  pk.pack_array(sizeof...(Args));
  try {
    (pk.pack(args), ...);
  } catch (const std::exception& e) {
    throw EncodeError(std::string("cannot encode message: ") + e.what());
  }
  // Known from the types (usual messages), no scan. Otherwise: each level
  // takes at least one byte, so a shorter message cannot be too deep.
  constexpr std::size_t known = depth_plus_one(depth_max({0, static_depth_v<Args>...}));
  if (known > kMaxDepth && out.size() - start > kMaxDepth &&
      nested_too_deep(out.data() + start, out.size() - start)) {
    throw EncodeError("cannot encode message: nested deeper than " + std::to_string(kMaxDepth) +
                      " levels");
  }
}

// Large buffers (zero-copy frames) are kept for reuse in an actor process:
// a fresh block of 1 MiB costs ~256 page faults to fill, which made every large
// send pay for its memory again. Blocks come back from ZeroMQ's free callback
// (on its I/O thread), so the pool is locked. Off (plain malloc/free) until
// enable_block_pool() is called: the driver and broker never use it, so a fork
// can never inherit its lock held.
inline constexpr std::size_t kPooledAtLeast = 64 * 1024;
void enable_block_pool() noexcept;
bool block_pool_enabled() noexcept;
// Returns a block of at least `need` bytes (its size in `capacity`), from the
// pool or else from malloc; to be freed with std::free or given back.
char* take_block(std::size_t need, std::size_t& capacity);
// Takes a block back (any thread), or frees it if the pool is full.
void give_block(void* p, std::size_t capacity) noexcept;

// One decoded message and the bytes it refers to.
struct Payload {
  Payload() = default;
  // `chunk`: the size of the zone's first chunk (allocated at once).
  explicit Payload(std::size_t chunk) : zone(chunk), chunk(chunk) {}
  msgpack::zone zone;
  std::size_t chunk = MSGPACK_ZONE_CHUNK_SIZE;  // zone.clear() keeps this much
  msgpack::object array;        // of type ARRAY
  std::shared_ptr<void> bytes;  // keeps referenced str/bin/ext bytes alive
  bool redelivered = false;     // Message::redelivered()
  // The message's msgpack bytes as they came, for send(const Message&): inside
  // `bytes` when `encoded_kept`, else valid only during the recv() the message
  // came to (null after it: the message is packed again from `array`).
  const char* encoded = nullptr;
  std::size_t encoded_size = 0;
  bool encoded_kept = false;
  // The byte before `encoded` is inside `bytes` and free to write (a received
  // frame's header): a forward can go out as that frame, without a copy.
  bool tag_room = false;
};

// A first zone chunk that fits the decoded form of a usual frame of `size`
// bytes: msgpack's default of 8 KiB made a small message cost 8 KiB of fresh
// memory, and a kept one hold it.
std::size_t zone_chunk_for(std::size_t size) noexcept;

// Decodes one message: `data` must hold exactly one msgpack array. Sizes in the
// frame are checked against its length, so a hostile frame cannot make the
// decoder allocate more than a small multiple of its own size. Throws
// EncodeError on anything else. Large str/bin values refer into `data`, which
// `owner` must keep alive.
std::shared_ptr<const Payload> decode_message(const char* data, std::size_t size,
                                              std::shared_ptr<void> owner);
// The same into an existing Payload whose zone is empty (new or cleared), so
// that a receiver can reuse one Payload for message after message. On error
// `into` holds nothing usable and must be cleared before reuse.
void decode_message_into(Payload& into, const char* data, std::size_t size,
                         std::shared_ptr<void> owner);

// Decodes one msgpack value with the same limits (for control frames).
// `reference` lets large str/bin/ext values point into `data` instead of the zone.
msgpack::object decode_value(msgpack::zone& zone, const char* data, std::size_t size,
                             bool reference = false);

// A value packed into a string (a frame, or a field of one).
template <class T>
std::string pack_to_string(const T& value) {
  Buffer b;
  msgpack::pack(b, value);
  return std::string(b.data(), b.size());
}

// Decodes a std::tuple of exactly its arity, with the limits above. Throws
// EncodeError naming `what` if it is not one or a field has the wrong type.
template <class Tuple>
Tuple unpack_tuple(const char* data, std::size_t size, const std::string& what) {
  Tuple t;
  try {
    msgpack::zone zone;
    const msgpack::object o = decode_value(zone, data, size);
    if (o.type != msgpack::type::ARRAY || o.via.array.size != std::tuple_size_v<Tuple>) {
      throw EncodeError("not a " + what);
    }
    o.convert(t);
  } catch (const msgpack::type_error&) {
    throw EncodeError(what + ": a field has the wrong type");
  }
  return t;
}

// Strict conversion of values read from a message (Message::get). msgpack-c
// converts a MSGPACK_DEFINE_MAP struct from a map with other keys by leaving
// the missing fields at their defaults and ignoring the unknown ones, an
// MSGPACK_DEFINE struct or a std::tuple from an array of another length
// likewise: a struct read as another struct would "work". Types that hold such
// a struct or tuple are checked after conversion: the value is packed again
// and its shape (map keys, array lengths, recursively) compared with what was
// on the wire.
template <class T, class = void>
struct has_msgpack_unpack : std::false_type {};
template <class T>
struct has_msgpack_unpack<T, std::void_t<decltype(std::declval<T&>().msgpack_unpack(
                                 std::declval<const msgpack::object&>()))>> : std::true_type {};

template <class T>
struct shape_checked : has_msgpack_unpack<T> {};
template <class... Ts>
struct shape_checked<std::tuple<Ts...>> : std::true_type {};
template <class A, class B>
struct shape_checked<std::pair<A, B>> : std::true_type {};
template <class T, class A>
struct shape_checked<std::vector<T, A>> : shape_checked<T> {};
template <class T, std::size_t N>
struct shape_checked<std::array<T, N>> : shape_checked<T> {};
template <class T, class A>
struct shape_checked<std::list<T, A>> : shape_checked<T> {};
template <class T, class A>
struct shape_checked<std::deque<T, A>> : shape_checked<T> {};
template <class T>
struct shape_checked<std::optional<T>> : shape_checked<T> {};
template <class K, class V, class C, class A>
struct shape_checked<std::map<K, V, C, A>>
    : std::bool_constant<shape_checked<K>::value || shape_checked<V>::value> {};
template <class K, class V, class H, class E, class A>
struct shape_checked<std::unordered_map<K, V, H, E, A>>
    : std::bool_constant<shape_checked<K>::value || shape_checked<V>::value> {};

// Returns how the value on the wire (`actual`) differs in shape from `packed`,
// the msgpack form of what it was converted to, or "" if they agree.
std::string shape_difference(const msgpack::object& actual, const char* packed, std::size_t size);

template <class T>
std::string shape_difference(const msgpack::object& actual, const T& converted) {
  Buffer b;
  msgpack::pack(b, converted);
  return shape_difference(actual, b.data(), b.size());
}

// "5000000000, which does not fit int" for an integer on the wire that a
// conversion to an integral T refused; "" for anything else.
std::string integer_out_of_range(const msgpack::object& actual, const std::string& type);

}  // namespace relay::internal

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

template <>
struct pack<relay::Control> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, relay::Control c) const {
    const char b = static_cast<char>(c);
    o.pack_ext(1, relay::internal::kControlExt);
    o.pack_ext_body(&b, 1);
    return o;
  }
};

template <>
struct convert<relay::Control> {
  const msgpack::object& operator()(const msgpack::object& o, relay::Control& c) const {
    if (o.type != msgpack::type::EXT || o.via.ext.type() != relay::internal::kControlExt ||
        o.via.ext.size != 1 || static_cast<unsigned char>(o.via.ext.data()[0]) > 1) {
      throw msgpack::type_error();
    }
    c = static_cast<relay::Control>(o.via.ext.data()[0]);
    return o;
  }
};

}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
