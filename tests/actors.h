// tests/actors.h: the small actors many tests wire together: a counting
// source, a forwarder and a sink that reports how many numbers it received
// and their sum, plus helpers to check those totals.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "relay/relay.h"

namespace relay::testing {

// Sends the numbers start, start+1, ..., start+n-1.
class Counter : public relay::Actor {
 public:
  Counter(long long start, long long n) : start_(start), n_(n) {}
  void loop() override {
    for (long long i = 0; i < n_; ++i) send(start_ + i);
  }

 private:
  long long start_;
  long long n_;
};

// Puts each number it receives to `q`.
class PutEach : public relay::Actor {
 public:
  explicit PutEach(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override { q_.put(m.get<long long>(0)); }

 private:
  relay::Queue& q_;
};

// Passes each number on.
class Forward : public relay::Actor {
 public:
  void recv(const relay::Message& m) override { send(m.get<long long>(0)); }
};

// Puts (count, sum) of the numbers it received to `q` in shutdown().
class Tally : public relay::Actor {
 public:
  explicit Tally(relay::Queue& q) : q_(q) {}
  void recv(const relay::Message& m) override {
    ++count_;
    sum_ += m.get<long long>(0);
  }
  void shutdown() override { q_.put(count_, sum_); }

 private:
  relay::Queue& q_;
  long long count_ = 0;
  long long sum_ = 0;
};

// Adds up the (count, sum) pairs Tally actors put to `q`.
inline std::pair<long long, long long> Collect(relay::Queue& q) {
  long long count = 0, sum = 0;
  while (auto m = q.get_nowait()) {
    auto [c, s] = m->as<long long, long long>();
    count += c;
    sum += s;
  }
  return {count, sum};
}

// from + (from+1) + ... + (from+n-1).
inline long long SumRange(long long from, long long n) { return n * from + n * (n - 1) / 2; }

// Runs relay.start(handler) expecting it to throw E; returns E's text, or ""
// after recording a test failure if it returned or threw something else.
template <class E>
std::string StartError(relay::Relay& relay, relay::Handler* handler = nullptr) {
  try {
    relay.start(handler);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "start() threw another error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "start() returned normally";
  return "";
}

// n actors of type T, each made from `args`.
template <class T, class... Args>
std::vector<std::unique_ptr<T>> Many(int n, Args&... args) {
  std::vector<std::unique_ptr<T>> v;
  for (int i = 0; i < n; ++i) v.push_back(std::make_unique<T>(args...));
  return v;
}

}  // namespace relay::testing
