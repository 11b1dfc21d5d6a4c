// Message::get and as(): strict conversion of values (issue "Hardening first",
// point 10): a struct read as another struct, an array struct or tuple read
// with another number of fields, and an integer that does not fit all throw
// relay::TypeError naming what differs.
#include "relay/message.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "relay/internal/codec.h"

namespace {

using ::testing::HasSubstr;

struct A {
  int x = 0;
  std::string s;
  MSGPACK_DEFINE_MAP(x, s);
};

struct B {
  int y = -7;
  double z = -7;
  MSGPACK_DEFINE_MAP(y, z);
};

struct Partial {  // A's x only
  int x = 0;
  MSGPACK_DEFINE_MAP(x);
};

struct Pair2 {
  int a = 0;
  int b = 0;
  MSGPACK_DEFINE(a, b);
};

struct Pair3 {
  int a = 0;
  int b = 0;
  int c = -1;
  MSGPACK_DEFINE(a, b, c);
};

struct Outer {
  std::string name;
  A inner;
  MSGPACK_DEFINE_MAP(name, inner);
};

struct OuterB {
  std::string name;
  B inner;
  MSGPACK_DEFINE_MAP(name, inner);
};

template <class... Args>
relay::Message Make(const Args&... args) {
  relay::internal::Buffer b;
  relay::internal::pack_message(b, args...);
  auto bytes = std::make_shared<std::string>(b.data(), b.size());
  return relay::Message(relay::internal::decode_message(bytes->data(), bytes->size(), bytes));
}

template <class T>
std::string TypeErrorOf(const relay::Message& m, std::size_t i = 0) {
  try {
    (void)m.get<T>(i);
  } catch (const relay::TypeError& e) {
    return e.what();
  }
  return "no TypeError";
}

TEST(MessageTest, StructReadsAsItself) {
  const A a = Make(A{5, "five"}).get<A>(0);
  EXPECT_EQ(a.x, 5);
  EXPECT_EQ(a.s, "five");
  const Pair2 p = Make(Pair2{1, 2}).get<Pair2>(0);
  EXPECT_EQ(p.a, 1);
  EXPECT_EQ(p.b, 2);
}

// The case: A sent, read as B, used to give y=-7 z=-7 and no error.
TEST(MessageTest, MapStructReadAsAnotherThrowsNamingTheFields) {
  EXPECT_EQ(TypeErrorOf<B>(Make(A{1, "a"})),
            "value 0: expected (anonymous namespace)::B, got map of 2: missing fields 'y', 'z'; "
            "unknown fields 'x', 's'");
}

TEST(MessageTest, MapStructWithFewerFieldsRefusesTheExtraKey) {
  EXPECT_THAT(TypeErrorOf<Partial>(Make(A{1, "a"})), HasSubstr("unknown field 's'"));
  EXPECT_THAT(TypeErrorOf<A>(Make(Partial{1})), HasSubstr("missing field 's'"));
}

TEST(MessageTest, ArrayStructNeedsItsExactArity) {
  EXPECT_THAT(TypeErrorOf<Pair3>(Make(Pair2{1, 2})),
              HasSubstr("got array of 2: 3 field(s) expected, got 2"));
  EXPECT_THAT(TypeErrorOf<Pair2>(Make(Pair3{1, 2, 3})), HasSubstr("2 field(s) expected, got 3"));
}

TEST(MessageTest, TupleNeedsItsExactArity) {
  const relay::Message m = Make(std::make_tuple(1, 2, 3));
  EXPECT_THAT((TypeErrorOf<std::tuple<int, int>>(m)), HasSubstr("2 field(s) expected, got 3"));
  EXPECT_EQ((m.get<std::tuple<int, int, int>>(0)), std::make_tuple(1, 2, 3));
}

TEST(MessageTest, NestedDifferenceIsLocated) {
  EXPECT_THAT(TypeErrorOf<OuterB>(Make(Outer{"n", A{1, "a"}})),
              HasSubstr("at .inner: missing fields 'y', 'z'"));
  const std::vector<A> two = {A{1, "a"}, A{2, "b"}};
  EXPECT_THAT(TypeErrorOf<std::vector<B>>(Make(two)), HasSubstr("at [0]: missing fields"));
  const std::vector<A> back = Make(two).get<std::vector<A>>(0);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].s, "b");
}

TEST(MessageTest, MapsOfPlainValuesStillConvert) {
  const std::map<std::string, int> counts = {{"b", 2}, {"a", 1}};
  EXPECT_EQ((Make(counts).get<std::map<std::string, int>>(0)), counts);
  const std::map<std::string, A> structs = {{"k", A{3, "c"}}};
  EXPECT_EQ((Make(structs).get<std::map<std::string, A>>(0)).at("k").x, 3);
}

TEST(MessageTest, IntegerOutOfRangeSaysTheValue) {
  const relay::Message m = Make(std::int64_t{5000000000}, -1);
  EXPECT_EQ(TypeErrorOf<int>(m, 0),
            "value 0: expected int, got positive integer: 5000000000, which does not fit int");
  EXPECT_THAT(TypeErrorOf<unsigned>(m, 1), HasSubstr("-1, which does not fit unsigned int"));
  EXPECT_EQ(m.get<std::int64_t>(0), 5000000000);
}

TEST(MessageTest, WrongScalarTypeStillNamesBothTypes) {
  EXPECT_EQ(TypeErrorOf<int>(Make(std::string("x"))), "value 0: expected int, got str");
}

}  // namespace
