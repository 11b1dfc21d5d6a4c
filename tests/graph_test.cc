// Graph topologies end to end, with real processes (API.md "Topologies:
// graphs and groupings"): by_key, broadcast, named outputs, fan-out, merge,
// a diamond, the wiring rules and accounting that names a graph edge. Every
// test asserts exact counts and sums; ProcessTest checks that no child
// process and no relay socket is left behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "relay/relay.h"
#include "tests/actors.h"
#include "tests/testing.h"

namespace {

using relay::testing::Counter;
using relay::testing::Forward;
using relay::testing::Many;
using relay::testing::ProcessTest;
using relay::testing::StartError;
using relay::testing::SumRange;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- by_key's documented hash, computed independently ----

// 64-bit FNV-1a.
std::uint64_t Fnv1a(const std::string& bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
// The msgpack encoding of a short string (fixstr: fewer than 32 bytes).
std::string PackShortString(const std::string& s) {
  return std::string(1, static_cast<char>(0xa0 | s.size())) + s;
}
// The msgpack encoding of a small non-negative integer (positive fixint).
std::string PackSmallInt(int i) { return std::string(1, static_cast<char>(i)); }

// ---- Word count ----

constexpr int kWords = 50;
constexpr int kLines = 1000;
constexpr int kWordsPerLine = 5;

// The j-th word of line i: every one of the kWords words, with uneven counts.
std::string WordOf(int i, int j) {
  const int n = i * kWordsPerLine + j;
  return "word" + std::to_string((n * 7 + n / 13) % kWords);
}

// Sends kLines lines of kWordsPerLine words.
class LineSource : public relay::Actor {
 public:
  void loop() override {
    for (int i = 0; i < kLines; ++i) {
      std::string line;
      for (int j = 0; j < kWordsPerLine; ++j) line += (j ? " " : "") + WordOf(i, j);
      send(line);
    }
  }
};

// Splits each line into words and sends each on.
class Tokenizer : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    std::istringstream words(m.get<std::string>(0));
    for (std::string w; words >> w;) send(w);
  }
};

// Counts the words it gets; puts (word, count, its name) for each at shutdown.
class WordCounter : public relay::Actor {
 public:
  explicit WordCounter(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { ++counts_[m.get<std::string>(0)]; }
  void shutdown() override {
    for (const auto& [word, count] : counts_) q_.put(word, count, name());
  }

 private:
  relay::Queue& q_;
  std::map<std::string, long long> counts_;
};

struct WordCount {
  std::map<std::string, long long> counts;   // summed over the counters
  std::map<std::string, std::string> where;  // word -> the counter that had it
  std::vector<std::string> split;            // words seen at more than one counter
};

// Runs source -> tokenizers(2) -> by_key counters(3) with fresh actors.
WordCount RunWordCount() {
  relay::Queue q;
  LineSource source;
  auto tokenizers = Many<Tokenizer>(2);
  auto counters = Many<WordCounter>(3, q);
  relay::Relay relay(20);
  relay.connect(relay::group("lines", source), relay::group("tokenize", tokenizers),
                relay::by_key(relay::group("count", counters)));
  relay.start();
  WordCount wc;
  while (auto m = q.get(std::chrono::seconds(1))) {
    auto [word, count, counter] = m->as<std::string, long long, std::string>();
    wc.counts[word] += count;
    if (const auto [at, fresh] = wc.where.emplace(word, counter); !fresh) {
      wc.split.push_back(word + " at " + at->second + " and " + counter);
    }
  }
  return wc;
}

using GraphTest = ProcessTest;

// Word count over by_key: each word is counted at exactly one counter, the
// counts are exact, the counter is the one the documented hash picks, and a
// second run (new relay, new actors) maps every word to the same counter.
TEST_F(GraphTest, WordCountByKeyIsExactAndStable) {
  std::map<std::string, long long> expected;
  for (int i = 0; i < kLines; ++i) {
    for (int j = 0; j < kWordsPerLine; ++j) ++expected[WordOf(i, j)];
  }
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(kWords));

  const WordCount first = RunWordCount();
  EXPECT_THAT(first.split, ::testing::IsEmpty());
  EXPECT_EQ(first.counts, expected);
  long long total = 0;
  for (const auto& [word, count] : first.counts) total += count;
  EXPECT_EQ(total, kLines * kWordsPerLine);
  // All three counters got words, and each word sits where FNV-1a of its
  // msgpack encoding, modulo 3, says.
  std::set<std::string> used;
  for (const auto& [word, counter] : first.where) {
    used.insert(counter);
    EXPECT_EQ(counter, "WordCounter-" + std::to_string(Fnv1a(PackShortString(word)) % 3)) << word;
  }
  EXPECT_EQ(used.size(), 3u);

