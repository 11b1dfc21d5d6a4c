#include "relay/internal/codec.h"

#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <set>
#include <sstream>

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
  if (need >= kPooledAtLeast && block_pool_enabled()) {
    // A large message: take a block whose pages are already mapped rather
    // than realloc() a fresh one.
    std::size_t cap = 0;
    char* p = take_block(std::max(need, capacity_ * 2), cap);
    if (size_ > 0) std::memcpy(p, data_, size_);
    std::free(data_);
    data_ = p;
    capacity_ = cap;
    return;
  }
  std::size_t cap = std::max<std::size_t>({need, capacity_ * 2, 256});
  char* p = static_cast<char*>(std::realloc(data_, cap));
  if (p == nullptr) throw std::bad_alloc();
  data_ = p;
  capacity_ = cap;
}

namespace {

// At most this many blocks, and bytes, wait in the pool: enough for the blocks
// a steady stream has in flight, not a cache of every burst.
constexpr std::size_t kPoolBlocks = 16;
constexpr std::size_t kPoolBytes = std::size_t{64} << 20;

struct BlockPool {
  std::mutex mu;
  std::size_t count = 0;
  std::size_t bytes = 0;
  struct Block {
    void* p;
    std::size_t capacity;
  } blocks[kPoolBlocks];
};

std::atomic<BlockPool*> g_pool{nullptr};

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
  return msgpack::unpack_limit(size, size / 2, size, size, size, kMaxDepth);
}


}  // namespace

namespace {

// The msgpack formats 0xc4..0xdf: header bytes after the type byte, and
// what they hold.
struct Format {
  unsigned char len;   // length field bytes
  unsigned char kind;  // 0 fixed payload, 1 sized payload, 2 array, 3 map
  unsigned char fixed;
};
constexpr Format kFormats[] = {
    {1, 1, 0}, {2, 1, 0}, {4, 1, 0},                         // c4-c6 bin
    {1, 1, 1}, {2, 1, 1}, {4, 1, 1},                         // c7-c9 ext (+1 type byte)
    {0, 0, 4}, {0, 0, 8},                                    // ca-cb float
    {0, 0, 1}, {0, 0, 2}, {0, 0, 4}, {0, 0, 8},              // cc-cf uint
    {0, 0, 1}, {0, 0, 2}, {0, 0, 4}, {0, 0, 8},              // d0-d3 int
    {0, 0, 2}, {0, 0, 3}, {0, 0, 5}, {0, 0, 9}, {0, 0, 17},  // d4-d8 fixext
    {1, 1, 0}, {2, 1, 0}, {4, 1, 0},                         // d9-db str
    {2, 2, 0}, {4, 2, 0},                                    // dc-dd array
    {2, 3, 0}, {4, 3, 0},                                    // de-df map
};

// Reads one value's header at p (p advanced past it): the payload bytes that
// follow, and how many values it holds (array elements, map keys and values).
// False if the header runs past `end`.
bool read_header(const unsigned char*& p, const unsigned char* end, std::uint64_t& skip,
                 std::uint64_t& holds) noexcept {
  if (p >= end) return false;
  const unsigned char b = *p++;
  skip = 0;
  holds = 0;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc1 || b == 0xc2 || b == 0xc3) {
  } else if (b <= 0x8f) {
    holds = 2 * std::uint64_t{b & 0x0fu};
  } else if (b <= 0x9f) {
    holds = b & 0x0fu;
  } else if (b <= 0xbf) {
    skip = b & 0x1fu;
  } else {
    const Format& f = kFormats[b - 0xc4];
    if (static_cast<std::size_t>(end - p) < f.len) return false;
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < f.len; ++i) n = n << 8 | p[i];
    p += f.len;
    if (f.kind == 0) {
      skip = f.fixed;
    } else if (f.kind == 1) {
      skip = n + f.fixed;
    } else {
      holds = f.kind == 2 ? n : 2 * n;
    }
  }
  return true;
}

}  // namespace

bool nested_too_deep(const char* data, std::size_t size) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  // Values still to read in each open array or map (a map's pairs count twice).
  std::uint64_t left[kMaxDepth];
  std::size_t depth = 0;
  while (p < end) {
    // Each value read fills a place in the innermost open container.
    while (depth > 0 && left[depth - 1] == 0) --depth;
    if (depth > 0) --left[depth - 1];
    const unsigned char b = *p;
    const bool container = (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
    std::uint64_t skip = 0, holds = 0;
    if (!read_header(p, end, skip, holds)) return false;
    if (container) {
      if (depth == kMaxDepth) return true;
      left[depth++] = holds;
    }
    if (skip > static_cast<std::uint64_t>(end - p)) return false;
    p += skip;
  }
  return false;
}

