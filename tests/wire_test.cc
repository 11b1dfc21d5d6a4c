// The frames relay's processes exchange (frames.h): every control frame, log
// record and monitor record round-trips, and the decoder refuses a frame with
// a field missing or extra, of the wrong type, or of an unknown kind. Also
// the nested payloads a standalone relay-broker and its driver exchange: the
// driver's plan (in its join) and the run's result (before the end). Both
// round-trip, and malformed ones are refused with EncodeError rather than
// half-read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>
#include <zmq.hpp>

#include "broker/broker.h"
#include "relay/errors.h"
#include "relay/internal/codec.h"
#include "relay/internal/frames.h"
#include "relay/internal/plan.h"
#include "relay/internal/transport.h"
#include "relay/internal/wire.h"
#include "tests/testing.h"

namespace {

using relay::EncodeError;
using relay::internal::pack_broker_plan;
using relay::internal::Plan;
using relay::internal::unpack_broker_plan;
using ::testing::HasSubstr;

Plan ThreeGroups() {
  Plan p;
  p.groups = {{"src", 0, 1}, {"work", 1, 3}, {"sink", 4, 1}};
  p.edges = {{0, "", 1}, {1, "", 2}};
  p.actors = {{0, 0, "Source-0", "src"},
              {1, 1, "Forwarder-0", "work"},
              {2, 1, "Forwarder-1", "work"},
              {3, 1, "Forwarder-2", "work"},
              {4, 2, "Sink-0", "sink"}};
  p.placement = {std::nullopt, std::string(), std::string(), std::string(), std::nullopt};
  p.placement[2] = "gpu";
  p.expect_workers = 2;
  p.worker_wait = std::chrono::milliseconds(1234);
  p.maxsize = 10;
  p.queues = {{1, std::nullopt}, {3, 5}};
  p.ports = relay::internal::PortRange{7000, 7010};
  return p;
}

template <class T>
std::string Packed(const T& value) {
  relay::internal::Buffer b;
  msgpack::pack(b, value);
  return std::string(b.data(), b.size());
}

// The broker's listeners exist before its context (PreboundIpc): a peer that
// connects first is served as soon as the socket binds on the listener,
// without waiting for a reconnect (here set to 60 s, longer than the test's
// wait: a connect that had failed would not be tried again in time).
TEST(PreboundIpc, APeerThatConnectedBeforeTheBindIsServedAtOnce) {
  const std::string endpoint =
      "ipc://@" + relay::internal::local_socket_prefix() + relay::internal::random_hex(8) + "-pre";
  relay::internal::PreboundIpc listener(endpoint);
  ASSERT_TRUE(listener.bound());
  zmq::context_t ctx(1);
  zmq::socket_t early(ctx, zmq::socket_type::dealer);
  early.set(zmq::sockopt::linger, 0);
  early.set(zmq::sockopt::reconnect_ivl, 60000);
  early.connect(endpoint);
  ASSERT_TRUE(early.send(zmq::str_buffer("hello"), zmq::send_flags::none));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its connect has been tried

  zmq::socket_t server(ctx, zmq::socket_type::router);
  server.set(zmq::sockopt::linger, 0);
  server.set(zmq::sockopt::rcvtimeo, 10000);
  listener.bind(server);
  EXPECT_FALSE(listener.bound());  // the socket owns it now
  zmq::message_t from;
  zmq::message_t frame;
  ASSERT_TRUE(server.recv(from)) << "the early peer's message did not come within 10 s";
  ASSERT_TRUE(server.recv(frame));
  EXPECT_EQ(frame.to_string(), "hello");
  // Later binds of the same socket make listeners of their own.
  const std::string second =
      "ipc://@" + relay::internal::local_socket_prefix() + relay::internal::random_hex(8) + "-2nd";
  server.bind(second);
  zmq::socket_t later(ctx, zmq::socket_type::dealer);
  later.set(zmq::sockopt::linger, 0);
  later.connect(second);
  ASSERT_TRUE(later.send(zmq::str_buffer("again"), zmq::send_flags::none));
  ASSERT_TRUE(server.recv(from)) << "nothing came on a second bind of the same socket";
  ASSERT_TRUE(server.recv(frame));
  EXPECT_EQ(frame.to_string(), "again");
}

TEST(PreboundIpc, RefusesWhatItCannotListenOn) {
  try {
    relay::internal::PreboundIpc("ipc:///tmp/relay-not-abstract");
    ADD_FAILURE() << "a path endpoint was accepted";
  } catch (const relay::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not an abstract ipc endpoint"));
  }
  const std::string endpoint =
      "ipc://@" + relay::internal::local_socket_prefix() + relay::internal::random_hex(8) + "-dup";
  relay::internal::PreboundIpc first(endpoint);
  try {
    relay::internal::PreboundIpc again(endpoint);
    ADD_FAILURE() << "a second listener on one name was made";
  } catch (const relay::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot listen on " + endpoint));
  }
}

// A batch frame ('B', wire.h): its count only when every member lies within
// it, end to end, and there is at least one.
TEST(BatchFrame, CountsOnlyWhatIsExactlyABatch) {
  using relay::internal::batch_count;
  auto batch = [](const std::vector<std::string>& members, int count) {
    return relay::testing::BatchFrame(members, count);
  };
  auto count_of = [&](const std::string& b) { return batch_count(b.data(), b.size()); };
  const std::string m = "D\x91\x01";
  EXPECT_EQ(count_of(batch({m}, 1)), 1);
  EXPECT_EQ(count_of(batch({m, m, "D\x90"}, 3)), 3);
  EXPECT_EQ(count_of(batch({std::string(300, 'x')}, 1)), 1);  // a length above 255
  EXPECT_EQ(count_of(batch({}, 0)), std::nullopt);
  EXPECT_EQ(count_of(batch({m, m}, 0)), std::nullopt);
  EXPECT_EQ(count_of(batch({m, m}, 1)), std::nullopt);  // bytes after the last
  EXPECT_EQ(count_of(batch({m, m}, 3)), std::nullopt);  // a member missing
  EXPECT_EQ(count_of(batch({m, ""}, 2)), std::nullopt);
  EXPECT_EQ(count_of(batch({m}, 1).substr(0, 6)), std::nullopt);  // truncated member
  EXPECT_EQ(count_of(batch({m}, 1).substr(0, 4)), std::nullopt);  // half a length
  EXPECT_EQ(count_of(std::string("B")), std::nullopt);
  EXPECT_EQ(count_of("X" + batch({m}, 1).substr(1)), std::nullopt);  // not 'B'
}

TEST(BrokerPlan, RoundTrips) {
  const Plan in = ThreeGroups();
  const std::string bytes = pack_broker_plan(in);
  const Plan out = unpack_broker_plan(bytes.data(), bytes.size());
  ASSERT_EQ(out.groups.size(), 3u);
  EXPECT_EQ(out.groups[1].name, "work");
  EXPECT_EQ(out.groups[1].first, 1u);
  EXPECT_EQ(out.groups[1].size, 3u);
  ASSERT_EQ(out.actors.size(), 5u);
  EXPECT_EQ(out.actors[4].name, "Sink-0");
  EXPECT_EQ(out.actors[4].group_name, "sink");
  EXPECT_FALSE(out.remote(0));
  EXPECT_TRUE(out.remote(1));
  EXPECT_EQ(*out.placement[1], "");
  EXPECT_EQ(*out.placement[2], "gpu");
  EXPECT_FALSE(out.remote(4));
  EXPECT_EQ(out.expect_workers, 2u);
  EXPECT_EQ(out.worker_wait.count(), 1234);
  EXPECT_EQ(out.maxsize, std::optional<std::size_t>(10));
  ASSERT_EQ(out.queues.size(), 2u);
  EXPECT_EQ(out.queues[0].id, 1u);
  EXPECT_FALSE(out.queues[0].maxsize.has_value());
  EXPECT_EQ(out.queues[1].id, 3u);
  EXPECT_EQ(out.queues[1].maxsize, std::optional<std::size_t>(5));
  ASSERT_TRUE(out.ports.has_value());
  EXPECT_EQ(out.ports->first, 7000);
  EXPECT_EQ(out.ports->last, 7010);
  EXPECT_EQ(out.describe(), in.describe());

  Plan bare = ThreeGroups();
  bare.maxsize.reset();
  bare.queues.clear();
  bare.ports.reset();
  const std::string bare_bytes = pack_broker_plan(bare);
  const Plan bare_out = unpack_broker_plan(bare_bytes.data(), bare_bytes.size());
  EXPECT_FALSE(bare_out.maxsize.has_value());
  EXPECT_TRUE(bare_out.queues.empty());
  EXPECT_FALSE(bare_out.ports.has_value());
  EXPECT_EQ(bare_out.fingerprint(), bare.fingerprint());
}

TEST(BrokerPlan, RefusesWhatIsNotAPlan) {
  const std::string garbage = "\xc1\xff\x00 not msgpack";
  EXPECT_THROW(unpack_broker_plan(garbage.data(), garbage.size()), EncodeError);
  const std::string word = Packed(std::string("plan"));
  EXPECT_THROW(unpack_broker_plan(word.data(), word.size()), EncodeError);
  const std::string short_tuple = Packed(std::make_tuple(1, 2));
  EXPECT_THROW(unpack_broker_plan(short_tuple.data(), short_tuple.size()), EncodeError);
}

TEST(BrokerPlan, RefusesInconsistentPlans) {
  auto refused = [](const Plan& p) {
    const std::string bytes = pack_broker_plan(p);
    try {
      unpack_broker_plan(bytes.data(), bytes.size());
    } catch (const EncodeError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  Plan gap = ThreeGroups();
  gap.groups[2].first = 5;  // groups must tile the actors
  EXPECT_THAT(refused(gap), ::testing::HasSubstr("groups"));
  Plan one = ThreeGroups();
  one.groups = {{"all", 0, 5}};
  EXPECT_THAT(refused(one), ::testing::HasSubstr("counts"));
  Plan moved = ThreeGroups();
  moved.actors[1].group = 2;  // actor 1 claims to be in the sink group
  EXPECT_THAT(refused(moved), ::testing::HasSubstr("actor 1"));
  Plan renamed = ThreeGroups();
  renamed.actors[4].group_name = "other";
  EXPECT_THAT(refused(renamed), ::testing::HasSubstr("actor 4"));
  // Sizes that wrap a 32-bit sum around to zero actors (found in review: the
  // broker then wrote past an empty vector).
  Plan wrapped;
  wrapped.groups = {{"a", 0, 0xFFFFFFFFu}, {"b", 0xFFFFFFFFu, 1}};
  EXPECT_THAT(refused(wrapped), ::testing::HasSubstr("groups"));
  Plan unordered = ThreeGroups();
  unordered.queues = {{3, std::nullopt}, {1, std::nullopt}};
  EXPECT_THAT(refused(unordered), ::testing::HasSubstr("queue ids"));
  Plan empty_queue = ThreeGroups();
  empty_queue.queues = {{1, 0}};
  EXPECT_THAT(refused(empty_queue), ::testing::HasSubstr("maxsize 0"));
  Plan backwards = ThreeGroups();
  backwards.ports = relay::internal::PortRange{7010, 7000};
  EXPECT_THAT(refused(backwards), ::testing::HasSubstr("port range"));
  Plan zero = ThreeGroups();
  zero.maxsize = 0;
  EXPECT_THAT(refused(zero), ::testing::HasSubstr("maxsize 0"));
}

// A plan whose windows are not the ones this build computes (a driver of
// another version) is refused by name rather than turning every worker away.
TEST(BrokerPlan, RefusesOtherWindows) {
  const Plan p = ThreeGroups();
  const std::string bytes = pack_broker_plan(p);
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  auto t = oh.get().as<std::vector<msgpack::object>>();
  ASSERT_EQ(t.size(), 10u);
  msgpack::zone zone;
  t[8] = msgpack::object(std::make_pair(std::vector<std::uint32_t>{4, 10}, std::uint64_t{0}), zone);
  const std::string other = Packed(t);
  try {
    unpack_broker_plan(other.data(), other.size());
    ADD_FAILURE() << "a plan with other windows was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("credit windows"));
  }
}

TEST(BrokerPlan, FingerprintTellsRelaysApart) {
  const Plan p = ThreeGroups();
  EXPECT_EQ(p.layout(), "src[1] -> work[3] -> sink[1]");
  const std::string bytes = pack_broker_plan(p);
  EXPECT_EQ(unpack_broker_plan(bytes.data(), bytes.size()).fingerprint(), p.fingerprint())
      << "relay-broker must compute the driver's fingerprint from the plan it is sent";
  Plan renamed = ThreeGroups();
  renamed.actors[2].name = "Forwarder-9";
  EXPECT_NE(renamed.fingerprint(), p.fingerprint());
  Plan regrouped = ThreeGroups();
  regrouped.groups[1].name = "works";
  EXPECT_NE(regrouped.fingerprint(), p.fingerprint());
  // Everything driver and workers must agree on changes it.
  Plan placed = ThreeGroups();
  placed.placement[1] = std::nullopt;
  EXPECT_NE(placed.fingerprint(), p.fingerprint());
  Plan bounded = ThreeGroups();
  bounded.maxsize = 2048;
  EXPECT_NE(bounded.fingerprint(), p.fingerprint());
  Plan unbounded = ThreeGroups();
  unbounded.maxsize.reset();
  EXPECT_NE(unbounded.fingerprint(), p.fingerprint());
  Plan queued = ThreeGroups();
  queued.queues.push_back({4, std::nullopt});
  EXPECT_NE(queued.fingerprint(), p.fingerprint());
  Plan renumbered = ThreeGroups();
  renumbered.queues[1].id = 2;
  EXPECT_NE(renumbered.fingerprint(), p.fingerprint());
  Plan rebound = ThreeGroups();
  rebound.queues[1].maxsize = 6;
  EXPECT_NE(rebound.fingerprint(), p.fingerprint());
  Plan ported = ThreeGroups();
  ported.ports->last = 7011;
  EXPECT_NE(ported.fingerprint(), p.fingerprint());
  // What is the driver's alone (how many workers, how long to wait) does not.
  Plan waiting = ThreeGroups();
  waiting.expect_workers = 5;
  waiting.worker_wait = std::chrono::milliseconds(1);
  EXPECT_EQ(waiting.fingerprint(), p.fingerprint());
}

// The description names what a refused worker and its driver disagree on.
TEST(BrokerPlan, DescribesTheRelay) {
  const Plan p = ThreeGroups();
  EXPECT_EQ(p.describe(),
            "src[1] -> work[3] -> sink[1]; maxsize 10; queues #1, #3 (maxsize 5); work on "
            "workers; ports 7000-7010");
  Plan bare = ThreeGroups();
  bare.maxsize.reset();
  bare.queues.clear();
  bare.ports.reset();
  bare.placement.assign(5, std::nullopt);
  EXPECT_EQ(bare.describe(),
            "src[1] -> work[3] -> sink[1]; no maxsize; no queues; all on the driver's host");
  bool windows = false;
  for (const auto& [name, text] : p.parts()) {
    if (name == "windows") {
      windows = true;
      EXPECT_EQ(text, "windows 3, 10 messages, 0 bytes");
    }
  }
  EXPECT_TRUE(windows);
}

TEST(RunResult, RoundTrips) {
  relay::broker::RunResult in;
  in.failures.push_back({3, "work", "Forwarder-2", 4242, "b1", "boom"});
  in.accounting = "edge 'a' -> 'b': sent 2, received 1 (A -> B: sent 2, received 1)";
  in.stopped = "actor 'Forwarder-2' failed";
  in.rejected = 7;
  const std::string bytes = relay::broker::pack_result(in);
  const relay::broker::RunResult out = relay::broker::unpack_result(bytes.data(), bytes.size());
  ASSERT_EQ(out.failures.size(), 1u);
  EXPECT_EQ(out.failures[0].id, 3u);
  EXPECT_EQ(out.failures[0].group, "work");
  EXPECT_EQ(out.failures[0].name, "Forwarder-2");
  EXPECT_EQ(out.failures[0].pid, 4242);
  EXPECT_EQ(out.failures[0].host, "b1");
  EXPECT_EQ(out.failures[0].reason, "boom");
  EXPECT_EQ(out.accounting, in.accounting);
  ASSERT_TRUE(out.stopped.has_value());
  EXPECT_EQ(*out.stopped, *in.stopped);
  EXPECT_EQ(out.rejected, 7u);

  const std::string empty = relay::broker::pack_result({});
  const relay::broker::RunResult clean = relay::broker::unpack_result(empty.data(), empty.size());
  EXPECT_TRUE(clean.failures.empty());
  EXPECT_FALSE(clean.stopped.has_value());
}

TEST(RunResult, RefusesWhatIsNotAResult) {
  const std::string word = Packed(std::string("ok"));
  EXPECT_THROW(relay::broker::unpack_result(word.data(), word.size()), EncodeError);
  const std::string wrong = Packed(std::make_tuple(1, 2, 3, 4, 5));
  EXPECT_THROW(relay::broker::unpack_result(wrong.data(), wrong.size()), EncodeError);
}


// A graph: outputs, groupings, fan-out and merge show in the layout, travel in
// the plan, and change the fingerprint.
Plan Graph() {
  using relay::internal::EdgeGrouping;
  Plan p;
  p.groups = {{"src", 0, 1}, {"parse", 1, 4}, {"count", 5, 3}, {"errors", 8, 1}, {"top", 9, 1}};
  p.edges = {{0, "", 1},
             {1, "", 2, EdgeGrouping::by_key, 0},
             {1, "bad", 3},
             {2, "", 4, EdgeGrouping::broadcast},
             {3, "", 4}};
  for (std::uint32_t g = 0; g < p.groups.size(); ++g) {
    for (std::uint32_t i = 0; i < p.groups[g].size; ++i) {
      const std::uint32_t id = p.groups[g].first + i;
      p.actors.push_back({id, g, "A-" + std::to_string(id), p.groups[g].name});
    }
  }
  p.placement.assign(p.actors.size(), std::nullopt);
  p.maxsize = 12;
  return p;
}

TEST(BrokerPlan, LayoutShowsAGraph) {
  const Plan p = Graph();
  EXPECT_EQ(p.layout(),
            "src[1] -> parse[4] -> {count[3] by key -> top[1] broadcast, errors[1] from 'bad' -> "
            "top}");
  EXPECT_EQ(p.edge_name(2), "'parse'.'bad' -> 'errors'");
  EXPECT_EQ(p.outputs(1), (std::vector<std::string>{"", "bad"}));
  // A broadcast pair holds maxsize; the others share it over their receivers.
  EXPECT_EQ(p.window(1), 4u);
  EXPECT_EQ(p.window(3), 12u);
  const std::string bytes = pack_broker_plan(p);
  const Plan out = unpack_broker_plan(bytes.data(), bytes.size());
  ASSERT_EQ(out.edges.size(), 5u);
  EXPECT_EQ(out.edges[2].output, "bad");
  EXPECT_EQ(out.edges[1].grouping, relay::internal::EdgeGrouping::by_key);
  EXPECT_EQ(out.fingerprint(), p.fingerprint());
  Plan rekeyed = Graph();
  rekeyed.edges[1].key = 1;
  EXPECT_NE(rekeyed.fingerprint(), p.fingerprint());
  EXPECT_THAT(rekeyed.layout(), ::testing::HasSubstr("count[3] by key 1"));
  Plan regrouped = Graph();
  regrouped.edges[3].grouping = relay::internal::EdgeGrouping::round_robin;
  EXPECT_NE(regrouped.fingerprint(), p.fingerprint());
}

TEST(BrokerPlan, RefusesAGraphWithACycleOrALooseGroup) {
  Plan cycle = Graph();
  cycle.edges.push_back({4, "", 1});
  std::string bytes = pack_broker_plan(cycle);
  try {
    unpack_broker_plan(bytes.data(), bytes.size());
    ADD_FAILURE() << "a plan with a cycle was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("a cycle: 'parse' -> 'count' -> 'top' -> 'parse'"));
  }
  Plan loose = Graph();
  loose.edges.pop_back();
  loose.edges.pop_back();
  loose.edges.push_back({3, "", 2});
  bytes = pack_broker_plan(loose);
  try {
    unpack_broker_plan(bytes.data(), bytes.size());
    ADD_FAILURE() << "a plan with a group without edges was accepted";
  } catch (const EncodeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("group 'top' has no edge"));
  }
}

// by_key hashes one value's bytes: value_span() finds them in a message.
TEST(KeyHash, FindsEachValueOfAMessage) {
  relay::internal::Buffer b;
  relay::internal::pack_message(b, 7, std::string("word"), std::vector<int>{1, 2, 3},
                                std::map<std::string, int>{{"a", 1}});
  const auto v0 = relay::internal::value_span(b.data(), b.size(), 0);
  const auto v1 = relay::internal::value_span(b.data(), b.size(), 1);
  const auto v3 = relay::internal::value_span(b.data(), b.size(), 3);
  ASSERT_TRUE(v0 && v1 && v3);
  EXPECT_EQ(std::string(b.data() + v0->first, v0->second), std::string("\x07"));
  EXPECT_EQ(std::string(b.data() + v1->first, v1->second), std::string("\xa4word"));
  EXPECT_EQ(v3->first + v3->second, b.size());
  EXPECT_FALSE(relay::internal::value_span(b.data(), b.size(), 4));
  EXPECT_FALSE(relay::internal::value_span(b.data(), b.size() - 1, 3)) << "truncated";
  // 7 as an int, a long and an unsigned is one key: the shortest encoding.
  relay::internal::Buffer l;
  relay::internal::pack_message(l, 7L, 0);
  const auto w0 = relay::internal::value_span(l.data(), l.size(), 0);
  ASSERT_TRUE(w0);
  EXPECT_EQ(relay::internal::key_hash(l.data() + w0->first, w0->second),
            relay::internal::key_hash(b.data() + v0->first, v0->second));
  // FNV-1a 64 of the bytes, fixed for good: the offset basis for no bytes,
  // and the published value for "a".
  EXPECT_EQ(relay::internal::key_hash("", 0), 14695981039346656037ull);
  EXPECT_EQ(relay::internal::key_hash("a", 1), 0xaf63dc4c8601ec8cull);
}

// ---- frames.h ----

namespace ri = relay::internal;

const std::string kBytes("\x00\x01\xc1 bytes", 9);

// One frame of every control kind, each field set to something other than
// its default.
std::vector<ri::ControlFrame> EveryControlFrame() {
  return {
      ri::Hello{3, 4242, "a1", "tcp://10.0.0.1:7000", 2},
      ri::Put{7, true, ri::Bin{kBytes}, ri::Bin{kBytes}},
      ri::Fail{"boom", 12},
      ri::Bye{
          5, {{{0, 4}, 10}, {{1, 5}, 11}}, {{{0, 0}, 21}}, 2, {21}, {{{0, 4}, 3}}, {{{1, 5}, 4}}},
      ri::Stats{100, 90, 8, {{0, {60, 5}}, {2, {40, 3}}}, {{1, 90}}, {{{1, 6}, 12}}, {{{0, 4}, 7}}},
      ri::Start{{"tcp://a:1", "", "ipc://@x"}, {0, 2, 1}, {0, 1, 0, 5, 1, 2}},
      ri::PutAck{9},
      ri::Ack{},
      ri::Abort{"actor 'x' failed"},
      ri::WHello{"b1",
                 {"gpu", "big"},
                 77,
                 "10.0.0.2",
                 0xfedcba9876543210u,
                 "relay 1.0",
                 {{"windows", "3"}, {"codec", "1"}}},
      ri::WExit{4, 2, -11, true, 1, 3, 1, 17, 2, ri::Bin{kBytes}},
      ri::Ping{},
      ri::Pong{},
      ri::Assign{{1, 2, 3}, "tcp://d:7000", "tcp://d:7001"},
      ri::End{true, "done"},
      ri::WEnd{},
      ri::DHello{"d1", 55, "10.0.0.3", ri::Bin{kBytes}},
      ri::DAbort{"interrupted by SIGINT", 2},
      ri::QAck{4, 9, "queue 9 is closed"},
      ri::QPut{4, 9, false, ri::Bin{kBytes}},
      ri::DLog{4, 5, "a critical line"},
      ri::REnded{4, 99, -15},
      ri::Result{ri::Bin{kBytes}},
      ri::Restarted{2, 1, "ipc://@y", {{{0, 0}, {{1, 17}, "killed by SIGSEGV"}}}},
      ri::Spawn{3, 2},
  };
}

// The frame's bytes, re-packed after `change` edited its array's elements.
using Edit = std::function<void(std::vector<msgpack::object>&, msgpack::zone&)>;
std::string Edited(const std::string& bytes, const Edit& change) {
  msgpack::zone zone;
  const msgpack::object o = ri::decode_value(zone, bytes.data(), bytes.size());
  std::vector<msgpack::object> elements(o.via.array.ptr, o.via.array.ptr + o.via.array.size);
  change(elements, zone);
  relay::internal::Buffer b;
  msgpack::packer<relay::internal::Buffer> pk(b);
  pk.pack_array(static_cast<std::uint32_t>(elements.size()));
  for (const msgpack::object& e : elements) pk.pack(e);
  return std::string(b.data(), b.size());
}

// Values a lenient decoder would take for `o`: the same text as bin or str
// the other way round, a number as a float or a string, a bool as 0 or 1, an
// array as a map; and nil for anything.
std::vector<msgpack::object> Confusable(const msgpack::object& o, msgpack::zone& zone) {
  std::vector<msgpack::object> out{msgpack::object()};
  msgpack::object x;
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      // Not a whole number: msgpack-c packs those as integers.
      out.emplace_back(0.5);
      out.emplace_back(std::to_string(o.via.u64), zone);
      out.emplace_back(true);
      break;
    case msgpack::type::NEGATIVE_INTEGER:
      out.emplace_back(-0.5);
      out.emplace_back(std::to_string(o.via.i64), zone);
      break;
    case msgpack::type::STR:
      x.type = msgpack::type::BIN;
      x.via.bin.ptr = o.via.str.ptr;
      x.via.bin.size = o.via.str.size;
      out.push_back(x);
      break;
    case msgpack::type::BIN:
      x.type = msgpack::type::STR;
      x.via.str.ptr = o.via.bin.ptr;
      x.via.str.size = o.via.bin.size;
      out.push_back(x);
      break;
    case msgpack::type::BOOLEAN:
      out.emplace_back(o.via.boolean ? 1 : 0);
      break;
    case msgpack::type::ARRAY:
      x.type = msgpack::type::MAP;
      x.via.map.ptr = nullptr;
      x.via.map.size = 0;
      out.push_back(x);
      break;
    default:
      break;
  }
  return out;
}

std::string Refusal(const std::string& bytes) {
  msgpack::zone zone;
  try {
    (void)ri::decode_control(zone, bytes.data(), bytes.size());
  } catch (const EncodeError& e) {
    return e.what();
  }
  return "";
}

// Every control kind decodes to what was encoded, both as its own type and
// through decode_control(); the list covers every kind once.
TEST(Frames, EveryControlKindRoundTrips) {
  const std::vector<ri::ControlFrame> frames = EveryControlFrame();
  ASSERT_EQ(frames.size(), std::variant_size_v<ri::ControlFrame>);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    ASSERT_EQ(frames[i].index(), i);
    std::visit(
        [&](const auto& f) {
          using F = std::decay_t<decltype(f)>;
          SCOPED_TRACE(F::kName);
          const std::string bytes = ri::encode(f);
          msgpack::zone zone;
          EXPECT_EQ(ri::decode<F>(zone, bytes.data(), bytes.size()), f);
          const ri::ControlFrame any = ri::decode_control(zone, bytes.data(), bytes.size());
          EXPECT_EQ(ri::kind_of(any), F::kKind);
          EXPECT_STREQ(ri::name_of(any), F::kName);
          ASSERT_TRUE(std::holds_alternative<F>(any));
          EXPECT_EQ(std::get<F>(any), f);
        },
        frames[i]);
  }
}