  const WordCount second = RunWordCount();
  EXPECT_THAT(second.split, ::testing::IsEmpty());
  EXPECT_EQ(second.counts, expected);
  EXPECT_EQ(second.where, first.where);
}

// ---- by_key on value 1 ----

// Sends (i, i % 10) for i in [0, n).
class KeyedSource : public relay::Actor {
 public:
  explicit KeyedSource(long long n) : n_(n) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) send(i, static_cast<int>(i % 10));
  }

 private:
  long long n_;
};

// Puts (key, count, sum of value 0, its name) per key at shutdown.
class KeyTally : public relay::Actor {
 public:
  explicit KeyTally(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    auto [i, key] = m.as<long long, int>();
    auto& [count, sum] = per_key_[key];
    ++count;
    sum += i;
  }
  void shutdown() override {
    for (const auto& [key, cs] : per_key_) q_.put(key, cs.first, cs.second, name());
  }

 private:
  relay::Queue& q_;
  std::map<int, std::pair<long long, long long>> per_key_;
};

// What KeyTally actors put, per key: who had it, and the counts and sums.
struct KeyTotals {
  std::map<int, std::vector<std::string>> where;
  std::map<int, long long> counts, sums;
};
KeyTotals CollectKeys(relay::Queue& q) {
  KeyTotals t;
  while (auto m = q.get(std::chrono::seconds(1))) {
    auto [key, count, sum, who] = m->as<int, long long, long long, std::string>();
    t.where[key].push_back(who);
    t.counts[key] += count;
    t.sums[key] += sum;
  }
  return t;
}

// by_key(g, 1) partitions on the second value: every key reaches exactly one
// actor, the one the hash of that value picks (value 0 differs in every
// message, so hashing it would scatter each key).
TEST_F(GraphTest, ByKeyOnSecondValue) {
  constexpr long long kN = 3000;
  relay::Queue q;
  KeyedSource source(kN);
  auto tallies = Many<KeyTally>(4, q);
  relay::Relay relay(16);
  relay.connect(relay::group("src", source), relay::by_key(relay::group("keyed", tallies), 1));
  relay.start();
  auto [where, counts, sums] = CollectKeys(q);
  ASSERT_EQ(where.size(), 10u);
  for (int key = 0; key < 10; ++key) {
    EXPECT_EQ(where[key],
              std::vector<std::string>{"KeyTally-" + std::to_string(Fnv1a(PackSmallInt(key)) % 4)})
        << "key " << key;
    EXPECT_EQ(counts[key], kN / 10) << "key " << key;
    // i = key + 10 t for t in [0, 300).
    EXPECT_EQ(sums[key], key * (kN / 10) + 10 * SumRange(0, kN / 10)) << "key " << key;
  }
}

// A source merging into a named by_key group (relay::by_key("keyed", 1)):
// the keys of both sources meet at the same actor.
TEST_F(GraphTest, TwoSourcesMergeIntoOneByKeyGroup) {
  constexpr long long kN = 1000;
  relay::Queue q;
  KeyedSource one(kN), two(kN);
  auto tallies = Many<KeyTally>(3, q);
  relay::Relay relay(16);
  relay.connect(relay::group("one", one), relay::by_key(relay::group("keyed", tallies), 1));
  relay.connect(relay::group("two", two), relay::by_key("keyed", 1));
  relay.start();
  auto [where, counts, sums] = CollectKeys(q);
  ASSERT_EQ(where.size(), 10u);
  for (int key = 0; key < 10; ++key) {
    EXPECT_EQ(where[key].size(), 1u) << "key " << key;
    EXPECT_EQ(counts[key], 2 * kN / 10) << "key " << key;
    EXPECT_EQ(sums[key], 2 * (key * (kN / 10) + 10 * SumRange(0, kN / 10))) << "key " << key;
  }
}

// ---- Broadcast ----

// Puts (name, count, sum) of the numbers it got at shutdown.
class NamedTally : public relay::Actor {
 public:
  explicit NamedTally(relay::Queue& q) : q_(q) {}
  NamedTally(relay::Queue& q, std::string name) : relay::Actor(std::move(name)), q_(q) {}
  void recv(const relay::Message& m) override {
    ++count_;
    sum_ += m.get<long long>(0);
  }
  void shutdown() override { q_.put(name(), count_, sum_); }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
};

