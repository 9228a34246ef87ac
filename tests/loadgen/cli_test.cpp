// `fathom bench load` end to end against the stub server: --json carries every field scripts
// read, --plot writes a well-formed SVG, --sweep-qps reports the knee.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "stub_server.h"
#include "tools/commands.h"

namespace fathom::loadgen {
namespace {

using stub::Behaviour;
using stub::StubServer;

struct CliResult {
  int rc = 0;          // exit code
  std::string out;     // stdout
};

CliResult bench_load(const std::vector<std::string>& args) {
  ::testing::internal::CaptureStdout();
  const int rc = tools::cmd_bench_load(args);
  return {rc, ::testing::internal::GetCapturedStdout()};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void expect_summary(const nlohmann::json& s, const char* name) {
  SCOPED_TRACE(name);
  ASSERT_TRUE(s.is_object());
  for (const char* key : {"count", "mean", "p50", "p90", "p99"}) EXPECT_TRUE(s.contains(key)) << key;
}

TEST(BenchLoadCli, JsonReportHasTheFields) {
  StubServer::Options so;
  so.behaviours = {Behaviour::kOk, Behaviour::kOk, Behaviour::kHttp500};
  StubServer server(so);
  const CliResult r = bench_load({"--url", server.url(), "--scenario", "server", "--qps", "50", "--requests", "6",
                                  "--prompt-len", "8", "--output-len", "5", "--json", "-q"});
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["scenario"], "server");
  EXPECT_EQ(j["qps"], 50.0);
  EXPECT_EQ(j["requests"]["total"], 6);
  EXPECT_EQ(j["requests"]["ok"], 4);
  EXPECT_EQ(j["requests"]["errors"], 2);
  EXPECT_EQ(j["errors_by_kind"]["http_500"], 2);
  EXPECT_GT(j["duration_s"].get<double>(), 0.0);
  EXPECT_EQ(j["tokens"]["output"], 20);
  for (const char* key : {"requests_per_s", "output_tokens_per_s", "total_tokens_per_s"})
    EXPECT_GT(j["throughput"][key].get<double>(), 0.0) << key;
  for (const char* name : {"ttft", "tpot", "itl", "e2e"}) expect_summary(j["latency_ms"][name], name);
  EXPECT_EQ(j["latency_ms"]["ttft"]["count"], 4);
  EXPECT_FALSE(j.contains("peak_rss_bytes"));  // remote runs: the client's memory says nothing
  EXPECT_NE(j["target"].get<std::string>().find(server.url()), std::string::npos);
}

TEST(BenchLoadCli, TableAndPlot) {
  StubServer server(StubServer::Options{});
  const std::string svg_path = std::string(FATHOM_TEST_TMP) + "/loadgen-plot.svg";
  std::remove(svg_path.c_str());
  const CliResult r = bench_load({"--url", server.url(), "--scenario", "offline", "--requests", "5", "--concurrency", "2",
                                  "--output-len", "6", "--plot", svg_path, "-q"});
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* row : {"TTFT", "TPOT", "ITL", "E2E", "5 ok, 0 failed of 5", "req/s"})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  const std::string svg = read_file(svg_path);
  EXPECT_EQ(svg.rfind("<svg", 0) == 0 || svg.find("<svg") != std::string::npos, true);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("TTFT"), std::string::npos);
  EXPECT_NE(svg.find("tokens/s"), std::string::npos);
}

TEST(BenchLoadCli, SweepFindsTheHighestRateMeetingTheTarget) {
  StubServer server(StubServer::Options{});
  const std::string svg_path = std::string(FATHOM_TEST_TMP) + "/loadgen-sweep.svg";
  std::remove(svg_path.c_str());
  const CliResult r = bench_load({"--url", server.url(), "--sweep-qps", "20,50", "--ttft-p99-target", "2000", "--requests",
                                  "4", "--output-len", "3", "--json", "--plot", svg_path, "-q"});
  ASSERT_EQ(r.rc, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_EQ(j["points"].size(), 2u);
  EXPECT_EQ(j["points"][1]["offered_qps"], 50.0);
  EXPECT_EQ(j["best_qps"], 50.0);  // the stub answers in milliseconds: both rates meet 2 s
  const std::string svg = read_file(svg_path);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("P99 TTFT"), std::string::npos);
}

TEST(BenchLoadCli, UsageErrors) {
  EXPECT_EQ(bench_load({"--scenario", "offline"}).rc, 2);                                    // no target
  EXPECT_EQ(bench_load({"--url", "http://127.0.0.1:1/v1", "--scenario", "server"}).rc, 2);   // no --qps
  EXPECT_EQ(bench_load({"--url", "http://127.0.0.1:1/v1", "--scenario", "bogus"}).rc, 2);
  EXPECT_EQ(bench_load({"--url", "http://127.0.0.1:1/v1", "--sweep-qps", "1,x"}).rc, 2);
  EXPECT_EQ(bench_load({"--help"}).rc, 0);
}

TEST(BenchLoadCli, EveryRequestFailingExitsOneAndSaysWhy) {
  ::testing::internal::CaptureStderr();
  const CliResult r = bench_load({"--url", "http://127.0.0.1:1/v1", "--model-name", "m", "--scenario", "offline",
                                  "--requests", "3", "--timeout", "5", "-q"});
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.rc, 1) << r.out << err;
  EXPECT_NE(r.out.find("errors"), std::string::npos) << r.out;  // the report still comes first
  EXPECT_NE(err.find("fathom bench load: all 3 requests failed (3 connection)"), std::string::npos) << err;
}

}  // namespace
}  // namespace fathom::loadgen
