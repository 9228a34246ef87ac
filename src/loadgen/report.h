// What a load run measured, summarized: latency percentiles (TTFT, TPOT, inter-token, E2E),
// throughput, errors by kind; printed as a table or JSON, and drawn as SVG charts.
// Definitions (per successful request, times from when it was sent):
//   TTFT = first content chunk - sent;  E2E = end - sent;
//   TPOT = (E2E - TTFT) / (output_tokens - 1), for requests with at least 2 output tokens;
//   ITL  = gaps between consecutive content chunks, pooled over all requests.
// Throughput counts successful requests and their tokens over the run's duration (start of the
// run to the last request's end).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loadgen/runner.h"
#include "plan/loadgen_math.h"
#include "plan/svg.h"

namespace fathom::loadgen {

struct LoadReport {
  std::string scenario;                          // "server"
  std::string target;                            // Target::describe()
  std::string workload;                          // Workload::describe()
  double qps = 0;                                // server scenario's offered rate, else 0
  int64_t concurrency = 0;                       // limit on requests in flight, 0: unlimited
  int64_t n_requests = 0;                        // issued
  int64_t n_ok = 0;                              // succeeded
  int64_t n_errors = 0;                          // failed, all kinds
  std::map<std::string, int64_t> errors_by_kind; // "http_500" -> 3, "timeout" -> 1, ...
  std::vector<std::string> error_examples;       // the first few errors' details, one per kind
  int64_t n_queued = 0;                          // waited for a concurrency slot
  int64_t max_queue_depth = 0;                   // most waiting at once
  double duration_s = 0;                         // run start to the last request's end
  int64_t prompt_tokens = 0;                     // of successful requests
  int64_t output_tokens = 0;                     // of successful requests
  double request_throughput = 0;                 // successful requests / s
  double output_throughput = 0;                  // output tokens / s
  double total_throughput = 0;                   // (prompt + output) tokens / s
  plan::Summary ttft_ms;                         // time to first token
  plan::Summary tpot_ms;                         // time per output token after the first
  plan::Summary itl_ms;                          // inter-token (inter-chunk) latency
  plan::Summary e2e_ms;                          // whole request
  plan::Summary queue_ms;                        // scheduled issue to sent (client-side queueing)
  uint64_t peak_rss_bytes = 0;                   // local runs: this process's peak resident memory
};

LoadReport summarize_run(const RunResult& run, const std::string& target, const std::string& workload);

nlohmann::json report_json(const LoadReport& r);
std::string report_table(const LoadReport& r);

// Latency CDFs (TTFT and E2E; TPOT and ITL) and output tokens/s per 1-s bucket over the run.
std::vector<plan::Chart> run_charts(const RunResult& run, const LoadReport& r);
// Output tokens per `bucket_s` bucket of the run, as tokens/s, drawn as steps: two points per
// bucket (its start and end, both at its rate).
plan::Series throughput_series(const RunResult& run, double bucket_s = 1.0);

// A QPS sweep of the server scenario: one report per offered rate.
struct SweepPoint {
  double qps = 0;      // offered rate
  LoadReport report;   // what it measured
};
// Index of the highest-QPS point whose P99 TTFT is at most target_ms (with at least one
// success), or -1 when none meets it.
int64_t best_sweep_point(const std::vector<SweepPoint>& points, double ttft_p99_target_ms);
std::string sweep_table(const std::vector<SweepPoint>& points, double ttft_p99_target_ms);
nlohmann::json sweep_json(const std::vector<SweepPoint>& points, double ttft_p99_target_ms);
// P99 TTFT against offered QPS, with the target as a flat line: where it bends up is the knee.
plan::Chart sweep_chart(const std::vector<SweepPoint>& points, double ttft_p99_target_ms);

}  // namespace fathom::loadgen