struct Tallied {
  long long count = 0;
  long long sum = 0;
  bool operator==(const Tallied&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Tallied& t) {
  return os << "{count " << t.count << ", sum " << t.sum << "}";
}
using Tallies = std::map<std::string, Tallied>;

// Drains the (name, count, sum) triples NamedTally actors put, by name.
Tallies DrainTallies(relay::Queue& q) {
  Tallies out;
  while (auto m = q.get(std::chrono::seconds(1))) {
    auto [name, count, sum] = m->as<std::string, long long, long long>();
    EXPECT_EQ(out.count(name), 0u) << name << " reported twice";
    out[name] = {count, sum};
  }
  return out;
}

// Every actor of a broadcast group receives every message, exactly once.
TEST_F(GraphTest, BroadcastReachesEveryActor) {
  constexpr long long kN = 2000;
  relay::Queue q;
  Counter source(5, kN);
  auto all = Many<NamedTally>(3, q);
  relay::Relay relay(10);
  relay.connect(relay::group("src", source), relay::broadcast(relay::group("all", all)));
  relay.start();
  const Tallied each{kN, SumRange(5, kN)};
  EXPECT_EQ(DrainTallies(q),
            (Tallies{{"NamedTally-0", each}, {"NamedTally-1", each}, {"NamedTally-2", each}}));
}

// ---- Named outputs, fan-out, merge, diamond ----

// Even numbers go to the default output, odd ones to "bad".
class Parser : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    if (v % 2 == 0) {
      send(v);
    } else {
      send_to("bad", v);
    }
  }
};

// The sum of the numbers in [0, n) of the given parity.
long long SumOfParity(long long n, int parity) {
  long long s = 0;
  for (long long i = parity; i < n; i += 2) s += i;
  return s;
}

// send() travels the default output's edge, send_to("bad") the branch from
// relay::output("parse", "bad"), each message exactly once.
TEST_F(GraphTest, NamedOutputBranch) {
  constexpr long long kN = 3000;
  relay::Queue q;
  Counter source(0, kN);
  auto parsers = Many<Parser>(2);
  NamedTally good(q, "good-sink");
  NamedTally errors(q, "error-sink");
  relay::Relay relay(10);
  relay.connect(relay::group("src", source), relay::group("parse", parsers),
                relay::group("good", good));
  relay.connect(relay::output("parse", "bad"), relay::group("errors", errors));
  EXPECT_TRUE(parsers[0]->sender());
  EXPECT_TRUE(errors.receiver());
  EXPECT_FALSE(errors.sender());
  EXPECT_EQ(errors.group(), "errors");
  relay.start();
  EXPECT_EQ(DrainTallies(q), (Tallies{{"good-sink", {kN / 2, SumOfParity(kN, 0)}},
                                      {"error-sink", {kN / 2, SumOfParity(kN, 1)}}}));
}

// Fan-out: a second edge from parse's default output gets its own copy of
// every message, as the first does.
TEST_F(GraphTest, FanOutToTwoGroups) {
  constexpr long long kN = 3000;
  relay::Queue q;
  Counter source(0, kN);
  auto parsers = Many<Forward>(2);
  NamedTally sink(q, "sink");
  NamedTally archive1(q, "archive-1"), archive2(q, "archive-2");
  relay::Relay relay(10);
  relay.connect(relay::group("src", source), relay::group("parse", parsers),
                relay::group("sink", sink));
  relay.connect("parse", relay::group("archive", archive1, archive2));
  relay.start();
  const Tallies got = DrainTallies(q);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.at("sink"), (Tallied{kN, SumRange(0, kN)}));
  const Tallied a1 = got.at("archive-1"), a2 = got.at("archive-2");
  EXPECT_EQ(a1.count + a2.count, kN);
  EXPECT_EQ(a1.sum + a2.sum, SumRange(0, kN));
}

// Sends start..start+n-1, sleeping 2 ms after every 10th; sets `done` once
// its loop has sent everything.
class SlowCounter : public relay::Actor {
 public:
  SlowCounter(long long start, long long n, std::atomic<long long>& done)
      : start_(start), n_(n), done_(done) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) {
      send(start_ + i);
      if (i % 10 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    done_ = 1;
  }

 private:
  long long start_;
  long long n_;
  std::atomic<long long>& done_;
};

// A NamedTally that also reports, at shutdown, whether the slow source had
// finished by then (cell `done`).
class MergeSink : public relay::Actor {
 public:
  MergeSink(relay::Queue& q, std::atomic<long long>& done) : q_(q), done_(done) {}
  void recv(const relay::Message& m) override {
    ++count_;
    sum_ += m.get<long long>(0);
  }
  void shutdown() override { q_.put(name(), count_, sum_, done_.load()); }

