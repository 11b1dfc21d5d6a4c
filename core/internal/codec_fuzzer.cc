// Fuzzes the decoder every received frame goes through: decode_message() (with
// and without an owner, i.e. with large values referenced or copied) and
// decode_value(), then reads the result the way user code does; decodes it as
// every frame kind of frames.h (control frames, log and monitor records), as
// the broker, actors, workers and drivers do; and unpack_broker_plan() (a
// driver's join), and the members of a batch frame. Any input may be rejected with relay::Error; nothing may
// crash, leak, hang or allocate far beyond the input's size. A frame that
// decodes must encode again to a frame that decodes to the same.
//
//   bazel build --config=fuzz //core:codec_fuzzer
//   bazel/run_fuzzer.sh 60
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/frames.h"
#include "relay/internal/plan.h"
#include "relay/internal/wire.h"
#include "relay/message.h"

namespace {

// Reads every value of `m` as the common types; each read either converts or
// throws TypeError.
void exercise(const relay::Message& m) {
  (void)m.to_string();
  const std::size_t n = m.size();
  // Index n is one past the end: it must throw, not read out of bounds.
  for (std::size_t i = 0; i <= n && i < 64; ++i) {
    try {
      (void)m.get<int>(i);
    } catch (const relay::Error&) {
    }
    try {
      (void)m.get<long long>(i);
    } catch (const relay::Error&) {
    }
    try {
      (void)m.get<double>(i);
    } catch (const relay::Error&) {
    }
    try {
      (void)m.get<std::string>(i);
    } catch (const relay::Error&) {
    }
    try {
      (void)m.get<std::vector<int>>(i);
    } catch (const relay::Error&) {
    }
    try {
      (void)m.get<relay::Control>(i);
    } catch (const relay::Error&) {
    }
  }
  try {
    (void)m.as<int, std::string>();
  } catch (const relay::Error&) {
  }
  try {
    (void)m.as<long long>();
  } catch (const relay::Error&) {
  }
  (void)m.is(relay::Control::eol);
  (void)m.is(relay::Control::poison);
}

void decode_as_message(const char* data, std::size_t size, bool owned) {
  std::shared_ptr<void> owner;
  const char* p = data;
  if (owned) {
    // An owned frame outlives the call, as a zmq::message_t does in the actor.
    auto copy = std::make_shared<std::string>(data, size);
    p = copy->data();
    owner = std::move(copy);
  }
  std::optional<relay::Message> m;
  try {
    m.emplace(relay::internal::decode_message(p, size, std::move(owner)));
  } catch (const relay::Error&) {
    return;
  }
  exercise(*m);
  // A copy shares the decoded data and keeps the referenced bytes alive.
  const relay::Message copy = *m;
  m.reset();
  (void)copy.to_string();
}

// What the broker and actors do with a control or log frame.
void decode_as_value(const char* data, std::size_t size) {
  msgpack::zone zone;
  msgpack::object o;
  try {
    o = relay::internal::decode_value(zone, data, size, size % 2 == 0);
  } catch (const relay::Error&) {
    return;
  }
  (void)relay::internal::wire_type(o);
  try {
    (void)o.as<std::tuple<std::uint32_t, std::uint8_t, std::string>>();
  } catch (const std::exception&) {
  }
  if (o.type == msgpack::type::ARRAY && o.via.array.size > 0) {
    try {
      (void)o.via.array.ptr[0].as<std::uint8_t>();
    } catch (const std::exception&) {
    }
    for (std::uint32_t i = 1; i < o.via.array.size && i < 8; ++i) {
      try {
        (void)o.via.array.ptr[i]
            .as<std::vector<std::pair<std::uint32_t, std::uint64_t>>>();
      } catch (const std::exception&) {
      }
      try {
        (void)o.via.array.ptr[i].as<std::vector<std::string>>();
      } catch (const std::exception&) {
      }
    }
  }
}

// Decodes the input as frame kind F; what decodes must round-trip.
template <class F>
void decode_as(const char* data, std::size_t size) {
  msgpack::zone zone;
  F f;
  try {
    f = relay::internal::decode<F>(zone, data, size);
  } catch (const relay::EncodeError&) {
    return;
  }
  const std::string again = relay::internal::encode(f);
  msgpack::zone zone2;
  try {
    if (!(relay::internal::decode<F>(zone2, again.data(), again.size()) == f)) __builtin_trap();
  } catch (const relay::EncodeError&) {
    __builtin_trap();
  }
}

template <std::size_t... I>
void decode_as_every_control_kind(const char* data, std::size_t size, std::index_sequence<I...>) {
  (decode_as<std::variant_alternative_t<I, relay::internal::ControlFrame>>(data, size), ...);
}

// Every frame of frames.h, as each receiver reads it.
void decode_as_frames(const char* data, std::size_t size) {
  {
    msgpack::zone zone;
    try {
      const relay::internal::ControlFrame f = relay::internal::decode_control(zone, data, size);
      (void)relay::internal::kind_of(f);
      (void)relay::internal::name_of(f);
    } catch (const relay::EncodeError&) {
    }
  }
  decode_as_every_control_kind(
      data, size, std::make_index_sequence<std::variant_size_v<relay::internal::ControlFrame>>());
  decode_as<relay::internal::LogRecord>(data, size);
  decode_as<relay::internal::MonitorLog>(data, size);
  decode_as<relay::internal::MonitorStats>(data, size);
  decode_as<relay::internal::MonitorEnd>(data, size);
  decode_as<relay::internal::MonitorEdge>(data, size);
  decode_as<relay::internal::MonitorActor>(data, size);
  decode_as<relay::internal::MonitorPlan>(data, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  decode_as_message(p, size, false);
  decode_as_message(p, size, true);
  decode_as_value(p, size);
  decode_as_frames(p, size);
  // As a batch frame ('B', wire.h): accepted only if every member lies within
  // it, end to end; each member decodes or throws, as a receiver takes it.
  if (const auto count = relay::internal::batch_count(p, size)) {
    std::size_t at = relay::internal::kBatchHeader;
    for (std::uint16_t i = 0; i < *count; ++i) {
      const std::size_t n = relay::internal::read_be16(p + at);
      if (n == 0 || at + 2 + n > size) __builtin_trap();
      decode_as_message(p + at + 3, n - 1, false);  // after the member's kind
      at += 2 + n;
    }
    if (at != size) __builtin_trap();
  }
  // pack_message()'s depth check agrees with the decoder's limit both ways.
  {
    msgpack::zone zone;
    const bool too_deep = relay::internal::nested_too_deep(p, size);
    try {
      (void)relay::internal::decode_value(zone, p, size);
      if (too_deep) __builtin_trap();
    } catch (const relay::Error& e) {
      if (!too_deep && std::string(e.what()).find("depth size overflow") != std::string::npos) {
        __builtin_trap();
      }
    }
  }
  // A driver's plan, as relay-broker reads it from a join.
  try {
    (void)relay::internal::unpack_broker_plan(p, size);
  } catch (const relay::Error&) {
  }
  return 0;
}
