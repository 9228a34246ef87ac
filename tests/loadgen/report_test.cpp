// The report's definitions on hand-made records: TTFT, TPOT, ITL, E2E, throughput, error keys,
// the throughput-over-time buckets, and the sweep's knee.
#include <gtest/gtest.h>

#include "loadgen/report.h"

namespace fathom::loadgen {
namespace {

RequestRecord ok_record(int64_t index, double sent, std::vector<double> chunks, double end, int64_t prompt, int64_t output) {
  RequestRecord r;
  r.index = index;
  r.t_scheduled = sent;
  r.outcome.t_sent = sent;
  r.outcome.chunk_times = std::move(chunks);
  r.outcome.t_first_token = r.outcome.chunk_times.empty() ? 0 : r.outcome.chunk_times.front();
  r.outcome.t_end = end;
  r.outcome.prompt_tokens = prompt;
  r.outcome.output_tokens = output;
  return r;
}

RunResult sample_run() {
  RunResult run;
  run.scenario = Scenario::kServer;
  run.qps = 2;
  run.records.push_back(ok_record(0, 0.0, {0.1, 0.2, 0.3}, 0.3, 10, 3));  // TTFT 100, TPOT 100
  run.records.push_back(ok_record(1, 1.0, {1.3, 1.5}, 1.5, 20, 2));       // TTFT 300, TPOT 200
  RequestRecord failed;
  failed.index = 2;
  failed.t_scheduled = 1.2;
  failed.outcome.t_sent = 1.2;
  failed.outcome.t_end = 1.25;
  failed.outcome.error = ErrorKind::kHttpStatus;
  failed.outcome.http_status = 503;
  failed.outcome.error_detail = "HTTP 503: busy";
  run.records.push_back(failed);
  run.duration_s = 2.0;
  return run;
}

TEST(Report, Definitions) {
  const LoadReport r = summarize_run(sample_run(), "t", "w");
  EXPECT_EQ(r.n_requests, 3);
  EXPECT_EQ(r.n_ok, 2);
  EXPECT_EQ(r.n_errors, 1);
  EXPECT_EQ(r.errors_by_kind.at("http_503"), 1);
  ASSERT_EQ(r.error_examples.size(), 1u);
  EXPECT_EQ(r.error_examples[0], "http_503: HTTP 503: busy");
  EXPECT_NEAR(r.ttft_ms.mean, 200.0, 1e-9);
  EXPECT_NEAR(r.ttft_ms.max, 300.0, 1e-9);
  EXPECT_NEAR(r.tpot_ms.min, 100.0, 1e-9);
  EXPECT_NEAR(r.tpot_ms.max, 200.0, 1e-9);
  EXPECT_EQ(r.itl_ms.count, 3u);  // 2 gaps + 1 gap
  EXPECT_NEAR(r.itl_ms.max, 200.0, 1e-9);
  EXPECT_NEAR(r.e2e_ms.min, 300.0, 1e-9);
  EXPECT_NEAR(r.e2e_ms.max, 500.0, 1e-9);
  EXPECT_NEAR(r.request_throughput, 1.0, 1e-12);  // 2 ok over 2 s
  EXPECT_NEAR(r.output_throughput, 2.5, 1e-12);   // 5 tokens over 2 s
  EXPECT_NEAR(r.total_throughput, 17.5, 1e-12);   // 35 tokens over 2 s
  const nlohmann::json j = report_json(r);
  EXPECT_EQ(j["errors_by_kind"]["http_503"], 1);
  EXPECT_NEAR(j["latency_ms"]["ttft"]["p50"].get<double>(), 200.0, 1e-9);
  EXPECT_NE(report_table(r).find("http_503 1"), std::string::npos);
}

TEST(Report, ThroughputBucketsAndCharts) {
  const RunResult run = sample_run();
  const plan::Series s = throughput_series(run, 1.0);
  // Bucket [0,1): 3 tokens; [1,2): 2 tokens. Two points per bucket.
  ASSERT_EQ(s.x.size(), 4u);
  EXPECT_EQ(s.x, (std::vector<double>{0, 1, 1, 2}));
  EXPECT_EQ(s.y, (std::vector<double>{3, 3, 2, 2}));
  const std::vector<plan::Chart> charts = run_charts(run, summarize_run(run, "t", "w"));
  ASSERT_EQ(charts.size(), 3u);
  const std::string svg = plan::render_svg_panels(charts);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
}

TEST(Report, SweepKnee) {
  std::vector<SweepPoint> points(3);
  const double qps[] = {1, 4, 2};
  const double p99[] = {50, 900, 150};
  for (size_t i = 0; i < 3; ++i) {
    points[i].qps = qps[i];
    points[i].report.ttft_ms.count = 10;
    points[i].report.ttft_ms.p99 = p99[i];
  }
  EXPECT_EQ(best_sweep_point(points, 200), 2);  // 2 req/s: highest rate under 200 ms
  EXPECT_EQ(best_sweep_point(points, 1000), 1);
  EXPECT_EQ(best_sweep_point(points, 10), -1);
  EXPECT_EQ(sweep_json(points, 200)["best_qps"], 2.0);
  EXPECT_TRUE(sweep_json(points, 10)["best_qps"].is_null());
  const plan::Chart c = sweep_chart(points, 200);
  ASSERT_EQ(c.series.size(), 2u);
  EXPECT_EQ(c.series[0].x, (std::vector<double>{1, 2, 4}));  // sorted by rate
  EXPECT_NE(sweep_table(points, 200).find("highest QPS with P99 TTFT <= 200.0 ms: 2"), std::string::npos);
  // Each measured rate is a dot, and the axis goes past the highest point and the target line:
  // with a target of 1000 ms over points up to 900 ms, the top tick is above 1000.
  const std::string svg = plan::render_svg(sweep_chart(points, 1000));
  size_t dots = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) ++dots;
  EXPECT_EQ(dots, 3u);
  EXPECT_NE(svg.find(">1200</text>"), std::string::npos) << svg;
}

}  // namespace
}  // namespace fathom::loadgen