 private:
  relay::Queue& q_;
  std::atomic<long long>& done_;
  long long count_ = 0;
  long long sum_ = 0;
};

// Merge: a fast and a slow source feed one group; every message of both
// arrives, and each receiver's stream ends only after the slow one finished.
TEST_F(GraphTest, MergeOfTwoSourcesOfDifferentSpeeds) {
  relay::testing::SharedBlock shared;
  relay::Queue q;
  Counter fast(0, 2000);
  SlowCounter slow(2000, 200, shared.at(0));
  MergeSink m1(q, shared.at(0)), m2(q, shared.at(0));
  relay::Relay relay(10);
  relay.connect(relay::group("fast", fast), relay::group("merge", m1, m2));
  relay.connect(relay::group("slow", slow), "merge");
  relay.start();
  long long count = 0, sum = 0;
  int sinks = 0;
  while (auto m = q.get(std::chrono::seconds(1))) {
    auto [name, c, s, slow_done] = m->as<std::string, long long, long long, long long>();
    EXPECT_EQ(slow_done, 1) << name << " ended before the slow source finished";
    count += c;
    sum += s;
    ++sinks;
  }
  EXPECT_EQ(sinks, 2);
  EXPECT_EQ(count, 2200);
  EXPECT_EQ(sum, SumRange(0, 2200));
}

// A diamond a -> {b, c} -> d, d defined once and referred to by name from
// c's connect(): d gets every message twice, once through each side.
TEST_F(GraphTest, Diamond) {
  constexpr long long kN = 1000;
  relay::Queue q;
  Counter a(0, kN);
  auto b = Many<Forward>(2);
  Forward c;
  NamedTally d(q, "d");
  relay::Relay relay(10);
  relay.connect(relay::group("a", a), relay::group("b", b), relay::group("d", d));
  relay.connect("a", relay::group("c", c), "d");
  relay.start();
  EXPECT_EQ(DrainTallies(q), (Tallies{{"d", {2 * kN, 2 * SumRange(0, kN)}}}));
}

// ---- The rules ----

class NoRecv : public relay::Actor {
 public:
  void loop() override {}
};

class NoLoop : public relay::Actor {
 public:
  void recv(const relay::Message&) override {}
};

// Runs `connect` expecting std::invalid_argument; returns its text.
template <class F>
std::string InvalidArgument(F&& connect) {
  try {
    connect();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// A cycle is refused at connect(), naming the groups on it.
TEST_F(GraphTest, CycleIsRefused) {
  Counter src(0, 1);
  Forward x, y;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("x", x), relay::group("y", y));
  EXPECT_THAT(InvalidArgument([&] { relay.connect("y", "x"); }),
              AllOf(HasSubstr("cycle"), HasSubstr("'x' -> 'y' -> 'x'")));
}

// A name no earlier connect() defined is refused, naming it and the groups.
TEST_F(GraphTest, UnknownNameIsRefused) {
  Counter src(0, 1);
  Forward x;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("x", x));
  EXPECT_THAT(InvalidArgument([&] { relay.connect("x", "nowhere"); }),
              AllOf(HasSubstr("no group named 'nowhere'"), HasSubstr("'src'"), HasSubstr("'x'")));
}

// A group defined twice is refused, naming it.
TEST_F(GraphTest, GroupDefinedTwiceIsRefused) {
  Counter src(0, 1), other(0, 1);
  Forward x;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("x", x));
  EXPECT_THAT(InvalidArgument([&] { relay.connect(relay::group("src", other), "x"); }),
              HasSubstr("group 'src' is defined twice"));
}

// An output on a group that does not exist is refused, naming both.
TEST_F(GraphTest, OutputOnUnknownGroupIsRefused) {
  Counter src(0, 1);
  Forward x;
  NoLoop sink;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("x", x));
  EXPECT_THAT(InvalidArgument([&] {
                relay.connect(relay::output("ghost", "bad"), relay::group("errors", sink));
              }),
              AllOf(HasSubstr("no group named 'ghost'"), HasSubstr("output 'bad'")));
}

// A receiving group whose actors do not override recv() is refused at
// start(), before any process is started, naming the group.
TEST_F(GraphTest, ReceiverWithoutRecvIsRefused) {
  Counter src(0, 1);
  NoRecv r;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("r", r));
  EXPECT_THAT(InvalidArgument([&] { relay.start(); }),
              AllOf(HasSubstr("group 'r'"), HasSubstr("recv()")));
  EXPECT_FALSE(src.pid().has_value());
}