std::optional<std::pair<std::size_t, std::size_t>> value_span(const char* data, std::size_t size,
                                                              std::size_t index) noexcept {
  const auto* const begin = reinterpret_cast<const unsigned char*>(data);
  const unsigned char* const end = begin + size;
  const unsigned char* p = begin;
  std::uint64_t skip = 0, values = 0;
  const unsigned char b = size > 0 ? *p : 0;
  if (!((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)) return std::nullopt;
  if (!read_header(p, end, skip, values) || index >= values) return std::nullopt;
  for (std::size_t i = 0;; ++i) {
    // One whole value: its header, payload and everything it holds.
    const unsigned char* const start = p;
    std::uint64_t pending = 1;
    while (pending > 0) {
      std::uint64_t holds = 0;
      if (!read_header(p, end, skip, holds) || skip > static_cast<std::uint64_t>(end - p)) {
        return std::nullopt;
      }
      p += skip;
      pending = pending - 1 + holds;
      // Every value takes at least a byte: more pending than bytes left is a lie.
      if (pending > static_cast<std::uint64_t>(end - p)) return std::nullopt;
    }
    if (i == index) {
      return std::pair<std::size_t, std::size_t>(static_cast<std::size_t>(start - begin),
                                                 static_cast<std::size_t>(p - start));
    }
  }
}

std::uint64_t key_hash(const char* data, std::size_t size) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < size; ++i) {
    h = (h ^ static_cast<unsigned char>(data[i])) * 1099511628211ull;
  }
  return h;
}

void enable_block_pool() noexcept {
  if (g_pool.load(std::memory_order_acquire) == nullptr) {
    // Never freed: blocks may come back from ZeroMQ's I/O thread at any time
    // until the process exits.
    g_pool.store(new (std::nothrow) BlockPool, std::memory_order_release);
  }
}

bool block_pool_enabled() noexcept { return g_pool.load(std::memory_order_relaxed) != nullptr; }

