// The HTTP client against a misbehaving stub server: every failure is counted under its kind,
// the run finishes, and the good requests' latencies reflect what the stub did.
#include <gtest/gtest.h>

#include <algorithm>

#include "loadgen/http_target.h"
#include "loadgen/report.h"
#include "loadgen/runner.h"
#include "stub_server.h"

namespace fathom::loadgen {
namespace {

using stub::Behaviour;
using stub::StubServer;

Workload small_workload(const char* prompt_len = "8", const char* output_len = "6") {
  return Workload::synthetic(*plan::LengthDistribution::parse(prompt_len), *plan::LengthDistribution::parse(output_len), 3);
}

std::unique_ptr<HttpTarget> make_target(const std::string& url, double timeout_s, bool chat = false) {
  HttpTargetOptions o;
  o.url = url;
  o.model = "stub-model";
  o.timeout_s = timeout_s;
  o.chat = chat;
  auto t = HttpTarget::create(o);
  EXPECT_TRUE(t) << t.status().to_string();
  return t ? std::move(*t) : nullptr;
}

TEST(HttpTarget, EveryErrorKindIsCountedAndTheRunCompletes) {
  StubServer::Options so;
  so.behaviours = {Behaviour::kOk,        Behaviour::kSlow,       Behaviour::kDrop, Behaviour::kHttp500,
                   Behaviour::kMalformed, Behaviour::kErrorEvent, Behaviour::kHang};
  so.slow_delay_s = 0.15;
  so.hang_s = 1.0;
  StubServer server(so);
  auto target = make_target(server.url(), /*timeout_s=*/0.6);
  ASSERT_TRUE(target);
  const Workload w = small_workload();
  RunOptions ro;
  ro.scenario = Scenario::kOffline;
  ro.requests = 21;  // three of each behaviour
  // Below the stub's listen backlog (httplib's is 5): a burst past it can have its connects
  // dropped and retried a second later on a loaded machine, which would read as timeouts.
  ro.concurrency = 4;
  auto run = run_scenario(*target, w, ro);
  ASSERT_TRUE(run) << run.status().to_string();
  EXPECT_EQ(server.requests_seen(), 21);
  const LoadReport r = summarize_run(*run, target->describe(), w.describe());
  EXPECT_EQ(r.n_requests, 21);
  EXPECT_EQ(r.n_ok, 6);
  EXPECT_EQ(r.n_errors, 15);
  const std::map<std::string, int64_t> expected = {
      {"connection", 3}, {"http_500", 3}, {"malformed_stream", 3}, {"stream_error", 3}, {"timeout", 3}};
  EXPECT_EQ(r.errors_by_kind, expected);
  for (const RequestRecord& rec : run->records) {
    if (!rec.outcome.ok()) continue;
    EXPECT_EQ(rec.outcome.output_tokens, 6);  // from the stub's usage chunk
    EXPECT_EQ(rec.outcome.prompt_tokens, 7);
    EXPECT_EQ(rec.outcome.chunk_times.size(), 6u);
  }
  // Three slow requests waited slow_delay_s before their first token; three did not.
  ASSERT_EQ(r.ttft_ms.count, 6u);
  std::vector<double> ttft;
  for (const RequestRecord& rec : run->records)
    if (rec.outcome.ok()) ttft.push_back((rec.outcome.t_first_token - rec.outcome.t_sent) * 1e3);
  std::sort(ttft.begin(), ttft.end());
  for (size_t i = 0; i < 3; ++i) EXPECT_LT(ttft[i], 150.0) << i;
  for (size_t i = 3; i < 6; ++i) EXPECT_GE(ttft[i], 150.0) << i;
  // Chunks were ~3 ms apart: the per-token figures are positive and well under the slow delay.
  EXPECT_GT(r.tpot_ms.p50, 1.0);
  EXPECT_LT(r.tpot_ms.p99, 100.0);
  EXPECT_GT(r.itl_ms.count, 0u);
  EXPECT_GE(r.e2e_ms.min, r.ttft_ms.min);
  EXPECT_GT(r.output_throughput, 0.0);
}

TEST(HttpTarget, ChatStreamsAndModelDiscovery) {
  StubServer server(StubServer::Options{});
  HttpTargetOptions o;
  o.url = server.url() + "/";  // a trailing slash is tolerated
  o.chat = true;
  auto t = HttpTarget::create(o);
  ASSERT_TRUE(t) << t.status().to_string();
  auto id = (*t)->first_model_id();
  ASSERT_TRUE(id) << id.status().to_string();
  EXPECT_EQ(*id, "stub-model");
  WorkItem item;
  item.prompt = "hello there";
  item.max_tokens = 5;
  const RequestOutcome out = (*t)->send(item);
  EXPECT_TRUE(out.ok()) << out.error_detail;
  EXPECT_EQ(out.output_tokens, 5);
  EXPECT_GE(out.t_first_token, out.t_sent);
  EXPECT_GE(out.t_end, out.t_first_token);
}

TEST(HttpTarget, ConnectionRefusedIsAConnectionError) {
  int port = 0;
  {
    StubServer gone(StubServer::Options{});  // a port that was free a moment ago
    port = gone.port();
  }
  auto target = make_target("http://127.0.0.1:" + std::to_string(port) + "/v1", 2.0);
  ASSERT_TRUE(target);
  WorkItem item;
  item.prompt = "x";
  item.max_tokens = 2;
  const RequestOutcome out = target->send(item);
  EXPECT_EQ(out.error, ErrorKind::kConnection) << out.error_detail;
}

TEST(HttpTarget, RejectsBadUrls) {
  for (const char* url : {"127.0.0.1:8080/v1", "ftp://host/v1", "http:///v1"}) {
    HttpTargetOptions o;
    o.url = url;
    EXPECT_FALSE(HttpTarget::create(o)) << url;
  }
}

}  // namespace
}  // namespace fathom::loadgen