// A source (a second one, merging in) whose actors do not override loop() is
// refused at start(), naming the group.
TEST_F(GraphTest, SourceWithoutLoopIsRefused) {
  Counter src(0, 1);
  NoLoop s, sink;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("sink", sink));
  relay.connect(relay::group("s", s), "sink");
  EXPECT_THAT(InvalidArgument([&] { relay.start(); }),
              AllOf(HasSubstr("group 's'"), HasSubstr("loop()")));
  EXPECT_FALSE(src.pid().has_value());
}

// Sends every number to the output named "oops", which has no edge.
class Mistyped : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send_to("oops", m.get<long long>(0)); }
};

// send_to() an output with no edge fails the actor; the run's ActorError
// names the group, the output and the outputs that exist.
TEST_F(GraphTest, SendToOutputWithoutEdgeFailsTheRun) {
  relay::Queue q;
  Counter src(0, 100);
  Mistyped parse;
  NamedTally good(q, "good"), errors(q, "errors");
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("parse", parse), relay::group("good", good));
  relay.connect(relay::output("parse", "bad"), relay::group("errors", errors));
  const std::string text = StartError<relay::ActorError>(relay);
  EXPECT_THAT(text, AllOf(HasSubstr("[parse]"), HasSubstr("group 'parse'"),
                          HasSubstr("output named 'oops'"), HasSubstr("the default one"),
                          HasSubstr("'bad'")));
}

// Sends every number with send(), on a group whose only edge leaves "bad".
class DefaultSender : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m.get<long long>(0)); }
};

// send() with no edge from the default output fails the same way, naming the
// outputs that exist.
TEST_F(GraphTest, SendWithoutDefaultEdgeFailsTheRun) {
  relay::Queue q;
  Counter src(0, 100);
  DefaultSender parse;
  NamedTally errors(q, "errors");
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("parse", parse));
  relay.connect(relay::output("parse", "bad"), relay::group("errors", errors));
  const std::string text = StartError<relay::ActorError>(relay);
  EXPECT_THAT(text, AllOf(HasSubstr("group 'parse'"), HasSubstr("default output"),
                          HasSubstr("its outputs: 'bad'")));
}

// ---- Accounting on a graph edge ----

// Sets an environment variable for its scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// For each number: once to the default output, twice to "bad".
class Splitter : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    const long long v = m.get<long long>(0);
    send(v);
    send_to("bad", v);
    send_to("bad", v);
  }
};

// With every actor's 150th message counted but never sent, only the
// splitter sends that many (the source sends 100): its 150th is the third of
// item 50, on its "bad" output. start() names that edge, in the form
// 'group'.'output' -> 'group', with its counts, and not the default edge.
TEST_F(GraphTest, AccountingNamesTheNamedOutputEdge) {
  ScopedEnv drop("RELAY_TESTING_DROP_NTH_MESSAGE", "150");
  relay::Queue q;
  Counter src(0, 100);
  Splitter parse;
  NamedTally good(q, "good"), errors(q, "errors");
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("parse", parse), relay::group("good", good));
  relay.connect(relay::output("parse", "bad"), relay::group("errors", errors));
  const std::string text = StartError<relay::AccountingError>(relay);
  EXPECT_THAT(text, HasSubstr("edge 'parse'.'bad' -> 'errors': sent 200, received 199")) << text;
  EXPECT_THAT(text, Not(HasSubstr("'parse' -> 'good'"))) << text;
  EXPECT_THAT(text, Not(HasSubstr("'src' -> 'parse'"))) << text;
}

// On a diamond, a lost message on one side names that side's default edge
// ('a' -> 'c'), not the other.
TEST_F(GraphTest, AccountingNamesTheDefaultEdgeOfADiamond) {
  ScopedEnv drop("RELAY_TESTING_DROP_NTH_MESSAGE", "150");
  relay::Queue q;
  Counter a(0, 100);
  Forward b;
  Splitter c;  // sends 100 by default, 200 to "bad": its 150th is on "bad"
  NamedTally d(q, "d"), errors(q, "errors");
  relay::Relay relay;
  relay.connect(relay::group("a", a), relay::group("b", b), relay::group("d", d));
  relay.connect("a", relay::group("c", c), "d");
  relay.connect(relay::output("c", "bad"), relay::group("errors", errors));
  const std::string text = StartError<relay::AccountingError>(relay);
  // a sends 200 (each item to b and to c): its 150th is lost on one of them.
  EXPECT_THAT(text, AnyOf(HasSubstr("edge 'a' -> 'b': sent 100, received 99"),
                          HasSubstr("edge 'a' -> 'c': sent 100, received 99")))
      << text;
  EXPECT_THAT(text, HasSubstr("edge 'c'.'bad' -> 'errors'")) << text;
  EXPECT_THAT(text, Not(HasSubstr("'b' -> 'd'"))) << text;
}

