// End-to-end tests of the seed's scenarios, with real processes.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "relay/relay.h"
#include "tests/testing.h"

namespace {

using ::testing::HasSubstr;
using relay::testing::ProcessTest;

class Producer : public relay::Actor {
 public:
  explicit Producer(int n, int start = 0) : n_(n), start_(start) {}
  void loop() override {
    for (int i = start_; i < start_ + n_; ++i) send(i, std::string("item"));
  }

 private:
  int n_;
  int start_;
};

class Worker : public relay::Actor {
 public:
  void recv(const relay::Message& m) override {
    auto [i, s] = m.as<int, std::string>();
    send(i + 1, s);
  }
};

class Consumer : public relay::Actor {
 public:
  explicit Consumer(relay::Queue& results) : results_(results) {}
  void startup() override { results_.put(std::string("startup"), name()); }
  void recv(const relay::Message& m) override { results_.put(m.get<int>(0)); }
  void shutdown() override { results_.put(std::string("shutdown"), name()); }

 private:
  relay::Queue& results_;
};

// Drains a queue after the run: the ints, sorted, and the markers.
struct Drained {
  std::vector<int> values;
  std::vector<std::string> markers;
};
Drained Drain(relay::Queue& q) {
  Drained d;
  while (auto m = q.get_nowait()) {
    if (m->size() == 1) {
      d.values.push_back(m->get<int>(0));
    } else {
      d.markers.push_back(m->get<std::string>(0) + ":" + m->get<std::string>(1));
    }
  }
  std::sort(d.values.begin(), d.values.end());
  std::sort(d.markers.begin(), d.markers.end());
  return d;
}

std::vector<int> Range(int from, int to) {
  std::vector<int> v(static_cast<std::size_t>(to - from));
  std::iota(v.begin(), v.end(), from);
  return v;
}

using PipelineTest = ProcessTest;

// 1-1: every message arrives once; startup and shutdown run once.
TEST_F(PipelineTest, OneToOne) {
  relay::Queue results;
  Producer producer(100);
  Consumer consumer(results);
  relay::Relay relay;
  relay.connect(producer, consumer);
  relay.start();
  Drained d = Drain(results);
  EXPECT_EQ(d.values, Range(0, 100));
  EXPECT_EQ(d.markers,
            (std::vector<std::string>{"shutdown:Consumer-0", "startup:Consumer-0"}));
  EXPECT_EQ(producer.exitcode(), 0);
  EXPECT_EQ(consumer.exitcode(), 0);
  EXPECT_FALSE(producer.is_alive());
}

// The program of API.md: 1-4-1 with maxsize.
TEST_F(PipelineTest, OneToManyToOne) {
  relay::Queue results;
  Producer producer(1000);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(std::make_unique<Worker>());
  Consumer consumer(results);
  relay::Relay relay(50, "test");
  relay.connect(producer, workers, consumer);
  relay.start();
  Drained d = Drain(results);
  EXPECT_EQ(d.values, Range(1, 1001));
  EXPECT_EQ(workers[3]->name(), "Worker-3");
  EXPECT_EQ(workers[3]->group(), "group-1");
}

}  // namespace
