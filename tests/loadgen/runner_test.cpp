// Scenario scheduling with a fake target (no network): the server scenario sends on the Poisson
// schedule whatever the completions (open loop), the others never exceed their concurrency.
// The runner keeps real time, so the checks that read clocks leave a loaded 2-core machine
// room: a request is never sent early, and late by far less than the gap between what an open
// and a closed loop would do.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "loadgen/runner.h"
#include "runtime/engine.h"

namespace fathom::loadgen {
namespace {

// Answers every request after `latency_s` with `tokens` evenly spaced chunks; tracks how many
// requests were in flight at once.
class FakeTarget : public Target {
 public:
  explicit FakeTarget(double latency_s, int tokens = 4) : latency_s_(latency_s), tokens_(tokens) {}
  RequestOutcome send(const WorkItem& item) override {
    RequestOutcome out;
    out.t_sent = now_seconds();
    const int64_t now_in_flight = ++in_flight_;
    int64_t seen = max_in_flight_.load();
    while (now_in_flight > seen && !max_in_flight_.compare_exchange_weak(seen, now_in_flight)) {
    }
    for (int i = 0; i < tokens_; ++i) {
      std::this_thread::sleep_for(std::chrono::duration<double>(latency_s_ / tokens_));
      out.chunk_times.push_back(now_seconds());
    }
    out.t_first_token = out.chunk_times.empty() ? 0 : out.chunk_times.front();
    out.output_tokens = tokens_;
    out.prompt_tokens = item.prompt_tokens;
    --in_flight_;
    out.t_end = now_seconds();
    return out;
  }
  std::string describe() const override { return "fake"; }
  int64_t max_in_flight() const { return max_in_flight_.load(); }

 private:
  double latency_s_;                   // per request
  int tokens_;                         // chunks per request
  std::atomic<int64_t> in_flight_{0};  // now
  std::atomic<int64_t> max_in_flight_{0};
};

Workload workload() {
  return Workload::synthetic(*plan::LengthDistribution::parse("4"), *plan::LengthDistribution::parse("4"), 1);
}

TEST(Runner, ServerScenarioSendsOnThePoissonSchedule) {
  // Each request takes longer than the mean gap, so a closed loop would fall behind; the open
  // loop must still send every request at its arrival time.
  FakeTarget target(/*latency_s=*/0.5);
  const Workload w = workload();
  RunOptions ro;
  ro.scenario = Scenario::kServer;
  ro.qps = 40;
  ro.requests = 20;
  ro.seed = 7;
  auto run = run_scenario(target, w, ro);
  ASSERT_TRUE(run) << run.status().to_string();
  const std::vector<double> arrivals = server_schedule(40, 20, 7);
  ASSERT_EQ(run->records.size(), 20u);
  for (size_t i = 0; i < arrivals.size(); ++i) {
    const RequestRecord& r = run->records[i];
    EXPECT_DOUBLE_EQ(r.t_scheduled, arrivals[i]);
    EXPECT_GE(r.outcome.t_sent, arrivals[i] - 1e-3) << i;
    // A closed loop would send request i after i x 0.5 s of answers; open, it is on time.
    EXPECT_LT(r.outcome.t_sent, arrivals[i] + 0.25) << i;
    EXPECT_FALSE(r.queued);
  }
  EXPECT_GT(target.max_in_flight(), 1);
}

TEST(Runner, ServerScenarioQueuesPastTheConcurrencyLimit) {
  FakeTarget target(/*latency_s=*/0.1);
  const Workload w = workload();
  RunOptions ro;
  ro.scenario = Scenario::kServer;
  ro.qps = 100;
  ro.requests = 12;
  ro.concurrency = 2;
  auto run = run_scenario(target, w, ro);
  ASSERT_TRUE(run);
  EXPECT_LE(target.max_in_flight(), 2);
  int64_t queued = 0;
  for (const RequestRecord& r : run->records) {
    queued += r.queued;
    EXPECT_GE(r.outcome.t_sent, r.t_scheduled - 1e-3);
    EXPECT_TRUE(r.outcome.ok());
  }
  EXPECT_GT(queued, 0);
  EXPECT_GT(run->max_queue_depth, 0);
}

TEST(Runner, OfflineAndSingleStreamRespectConcurrency) {
  const Workload w = workload();
  {
    FakeTarget target(0.1);  // long enough that the three workers overlap on a loaded machine
    RunOptions ro;
    ro.scenario = Scenario::kOffline;
    ro.requests = 12;
    ro.concurrency = 3;
    auto run = run_scenario(target, w, ro);
    ASSERT_TRUE(run);
    EXPECT_EQ(run->records.size(), 12u);
    EXPECT_EQ(target.max_in_flight(), 3);
  }
  {
    FakeTarget target(0.01);
    RunOptions ro;
    ro.scenario = Scenario::kSingleStream;
    ro.requests = 5;
    ro.concurrency = 8;  // ignored: one at a time
    auto run = run_scenario(target, w, ro);
    ASSERT_TRUE(run);
    EXPECT_EQ(target.max_in_flight(), 1);
    for (size_t i = 1; i < run->records.size(); ++i)
      EXPECT_GE(run->records[i].outcome.t_sent, run->records[i - 1].outcome.t_end - 1e-6);
  }
}

TEST(Runner, DurationBoundsTheRun) {
  FakeTarget target(0.01, 1);
  const Workload w = workload();
  RunOptions ro;
  ro.scenario = Scenario::kServer;
  ro.qps = 50;
  ro.duration_s = 0.3;
  auto run = run_scenario(target, w, ro);
  ASSERT_TRUE(run);
  const std::vector<double> arrivals = server_schedule(50, 200, 0);
  const size_t expected = static_cast<size_t>(std::count_if(arrivals.begin(), arrivals.end(), [](double t) { return t < 0.3; }));
  EXPECT_EQ(run->records.size(), expected);
  for (const RequestRecord& r : run->records) EXPECT_LT(r.t_scheduled, 0.3);
}

TEST(Runner, RejectsRunsThatCannotStart) {
  FakeTarget target(0.0);
  const Workload w = workload();
  RunOptions ro;
  ro.scenario = Scenario::kServer;
  ro.requests = 3;
  EXPECT_FALSE(run_scenario(target, w, ro));  // no rate
  ro.qps = 1;
  ro.requests = 0;
  EXPECT_FALSE(run_scenario(target, w, ro));  // neither requests nor duration
  EXPECT_FALSE(parse_scenario("closed"));
}

TEST(Runner, ProgressIsReportedToTheEnd) {
  FakeTarget target(0.01);
  const Workload w = workload();
  RunOptions ro;
  ro.scenario = Scenario::kOffline;
  ro.requests = 6;
  std::vector<ProgressSnapshot> seen;
  auto run = run_scenario(target, w, ro, [&seen](const ProgressSnapshot& s) { seen.push_back(s); });
  ASSERT_TRUE(run);
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().done, 6);
  EXPECT_EQ(seen.back().total, 6);
}

}  // namespace
}  // namespace fathom::loadgen