// ---- More on keys ----

// msgpack's shortest encoding of an integer, as by_key hashes it.
std::string BigEndian(std::uint64_t v, int bytes) {
  std::string out;
  for (int b = bytes - 1; b >= 0; --b) out += static_cast<char>((v >> (8 * b)) & 0xff);
  return out;
}
std::string PackInteger(long long i) {
  if (i >= 0) {
    const auto u = static_cast<std::uint64_t>(i);
    if (u < 128) return BigEndian(u, 1);
    if (u < 256) return "\xcc" + BigEndian(u, 1);
    if (u < 65536) return "\xcd" + BigEndian(u, 2);
    if (u < (1ull << 32)) return "\xce" + BigEndian(u, 4);
    return "\xcf" + BigEndian(u, 8);
  }
  const auto u = static_cast<std::uint64_t>(i);
  if (i >= -32) return BigEndian(u, 1);
  if (i >= -128) return "\xd0" + BigEndian(u, 1);
  if (i >= -32768) return "\xd1" + BigEndian(u, 2);
  if (i >= -2147483648ll) return "\xd2" + BigEndian(u, 4);
  return "\xd3" + BigEndian(u, 8);
}
std::string PackString(const std::string& s) {
  if (s.size() < 32) return PackShortString(s);
  if (s.size() < 256) return "\xd9" + BigEndian(s.size(), 1) + s;
  return "\xda" + BigEndian(s.size(), 2) + s;
}

// Sends (tag, key) with keys of many types and sizes, each case three times.
class TypedKeys : public relay::Actor {
 public:
  void loop() override {
    for (int round = 0; round < 3; ++round) {
      send(std::string("int 7"), 7);
      send(std::string("long long 7"), 7LL);
      send(std::string("unsigned 7"), 7u);
      send(std::string("short 7"), static_cast<short>(7));
      send(std::string("200"), 200);
      send(std::string("300"), 300);
      send(std::string("70000"), 70000);
      send(std::string("2^40"), 1LL << 40);
      send(std::string("-1"), -1);
      send(std::string("-100"), -100);
      send(std::string("-40000"), -40000);
      send(std::string("40 chars"), std::string(40, 'k'));
      send(std::string("300 chars"), std::string(300, 'q'));
      send(std::string("empty"), std::string());
    }
  }
};

// Puts (tag, its name) for each message.
class WhoGotIt : public relay::Actor {
 public:
  explicit WhoGotIt(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { q_.put(m.get<std::string>(0), name()); }

 private:
  relay::Queue& q_;
};

// by_key hashes the key's msgpack encoding, integers in their shortest form:
// 7 as an int, a long long, an unsigned or a short reaches the same actor,
// and every key reaches the actor FNV-1a of its encoding picks, for every
// integer width and string length.
TEST_F(GraphTest, ByKeyHashesTheShortestWireEncoding) {
  constexpr int kActors = 7;
  relay::Queue q;
  TypedKeys source;
  auto receivers = Many<WhoGotIt>(kActors, q);
  relay::Relay relay(4);
  relay.connect(relay::group("src", source), relay::by_key(relay::group("keyed", receivers), 1));
  relay.start();
  std::map<std::string, std::vector<std::string>> got;
  while (auto m = q.get(std::chrono::seconds(1))) {
    auto [tag, who] = m->as<std::string, std::string>();
    got[tag].push_back(who);
  }
  auto at = [&](const std::string& encoding) {
    const std::string who = "WhoGotIt-" + std::to_string(Fnv1a(encoding) % kActors);
    return std::vector<std::string>{who, who, who};
  };
  const std::map<std::string, std::vector<std::string>> want = {
      {"int 7", at(PackInteger(7))},
      {"long long 7", at(PackInteger(7))},
      {"unsigned 7", at(PackInteger(7))},
      {"short 7", at(PackInteger(7))},
      {"200", at(PackInteger(200))},
      {"300", at(PackInteger(300))},
      {"70000", at(PackInteger(70000))},
      {"2^40", at(PackInteger(1LL << 40))},
      {"-1", at(PackInteger(-1))},
      {"-100", at(PackInteger(-100))},
      {"-40000", at(PackInteger(-40000))},
      {"40 chars", at(PackString(std::string(40, 'k')))},
      {"300 chars", at(PackString(std::string(300, 'q')))},
      {"empty", at(PackString(""))},
  };
  EXPECT_EQ(got, want);
}

// A message without the value its by_key edge is keyed by fails its sender;
// the error names the edge and the value.
TEST_F(GraphTest, MessageWithoutItsKeyFailsTheSender) {
  relay::Queue q;
  Counter source(0, 10);  // one value per message
  auto tallies = Many<NamedTally>(2, q);
  relay::Relay relay;
  relay.connect(relay::group("src", source), relay::by_key(relay::group("keyed", tallies), 1));
  const std::string text = StartError<relay::ActorError>(relay);
  EXPECT_THAT(text,
              AllOf(HasSubstr("[src]"), HasSubstr("'src' -> 'keyed'"), HasSubstr("no value 1")));
}

// Sends start..start+n-1, all with the key "same".
class OneKey : public relay::Actor {
 public:
  OneKey(long long start, long long n) : start_(start), n_(n) {}
  void loop() override {
    for (long long i = start_; i < start_ + n_; ++i) send(i, std::string("same"));
  }