// The codec fuzzer's seeds (core/internal/codec_fuzzer_corpus/control_*)
// decode as the frames they are named after: a frame that gains a field
// makes its old seed one that the decoder refuses, and the fuzzer would
// start from bytes that never get past the first check. With
// RELAY_WRITE_FUZZ_SEEDS=<corpus directory> this test writes them instead
// (from the checkout: RELAY_WRITE_FUZZ_SEEDS=$PWD/core/internal/codec_fuzzer_corpus
// bazel-bin/tests/wire_test --gtest_filter='*FuzzSeeds*').
TEST(Wire, FuzzSeedsAreEveryControlFrameInItsCurrentShape) {
  const char* write_to = std::getenv("RELAY_WRITE_FUZZ_SEEDS");
  for (const ri::ControlFrame& frame : EveryControlFrame()) {
    const std::string name = std::string("control_") + ri::name_of(frame);
    const std::string bytes = std::visit([](const auto& f) { return ri::encode(f); }, frame);
    if (write_to != nullptr) {
      std::ofstream out(std::string(write_to) + "/" + name, std::ios::binary);
      out << bytes;
      EXPECT_TRUE(out.flush().good()) << "cannot write " << write_to << "/" << name;
      continue;
    }
    std::ifstream in("core/internal/codec_fuzzer_corpus/" + name, std::ios::binary);
    ASSERT_TRUE(in.good()) << "no seed " << name << " (see this test's comment)";
    const std::string seed{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    msgpack::zone zone;
    try {
      const ri::ControlFrame decoded = ri::decode_control(zone, seed.data(), seed.size());
      EXPECT_STREQ(ri::name_of(decoded), ri::name_of(frame)) << name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << " is refused (" << e.what()
                    << "): a frame of an old shape (see this test's comment)";
    }
  }
}

// The wire form is [kind, fields...], kind as the Ctl integer.
TEST(Frames, ControlFrameIsKindThenFields) {
  EXPECT_EQ(ri::encode(ri::Ack{}), Packed(std::make_tuple(103)));
  EXPECT_EQ(ri::encode(ri::Fail{"boom", 12}), Packed(std::make_tuple(3, "boom", 12)));
  EXPECT_EQ(
      ri::encode(ri::Bye{5, {{{0, 4}, 10}}, {}, 2, {10}, {}, {}}),
      Packed(std::make_tuple(4, 5, std::vector<std::tuple<std::vector<int>, int>>{{{0, 4}, 10}},
                             std::vector<int>{}, 2, std::vector<int>{10}, std::vector<int>{},
                             std::vector<int>{})));
}

// The log record and the monitor records round-trip too.
TEST(Frames, LogAndMonitorRecordsRoundTrip) {
  msgpack::zone zone;
  const ri::LogRecord log{4, 3, "warned"};
  const std::string log_bytes = ri::encode(log);
  EXPECT_EQ(log_bytes, Packed(std::make_tuple(4, 3, "warned")));
  EXPECT_EQ(ri::decode<ri::LogRecord>(zone, log_bytes.data(), log_bytes.size()), log);

  const ri::MonitorLog mlog{"work", "Forwarder-0", 2, "hi", 1700000000123};
  const std::string mlog_bytes = ri::encode(mlog);
  EXPECT_EQ(ri::decode<ri::MonitorLog>(zone, mlog_bytes.data(), mlog_bytes.size()), mlog);
  const ri::MonitorStats stats{"work", "Forwarder-0", 10, 9, 1, 1700000000124};
  const std::string stats_bytes = ri::encode(stats);
  EXPECT_EQ(ri::decode<ri::MonitorStats>(zone, stats_bytes.data(), stats_bytes.size()), stats);
  const ri::MonitorEnd end{false, "stopped"};
  const std::string end_bytes = ri::encode(end);
  EXPECT_EQ(ri::decode<ri::MonitorEnd>(zone, end_bytes.data(), end_bytes.size()), end);
  EXPECT_STREQ(ri::MonitorLog::kTopic, "log");
  EXPECT_STREQ(ri::MonitorStats::kTopic, "stats");
  EXPECT_STREQ(ri::MonitorEnd::kTopic, "end");
}

// The plan record nests records (groups, edges, actors), each an array of
// its fields; it and the actor record round-trip, and the wire form is the
// documented one.
TEST(Frames, PlanAndActorRecordsRoundTrip) {
  msgpack::zone zone;
  const ri::MonitorActor actor{3, "work", "Forwarder-1", "hostA", 4242, "running",
                               0, 0,      1700000000125};
  const std::string actor_bytes = ri::encode(actor);
  EXPECT_EQ(actor_bytes, Packed(std::make_tuple(3, "work", "Forwarder-1", "hostA", 4242, "running",
                                                0, 0, 1700000000125)));
  EXPECT_EQ(ri::decode<ri::MonitorActor>(zone, actor_bytes.data(), actor_bytes.size()), actor);
  ri::MonitorPlan plan{"src[1] -> work[2] -> sink[1]",
                       {{"src", 1}, {"work", 2}, {"sink", 1}},
                       {{"'src' -> 'work'", "src", "", "work", 0, 0, 2048},
                        {"'work'.'odd' -> 'sink'", "work", "odd", "sink", 1, 2, 10}},
                       {actor, {0, "src", "Source-0", "", 0, "starting", 0, 0, 1}},
                       16u << 20,
                       1700000000126};
  const std::string plan_bytes = ri::encode(plan);
  EXPECT_EQ(ri::decode<ri::MonitorPlan>(zone, plan_bytes.data(), plan_bytes.size()), plan);
  EXPECT_EQ(
      ri::encode(ri::MonitorPlan{"a[1] -> b[1]", {{"a", 1}}, {}, {}, 0, 5}),
      Packed(std::make_tuple("a[1] -> b[1]", std::vector<std::tuple<std::string, int>>{{"a", 1}},
                             std::vector<int>{}, std::vector<int>{}, 0, 5)));
  EXPECT_STREQ(ri::MonitorPlan::kTopic, "plan");
  EXPECT_STREQ(ri::MonitorActor::kTopic, "actor");
  EXPECT_TRUE(ri::known_actor_state("restarting"));
  EXPECT_FALSE(ri::known_actor_state("sleeping"));
}

// A nested record is decoded as strictly as a frame, and the error says
// where: which field, which element, which field of it.
TEST(Frames, RefusesAMalformedNestedRecord) {
  msgpack::zone zone;
  auto refusal = [&](const std::string& bytes) -> std::string {
    try {
      (void)ri::decode<ri::MonitorPlan>(zone, bytes.data(), bytes.size());
    } catch (const EncodeError& e) {
      return e.what();
    }
    return "accepted";
  };
  using Edge = std::tuple<std::string, std::string, std::string, std::string, int, int, int>;
  // A window as a string.
  EXPECT_THAT(refusal(Packed(std::make_tuple(
                  "l", std::vector<int>{},
                  std::vector<std::tuple<std::string, std::string, std::string, std::string, int,
                                         int, std::string>>{{"e", "a", "", "b", 0, 0, "many"}},
                  std::vector<int>{}, 0, 1))),
              HasSubstr("monitor plan record: field 'edges': element 0: monitor plan edge: "
                        "field 'window': expected integer (unsigned int), got str"));
  // An edge with a field short.
  EXPECT_THAT(
      refusal(Packed(std::make_tuple(
          "l", std::vector<int>{},
          std::vector<std::tuple<std::string, std::string, std::string, std::string, int, int>>{
              {"e", "a", "", "b", 0, 0}},
          std::vector<int>{}, 0, 1))),
      HasSubstr("monitor plan edge: an array of 6, expected 7"));
  // A group that is not an array at all.
  EXPECT_THAT(refusal(Packed(std::make_tuple("l", std::vector<int>{7}, std::vector<Edge>{},
                                             std::vector<int>{}, 0, 1))),
              HasSubstr("field 'groups': element 0: monitor plan group: expected an array"));
}

// A frame with its last field left off, or with one more, is refused.
TEST(Frames, RefusesMissingAndExtraFields) {
  for (const ri::ControlFrame& frame : EveryControlFrame()) {
    SCOPED_TRACE(ri::name_of(frame));
    const std::string bytes = std::visit([](const auto& f) { return ri::encode(f); }, frame);
    const std::string extra =
        Edited(bytes, [](auto& e, msgpack::zone&) { e.push_back(msgpack::object()); });
    EXPECT_THAT(Refusal(extra), HasSubstr(std::string(ri::name_of(frame)) + ": "));
    EXPECT_THAT(Refusal(extra), HasSubstr(": an array of "));
    const std::string missing = Edited(bytes, [](auto& e, msgpack::zone&) { e.pop_back(); });
    EXPECT_NE(Refusal(missing), "");
  }
  const std::string hello = ri::encode(ri::Hello{3, 4242, "a1", "tcp://x:1", 0});
  const std::string short_hello = Edited(hello, [](auto& e, msgpack::zone&) { e.pop_back(); });
  EXPECT_EQ(Refusal(short_hello), "hello: an array of 5, expected 6");
  msgpack::zone zone;
  const std::string record = Packed(std::make_tuple(4, 3));
  EXPECT_THROW(ri::decode<ri::LogRecord>(zone, record.data(), record.size()), EncodeError);
  const std::string long_record = Packed(std::make_tuple(4, 3, "x", 1));
  EXPECT_THROW(ri::decode<ri::LogRecord>(zone, long_record.data(), long_record.size()),
               EncodeError);
}

// Every field of every kind, replaced by a value of a type a lenient decoder
// would convert (or by nil), is refused, and the refusal names the field.
TEST(Frames, RefusesEveryFieldOfTheWrongType) {
  for (const ri::ControlFrame& frame : EveryControlFrame()) {
    SCOPED_TRACE(ri::name_of(frame));
    const std::string bytes = std::visit([](const auto& f) { return ri::encode(f); }, frame);
    msgpack::zone zone;
    const msgpack::object o = ri::decode_value(zone, bytes.data(), bytes.size());
    for (std::uint32_t i = 1; i < o.via.array.size; ++i) {
      for (const msgpack::object& wrong : Confusable(o.via.array.ptr[i], zone)) {
        SCOPED_TRACE("field " + std::to_string(i) + " as " + ri::wire_type(wrong));
        const std::string edited = Edited(bytes, [&](auto& e, msgpack::zone&) { e[i] = wrong; });
        EXPECT_THAT(Refusal(edited), HasSubstr(std::string(ri::name_of(frame)) + ": field '"));
      }
    }
  }
}

// The refusal says which field, what it wanted and what came.
TEST(Frames, RefusalNamesTheField) {
  const std::string hello = ri::encode(ri::Hello{3, 4242, "a1", "tcp://x:1"});
  msgpack::zone zone;
  const std::string text_pid = Edited(
      hello, [](auto& e, msgpack::zone& z) { e[2] = msgpack::object(std::string("4242"), z); });
  EXPECT_EQ(Refusal(text_pid), "hello: field 'pid': expected integer (int), got str");
  const std::string bye = ri::encode(ri::Bye{5, {{{0, 4}, 10}}, {}, 2, {10}, {}, {}});
  const std::string triple = Edited(bye, [](auto& e, msgpack::zone& z) {
    e[2] = msgpack::object(std::vector<std::vector<int>>{{4, 10, 1}}, z);
  });
  EXPECT_THAT(Refusal(triple), HasSubstr("bye: field 'sent': element 0: expected array of 2"));
  const std::string text_count = Edited(bye, [](auto& e, msgpack::zone& z) {
    e[2] = msgpack::object(
        std::vector<std::tuple<std::vector<int>, std::string>>{{{0, 4}, "10"}}, z);
  });
  EXPECT_THAT(Refusal(text_count), HasSubstr("bye: field 'sent': element 0: expected integer"));
}

// Integers must fit their field: no wrapping, no negative counts.
TEST(Frames, RefusesIntegersOutOfRange) {
  const std::string dlog = ri::encode(ri::DLog{4, 5, "x"});
  const std::string big_level =
      Edited(dlog, [](auto& e, msgpack::zone&) { e[2] = msgpack::object(256); });
  EXPECT_EQ(Refusal(big_level), "dlog: field 'level': 256, which does not fit unsigned char");
  const std::string big_actor =
      Edited(dlog, [](auto& e, msgpack::zone&) { e[1] = msgpack::object(std::uint64_t{1} << 32); });
  EXPECT_THAT(Refusal(big_actor), HasSubstr("dlog: field 'actor': 4294967296, which does not fit"));
  const std::string stats = ri::encode(ri::Stats{1, 2, 3, {}, {}, {}, {}});
  const std::string negative =
      Edited(stats, [](auto& e, msgpack::zone&) { e[3] = msgpack::object(-1); });
  EXPECT_THAT(Refusal(negative), HasSubstr("stats: field 'waiting': -1, which does not fit"));
  const std::string exit = ri::encode(ri::WExit{1, 0, 0, false, 0, 0, 0, 0, 0, ri::Bin{}});
  const std::string huge_exit = Edited(exit, [](auto& e, msgpack::zone&) {
    e[3] = msgpack::object(std::int64_t{std::numeric_limits<int>::min()} - 1);
  });
  EXPECT_THAT(Refusal(huge_exit), HasSubstr("wexit: field 'exitcode'"));
}

// Kinds that are not a Ctl, kinds that are not integers, and what is not a
// control frame at all are refused; so is a frame of another kind than asked.
TEST(Frames, RefusesUnknownKinds) {
  EXPECT_EQ(Refusal(Packed(std::make_tuple(99))), "unknown control frame kind 99");
  EXPECT_EQ(Refusal(Packed(std::make_tuple(0, "x"))), "unknown control frame kind 0");
  EXPECT_THAT(Refusal(Packed(std::make_tuple(300))), HasSubstr("control frame kind: 300"));
  EXPECT_THAT(Refusal(Packed(std::make_tuple(-1))), HasSubstr("control frame kind"));
  EXPECT_THAT(Refusal(Packed(std::make_tuple("hello"))), HasSubstr("control frame kind"));
  EXPECT_THAT(Refusal(Packed(std::make_tuple(103.5))), HasSubstr("control frame kind"));
  EXPECT_EQ(Refusal(Packed(std::vector<int>{})), "control frame: an empty array");
  EXPECT_EQ(Refusal(Packed(103)), "control frame: expected an array, got positive integer");
  EXPECT_THAT(Refusal("\xc1"), HasSubstr("malformed msgpack frame"));
  msgpack::zone zone;
  const std::string ack = ri::encode(ri::Ack{});
  try {
    (void)ri::decode<ri::Ping>(zone, ack.data(), ack.size());
    ADD_FAILURE() << "an ack read as a ping";
  } catch (const EncodeError& e) {
    EXPECT_STREQ(e.what(), "not a ping frame but kind 103");
  }
}

}  // namespace