char* take_block(std::size_t need, std::size_t& capacity) {
  if (BlockPool* pool = g_pool.load(std::memory_order_acquire)) {
    std::lock_guard lock(pool->mu);
    // The smallest block that fits: a big one is kept for a big message.
    std::size_t best = pool->count;
    for (std::size_t i = 0; i < pool->count; ++i) {
      if (pool->blocks[i].capacity >= need &&
          (best == pool->count || pool->blocks[i].capacity < pool->blocks[best].capacity)) {
        best = i;
      }
    }
    if (best != pool->count) {
      const BlockPool::Block b = pool->blocks[best];
      pool->blocks[best] = pool->blocks[--pool->count];
      pool->bytes -= b.capacity;
      capacity = b.capacity;
      return static_cast<char*>(b.p);
    }
  }
  // Whole pages, so that messages a few bytes apart in size share blocks.
  constexpr std::size_t kPage = 4096;
  capacity = (need + kPage - 1) / kPage * kPage;
  char* p = static_cast<char*>(std::malloc(capacity));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void give_block(void* p, std::size_t capacity) noexcept {
  if (BlockPool* pool = g_pool.load(std::memory_order_acquire);
      pool != nullptr && capacity >= kPooledAtLeast) {
    std::lock_guard lock(pool->mu);
    if (pool->count < kPoolBlocks && pool->bytes + capacity <= kPoolBytes) {
      pool->blocks[pool->count++] = {p, capacity};
      pool->bytes += capacity;
      return;
    }
  }
  std::free(p);
}

std::size_t zone_chunk_for(std::size_t size) noexcept {
  // A value takes at least one byte on the wire and one msgpack::object (24
  // bytes) decoded, but usual messages are a few values, with strings copied:
  // twice the frame fits them. A zone grows by itself when it does not fit.
  constexpr std::size_t kMin = 128;
  return std::min<std::size_t>(MSGPACK_ZONE_CHUNK_SIZE, std::max(kMin, 2 * size + 64));
}

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

void decode_message_into(Payload& into, const char* data, std::size_t size,
                         std::shared_ptr<void> owner) {
  into.array = decode_value(into.zone, data, size, owner != nullptr);
  if (into.array.type != msgpack::type::ARRAY) {
    throw EncodeError("malformed message: expected a msgpack array, got " +
                      wire_type(into.array));
  }
  into.encoded_kept = owner != nullptr;
  into.encoded = into.encoded_kept ? data : nullptr;
  into.encoded_size = into.encoded_kept ? size : 0;
  into.tag_room = false;
  into.bytes = std::move(owner);
}

std::shared_ptr<const Payload> decode_message(const char* data, std::size_t size,
                                              std::shared_ptr<void> owner) {
  auto p = std::make_shared<Payload>(zone_chunk_for(size));
  decode_message_into(*p, data, size, std::move(owner));
  return p;
}

namespace {

// A readable form of a map key: a string as it is, anything else as msgpack
// prints it.
std::string key_text(const msgpack::object& key) {
  if (key.type == msgpack::type::STR) return std::string(key.via.str.ptr, key.via.str.size);
  std::ostringstream out;
  out << key;
  return out.str();
}

std::string key_bytes(const msgpack::object& key) { return pack_to_string(key); }

std::string quoted_list(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
  return out;
}

// The first difference in shape between `actual` and `expected`: where (a
// path such as ".inner[2]", built only once a difference is found, so a value
// that agrees costs no string) and what.
struct ShapeDiff {
  std::string path;
  std::string what;
};

std::optional<ShapeDiff> within(std::optional<ShapeDiff> d, const std::string& step) {
  if (d) d->path.insert(0, step);
  return d;
}

std::optional<ShapeDiff> compare_shape(const msgpack::object& actual,
                                       const msgpack::object& expected) {
  if (expected.type == msgpack::type::MAP) {
    if (actual.type != msgpack::type::MAP) {
      return ShapeDiff{"", "a map was expected, got " + wire_type(actual)};
    }
    const msgpack::object_kv* a = actual.via.map.ptr;
    const msgpack::object_kv* e = expected.via.map.ptr;
    const std::uint32_t na = actual.via.map.size;
    const std::uint32_t ne = expected.via.map.size;
    // Usually the keys come in the same order: compare in place.
    bool same = na == ne;
    for (std::uint32_t k = 0; same && k < na; ++k) same = a[k].key == e[k].key;
    if (same) {
      for (std::uint32_t k = 0; k < na; ++k) {
        if (auto d = compare_shape(a[k].val, e[k].val)) {
          return within(std::move(d), "." + key_text(e[k].key));
        }
      }
      return std::nullopt;
    }
    std::map<std::string, std::uint32_t> in_actual;
    for (std::uint32_t k = 0; k < na; ++k) in_actual.emplace(key_bytes(a[k].key), k);
    std::set<std::string> in_expected;
    std::vector<std::string> missing;
    std::vector<std::string> unknown;
    for (std::uint32_t k = 0; k < ne; ++k) {
      const std::string bytes = key_bytes(e[k].key);
      in_expected.insert(bytes);
      if (in_actual.find(bytes) == in_actual.end()) missing.push_back(key_text(e[k].key));
    }
    for (std::uint32_t k = 0; k < na; ++k) {
      if (in_expected.count(key_bytes(a[k].key)) == 0) unknown.push_back(key_text(a[k].key));
    }
    std::string out;
    if (!missing.empty()) {
      out = std::string(missing.size() == 1 ? "missing field " : "missing fields ") +
            quoted_list(missing);
    }
    if (!unknown.empty()) {
      out += std::string(out.empty() ? "" : "; ") +
             (unknown.size() == 1 ? "unknown field " : "unknown fields ") + quoted_list(unknown);
    }
    if (!out.empty()) return ShapeDiff{"", out};
    for (std::uint32_t k = 0; k < ne; ++k) {
      const msgpack::object& val = a[in_actual.at(key_bytes(e[k].key))].val;
      if (auto d = compare_shape(val, e[k].val)) {
        return within(std::move(d), "." + key_text(e[k].key));
      }
    }
    return std::nullopt;
  }
  if (expected.type == msgpack::type::ARRAY) {
    if (actual.type != msgpack::type::ARRAY) {
      return ShapeDiff{"", "an array was expected, got " + wire_type(actual)};
    }
    if (actual.via.array.size != expected.via.array.size) {
      return ShapeDiff{"", std::to_string(expected.via.array.size) + " field(s) expected, got " +
                               std::to_string(actual.via.array.size)};
    }
    for (std::uint32_t k = 0; k < actual.via.array.size; ++k) {
      if (auto d = compare_shape(actual.via.array.ptr[k], expected.via.array.ptr[k])) {
        return within(std::move(d), "[" + std::to_string(k) + "]");
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::string shape_difference(const msgpack::object& actual, const char* packed, std::size_t size) {
  msgpack::zone zone(zone_chunk_for(size));
  const msgpack::object expected = decode_value(zone, packed, size);
  const std::optional<ShapeDiff> d = compare_shape(actual, expected);
  if (!d) return "";
  return d->path.empty() ? d->what : "at " + d->path + ": " + d->what;
}

std::string integer_out_of_range(const msgpack::object& actual, const std::string& type) {
  if (actual.type == msgpack::type::POSITIVE_INTEGER) {
    return std::to_string(actual.via.u64) + ", which does not fit " + type;
  }
  if (actual.type == msgpack::type::NEGATIVE_INTEGER) {
    return std::to_string(actual.via.i64) + ", which does not fit " + type;
  }
  return "";
}

}  // namespace relay::internal