 private:
  long long start_, n_;
};

// A NamedTally that sleeps a little now and then.
class SlowTally : public NamedTally {
 public:
  using NamedTally::NamedTally;
  void recv(const relay::Message& m) override {
    if (m.get<long long>(0) % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    NamedTally::recv(m);
  }
};

// With maxsize 1 and every message keyed to one slow actor of four, two
// senders wait for that actor's credit (no re-routing to the idle ones) and
// nothing is lost.
TEST_F(GraphTest, ByKeyHotKeyWithMaxsizeOne) {
  relay::Queue q;
  OneKey a(0, 1000), b(1000, 1000);
  auto tallies = Many<SlowTally>(4, q);
  relay::Relay relay(1);
  relay.connect(relay::group("src", a, b), relay::by_key(relay::group("keyed", tallies), 1));
  relay.start();
  const std::string hot = "SlowTally-" + std::to_string(Fnv1a(PackShortString("same")) % 4);
  Tallies want;
  for (int i = 0; i < 4; ++i) want["SlowTally-" + std::to_string(i)] = {0, 0};
  want[hot] = {2000, SumRange(0, 2000)};
  EXPECT_EQ(DrainTallies(q), want);
}

// Broadcast with one slow receiver and maxsize 2: the fast ones wait for
// it, and each still gets every message.
TEST_F(GraphTest, BroadcastWithASlowReceiverAndSmallMaxsize) {
  constexpr long long kN = 1000;
  relay::Queue q;
  Counter source(0, kN);
  NamedTally fast1(q, "fast-1"), fast2(q, "fast-2");
  SlowTally slow(q, "slow");
  relay::Relay relay(2);
  relay.connect(relay::group("src", source),
                relay::broadcast(relay::group("all", fast1, slow, fast2)));
  relay.start();
  const Tallied each{kN, SumRange(0, kN)};
  EXPECT_EQ(DrainTallies(q), (Tallies{{"fast-1", each}, {"fast-2", each}, {"slow", each}}));
}

// Merge with a source that sends nothing: the receiver's stream ends after
// both, with the other source's messages all there.
TEST_F(GraphTest, MergeWithAnEmptySource) {
  relay::Queue q;
  Counter busy(0, 500), idle(0, 0);
  NamedTally sink(q, "sink");
  relay::Relay relay;
  relay.connect(relay::group("busy", busy), relay::group("sink", sink));
  relay.connect(relay::group("idle", idle), "sink");
  relay.start();
  EXPECT_EQ(DrainTallies(q), (Tallies{{"sink", {500, SumRange(0, 500)}}}));
}

// A named output fanning out to two groups, one of them by key and one
// broadcast: each edge gets every message sent to "bad".
TEST_F(GraphTest, NamedOutputFansOutWithGroupings) {
  constexpr long long kN = 2000;
  relay::Queue q;
  Counter source(0, kN);
  auto parsers = Many<Parser>(2);
  NamedTally good(q, "good");
  NamedTally k1(q, "keyed-1"), k2(q, "keyed-2");
  NamedTally b1(q, "bcast-1"), b2(q, "bcast-2");
  relay::Relay relay(8);
  relay.connect(relay::group("src", source), relay::group("parse", parsers),
                relay::group("good", good));
  relay.connect(relay::output("parse", "bad"), relay::by_key(relay::group("keyed", k1, k2)));
  relay.connect(relay::output("parse", "bad"), relay::broadcast(relay::group("bcast", b1, b2)));
  relay.start();
  const Tallies got = DrainTallies(q);
  ASSERT_EQ(got.size(), 5u);
  const Tallied odd{kN / 2, SumOfParity(kN, 1)};
  EXPECT_EQ(got.at("good"), (Tallied{kN / 2, SumOfParity(kN, 0)}));
  EXPECT_EQ(got.at("bcast-1"), odd);
  EXPECT_EQ(got.at("bcast-2"), odd);
  EXPECT_EQ(got.at("keyed-1").count + got.at("keyed-2").count, odd.count);
  EXPECT_EQ(got.at("keyed-1").sum + got.at("keyed-2").sum, odd.sum);
}

// A lost message on a broadcast edge: start() names the edge and the pair.
TEST_F(GraphTest, AccountingNamesABroadcastEdge) {
  ScopedEnv drop("RELAY_TESTING_DROP_NTH_MESSAGE", "150");
  relay::Queue q;
  Counter src(0, 100);  // 300 copies: its 150th is lost, at one receiver
  auto all = Many<NamedTally>(3, q);
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::broadcast(relay::group("all", all)));
  const std::string text = StartError<relay::AccountingError>(relay);
  EXPECT_THAT(text, HasSubstr("edge 'src' -> 'all': sent 300, received 299")) << text;
  EXPECT_THAT(text, HasSubstr(": sent 100, received 99")) << text;
}

// A lost message on one edge of a fan-out: start() names that edge.
TEST_F(GraphTest, AccountingNamesOneEdgeOfAFanOut) {
  ScopedEnv drop("RELAY_TESTING_DROP_NTH_MESSAGE", "150");
  relay::Queue q;
  Counter src(0, 100);
  Forward parse;  // 200 copies, one per edge: its 150th is lost on one of them
  NamedTally sink(q, "sink"), archive(q, "archive");
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("parse", parse), relay::group("sink", sink));
  relay.connect("parse", relay::group("archive", archive));
  const std::string text = StartError<relay::AccountingError>(relay);
  EXPECT_THAT(text, AnyOf(HasSubstr("edge 'parse' -> 'sink': sent 100, received 99"),
                          HasSubstr("edge 'parse' -> 'archive': sent 100, received 99")))
      << text;
  EXPECT_THAT(text, Not(HasSubstr("'src' -> 'parse'"))) << text;
}

