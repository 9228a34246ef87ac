// Local mode: the engine in this process on a synthetic model. Every request generates exactly
// its output length (end-of-generation is ignored) from a prompt of exactly its prompt length.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/process.h"
#include "loadgen/local_target.h"
#include "loadgen/report.h"
#include "loadgen/runner.h"
#include "model/synth.h"
#include "tools/commands.h"

namespace fathom::loadgen {
namespace {

const std::string& synth_path() {
  static const std::string path = [] {
    const std::string p = std::string(FATHOM_TEST_TMP) + "/loadgen-qwen2-tiny.gguf";
    SynthOptions o;
    o.arch = "qwen2";
    o.preset = "tiny";
    o.seed = 5;
    o.n_threads = 2;
    EXPECT_TRUE(synth_model(o, p).is_ok());
    return p;
  }();
  return path;
}

TEST(LocalTarget, OfflineRunGeneratesExactLengths) {
  LocalTargetOptions lo;
  lo.model_path = synth_path();
  lo.n_threads = 2;
  lo.n_ctx = 64;
  lo.n_seq_max = 8;
  auto target = LocalTarget::create(lo);
  ASSERT_TRUE(target) << target.status().to_string();
  const Workload w = Workload::synthetic(*plan::LengthDistribution::parse("16"), *plan::LengthDistribution::parse("8"), 2);
  RunOptions ro;
  ro.scenario = Scenario::kOffline;
  ro.requests = 8;
  auto run = run_scenario(**target, w, ro);
  ASSERT_TRUE(run) << run.status().to_string();
  ASSERT_EQ(run->records.size(), 8u);
  for (const RequestRecord& r : run->records) {
    EXPECT_TRUE(r.outcome.ok()) << r.outcome.error_detail;
    EXPECT_EQ(r.outcome.output_tokens, 8);
    EXPECT_EQ(r.outcome.prompt_tokens, 16);
    EXPECT_EQ(r.outcome.chunk_times.size(), 8u);
    EXPECT_GE(r.outcome.t_first_token, r.outcome.t_sent);
    EXPECT_GE(r.outcome.t_end, r.outcome.t_first_token);
  }
  LoadReport report = summarize_run(*run, (*target)->describe(), w.describe());
  report.peak_rss_bytes = peak_resident_bytes();
  EXPECT_EQ(report.n_ok, 8);
  EXPECT_EQ(report.output_tokens, 64);
  EXPECT_GT(report.peak_rss_bytes, 0u);
  EXPECT_GT(report.output_throughput, 0.0);
  EXPECT_EQ(report.ttft_ms.count, 8u);
  EXPECT_EQ(report.tpot_ms.count, 8u);
}

TEST(LocalTarget, RejectedRequestIsAnEngineError) {
  LocalTargetOptions lo;
  lo.model_path = synth_path();
  lo.n_threads = 1;
  lo.n_ctx = 32;
  auto target = LocalTarget::create(lo);
  ASSERT_TRUE(target) << target.status().to_string();
  WorkItem item;
  item.prompt = "x";
  item.prompt_tokens = 40;  // longer than the context
  item.max_tokens = 2;
  const RequestOutcome out = (*target)->send(item);
  EXPECT_EQ(out.error, ErrorKind::kEngine);
  EXPECT_FALSE(out.error_detail.empty());
}

TEST(LocalTarget, CliReportsPeakRss) {
  ::testing::internal::CaptureStdout();
  const int rc = tools::cmd_bench_load({"-m", synth_path(), "--scenario", "single-stream", "--requests", "2", "--prompt-len",
                                        "8", "--output-len", "4", "-t", "2", "--json", "-q"});
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["requests"]["ok"], 2);
  EXPECT_EQ(j["tokens"]["output"], 8);
  EXPECT_EQ(j["tokens"]["prompt"], 16);
  EXPECT_GT(j["peak_rss_bytes"].get<uint64_t>(), 0u);
}

}  // namespace
}  // namespace fathom::loadgen