// ---- More rules ----

// An edge from a group to itself is a cycle too.
TEST_F(GraphTest, SelfLoopIsRefused) {
  Counter src(0, 1);
  Forward x;
  relay::Relay relay;
  relay.connect(relay::group("src", src), relay::group("x", x));
  EXPECT_THAT(InvalidArgument([&] { relay.connect("x", "x"); }),
              AllOf(HasSubstr("cycle"), HasSubstr("'x' -> 'x'")));
}

// A connect() that throws leaves the relay as it was: after a refused cycle
// and a refused second definition, the relay runs the graph built before,
// exactly, and the actor of the refused definition is free for another relay.
TEST_F(GraphTest, RefusedConnectLeavesTheRelayAsItWas) {
  constexpr long long kN = 1000;
  relay::Queue q;
  Counter src(0, kN);
  auto middle = Many<Forward>(2);
  NamedTally sink(q, "sink");
  NamedTally stray(q, "stray");
  relay::Relay relay(10);
  relay.connect(relay::group("src", src), relay::group("mid", middle), relay::group("sink", sink));
  EXPECT_THAT(InvalidArgument([&] { relay.connect("sink", "mid"); }), HasSubstr("cycle"));
  EXPECT_THAT(InvalidArgument([&] { relay.connect("mid", relay::group("sink", stray)); }),
              HasSubstr("group 'sink' is defined twice"));
  EXPECT_FALSE(sink.sender());
  EXPECT_FALSE(stray.receiver());
  EXPECT_EQ(stray.group(), "");
  relay.start();
  EXPECT_EQ(DrainTallies(q), (Tallies{{"sink", {kN, SumRange(0, kN)}}}));
}

// Even numbers to the default output, odd ones to "odd": a source with a
// named output.
class SplitSource : public relay::Actor {
 public:
  explicit SplitSource(long long n) : n_(n) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) {
      if (i % 2 == 0) {
        send(i);
      } else {
        send_to("odd", i);
      }
    }
  }

 private:
  long long n_;
};

// A source's named output is an edge like any other.
TEST_F(GraphTest, SourceWithANamedOutput) {
  constexpr long long kN = 1000;
  relay::Queue q;
  SplitSource src(kN);
  NamedTally even(q, "even"), odd(q, "odd");
  relay::Relay relay(10);
  relay.connect(relay::group("src", src), relay::group("even", even));
  relay.connect(relay::output("src", "odd"), relay::group("odd", odd));
  relay.start();
  EXPECT_EQ(DrainTallies(q), (Tallies{{"even", {kN / 2, SumOfParity(kN, 0)}},
                                      {"odd", {kN / 2, SumOfParity(kN, 1)}}}));
}

}  // namespace
