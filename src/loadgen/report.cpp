#include "loadgen/report.h"

#include <algorithm>
#include <cmath>

namespace fathom::loadgen {

namespace {

constexpr size_t kMaxErrorExamples = 8;

nlohmann::json summary_json(const plan::Summary& s) {
  if (s.count == 0) return {{"count", 0}};
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99},
          {"min", s.min},     {"max", s.max},   {"stddev", s.stddev}};
}

std::string summary_row(const char* name, const plan::Summary& s) {
  if (s.count == 0) return strprintf("  %-6s %10s %10s %10s %10s %8s\n", name, "-", "-", "-", "-", "0");
  return strprintf("  %-6s %10.2f %10.2f %10.2f %10.2f %8zu\n", name, s.mean, s.p50, s.p90, s.p99, s.count);
}

// Latency samples of the successful requests, in milliseconds (definitions in report.h).
struct LatencySamples {
  std::vector<double> ttft;  // [requests with content]
  std::vector<double> tpot;  // [requests with >= 2 output tokens]
  std::vector<double> itl;   // [content chunks after each request's first]
  std::vector<double> e2e;   // [successful requests]
};

LatencySamples collect_latencies(const RunResult& run) {
  LatencySamples l;
  for (const RequestRecord& rec : run.records) {
    const RequestOutcome& o = rec.outcome;
    if (!o.ok()) continue;
    l.e2e.push_back((o.t_end - o.t_sent) * 1e3);
    if (o.chunk_times.empty()) continue;  // no content: no first token to time
    const double ttft_s = o.t_first_token - o.t_sent;
    l.ttft.push_back(ttft_s * 1e3);
    if (o.output_tokens > 1)
      l.tpot.push_back((o.t_end - o.t_sent - ttft_s) * 1e3 / static_cast<double>(o.output_tokens - 1));
    for (size_t i = 1; i < o.chunk_times.size(); ++i) l.itl.push_back((o.chunk_times[i] - o.chunk_times[i - 1]) * 1e3);
  }
  return l;
}

}  // namespace

std::string error_kind_key(ErrorKind kind, int http_status) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kHttpStatus: return "http_" + std::to_string(http_status);
    case ErrorKind::kConnection: return "connection";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kMalformedStream: return "malformed_stream";
    case ErrorKind::kStreamError: return "stream_error";
    case ErrorKind::kEngine: return "engine";
  }
  return "unknown";
}

LoadReport summarize_run(const RunResult& run, const std::string& target, const std::string& workload) {
  LoadReport r;
  r.scenario = scenario_name(run.scenario);
  r.target = target;
  r.workload = workload;
  r.qps = run.qps;
  r.concurrency = run.concurrency;
  r.duration_s = run.duration_s;
  r.max_queue_depth = run.max_queue_depth;
  std::vector<double> queue;
  for (const RequestRecord& rec : run.records) {
    const RequestOutcome& o = rec.outcome;
    ++r.n_requests;
    if (rec.queued) ++r.n_queued;
    queue.push_back((o.t_sent - rec.t_scheduled) * 1e3);
    if (!o.ok()) {
      ++r.n_errors;
      const std::string key = error_kind_key(o.error, o.http_status);
      if (r.errors_by_kind[key]++ == 0 && r.error_examples.size() < kMaxErrorExamples)
        r.error_examples.push_back(key + ": " + o.error_detail);
      continue;
    }
    ++r.n_ok;
    r.prompt_tokens += o.prompt_tokens;
    r.output_tokens += o.output_tokens;
  }
  const LatencySamples l = collect_latencies(run);
  r.ttft_ms = plan::summarize(l.ttft);
  r.tpot_ms = plan::summarize(l.tpot);
  r.itl_ms = plan::summarize(l.itl);
  r.e2e_ms = plan::summarize(l.e2e);
  r.queue_ms = plan::summarize(queue);
  if (r.duration_s > 0) {
    r.request_throughput = static_cast<double>(r.n_ok) / r.duration_s;
    r.output_throughput = static_cast<double>(r.output_tokens) / r.duration_s;
    r.total_throughput = static_cast<double>(r.prompt_tokens + r.output_tokens) / r.duration_s;
  }
  return r;
}

nlohmann::json report_json(const LoadReport& r) {
  nlohmann::json j;
  j["scenario"] = r.scenario;
  j["target"] = r.target;
  j["workload"] = r.workload;
  if (r.qps > 0) j["qps"] = r.qps;
  j["concurrency"] = r.concurrency;
  j["requests"] = {{"total", r.n_requests}, {"ok", r.n_ok}, {"errors", r.n_errors},
                   {"queued", r.n_queued}, {"max_queue_depth", r.max_queue_depth}};
  j["errors_by_kind"] = r.errors_by_kind;
  j["error_examples"] = r.error_examples;
  j["duration_s"] = r.duration_s;
  j["tokens"] = {{"prompt", r.prompt_tokens}, {"output", r.output_tokens}};
  j["throughput"] = {{"requests_per_s", r.request_throughput},
                     {"output_tokens_per_s", r.output_throughput},
                     {"total_tokens_per_s", r.total_throughput}};
  j["latency_ms"] = {{"ttft", summary_json(r.ttft_ms)}, {"tpot", summary_json(r.tpot_ms)}, {"itl", summary_json(r.itl_ms)},
                     {"e2e", summary_json(r.e2e_ms)},   {"queue", summary_json(r.queue_ms)}};
  if (r.peak_rss_bytes > 0) j["peak_rss_bytes"] = r.peak_rss_bytes;
  return j;
}

std::string report_table(const LoadReport& r) {
  std::string s;
  s += strprintf("scenario     %s", r.scenario.c_str());
  if (r.qps > 0) s += strprintf(" at %.3g req/s", r.qps);
  s += r.concurrency > 0 ? strprintf(", concurrency %lld\n", static_cast<long long>(r.concurrency)) : ", concurrency unlimited\n";
  s += "target       " + r.target + "\n";
  s += "workload     " + r.workload + "\n";
  s += strprintf("requests     %lld ok, %lld failed of %lld in %.2f s", static_cast<long long>(r.n_ok),
                 static_cast<long long>(r.n_errors), static_cast<long long>(r.n_requests), r.duration_s);
  if (r.n_queued > 0)
    s += strprintf(" (%lld waited for a slot, at most %lld at once)", static_cast<long long>(r.n_queued),
                   static_cast<long long>(r.max_queue_depth));
  s += "\n";
  s += strprintf("throughput   %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", r.request_throughput,
                 r.output_throughput, r.total_throughput);
  s += strprintf("tokens       %lld prompt, %lld output\n", static_cast<long long>(r.prompt_tokens),
                 static_cast<long long>(r.output_tokens));
  if (r.peak_rss_bytes > 0) s += strprintf("peak RSS     %.1f MiB\n", static_cast<double>(r.peak_rss_bytes) / (1 << 20));
  s += strprintf("latency (ms) %10s %10s %10s %10s %8s\n", "mean", "p50", "p90", "p99", "n");
  s += summary_row("TTFT", r.ttft_ms);
  s += summary_row("TPOT", r.tpot_ms);
  s += summary_row("ITL", r.itl_ms);
  s += summary_row("E2E", r.e2e_ms);
  if (r.n_queued > 0) s += summary_row("queue", r.queue_ms);
  if (!r.errors_by_kind.empty()) {
    s += "errors      ";
    for (const auto& [kind, n] : r.errors_by_kind) s += strprintf(" %s %lld", kind.c_str(), static_cast<long long>(n));
    s += "\n";
    for (const std::string& e : r.error_examples) s += "  e.g. " + e + "\n";
  }
  return s;
}

plan::Series throughput_series(const RunResult& run, double bucket_s) {
  plan::Series s;
  s.label = "output tok/s";
  if (!(bucket_s > 0) || !(run.duration_s > 0)) return s;
  const size_t n_buckets = static_cast<size_t>(std::ceil(run.duration_s / bucket_s));
  std::vector<double> tokens(std::max<size_t>(n_buckets, 1), 0.0);
  for (const RequestRecord& rec : run.records) {
    const RequestOutcome& o = rec.outcome;
    if (!o.ok() || o.chunk_times.empty()) continue;
    // A chunk may carry several tokens; spread the request's token count evenly over its chunks.
    const double per_chunk = static_cast<double>(o.output_tokens) / static_cast<double>(o.chunk_times.size());
    for (double t : o.chunk_times) {
      const size_t b = std::min(tokens.size() - 1, static_cast<size_t>(std::max(0.0, t) / bucket_s));
      tokens[b] += per_chunk;
    }
  }
  for (size_t b = 0; b < tokens.size(); ++b) {
    // The last bucket is usually partial; its rate is over the part the run covered.
    const double start = static_cast<double>(b) * bucket_s;
    const double width = std::min(bucket_s, run.duration_s - start);
    const double rate = width > 0 ? tokens[b] / width : 0.0;
    // Steps: each bucket's rate holds from its start to its end (a one-bucket run still draws a line).
    s.x.insert(s.x.end(), {start, start + std::max(width, 0.0)});
    s.y.insert(s.y.end(), {rate, rate});
  }
  return s;
}

std::vector<plan::Chart> run_charts(const RunResult& run, const LoadReport& r) {
  const LatencySamples l = collect_latencies(run);
  const std::string where = r.scenario + (r.qps > 0 ? strprintf(" %.3g req/s", r.qps) : "");
  plan::Chart first;
  first.title = "Time to first token and end-to-end latency, CDF (" + where + ")";
  first.x_label = "latency (ms)";
  first.y_label = "fraction of requests";
  first.series = {plan::cdf_series("TTFT", l.ttft), plan::cdf_series("E2E", l.e2e)};
  plan::Chart per_token;
  per_token.title = "Time per output token and inter-token latency, CDF";
  per_token.x_label = "latency (ms)";
  per_token.y_label = "fraction";
  per_token.series = {plan::cdf_series("TPOT", l.tpot), plan::cdf_series("ITL", l.itl)};
  plan::Chart rate;
  rate.title = "Output throughput over time (1-s buckets)";
  rate.x_label = "time since start (s)";
  rate.y_label = "tokens/s";
  rate.series = {throughput_series(run, 1.0)};
  return {first, per_token, rate};
}

int64_t best_sweep_point(const std::vector<SweepPoint>& points, double ttft_p99_target_ms) {
  int64_t best = -1;
  for (size_t i = 0; i < points.size(); ++i) {
    const LoadReport& r = points[i].report;
    if (r.ttft_ms.count == 0 || r.ttft_ms.p99 > ttft_p99_target_ms) continue;
    if (best < 0 || points[i].qps > points[static_cast<size_t>(best)].qps) best = static_cast<int64_t>(i);
  }
  return best;
}

std::string sweep_table(const std::vector<SweepPoint>& points, double ttft_p99_target_ms) {
  std::string s = strprintf("%8s %6s %6s %8s %11s %10s %10s %10s %10s  %s\n", "qps", "ok", "err", "req/s", "out tok/s",
                            "TTFT p50", "TTFT p99", "TPOT p99", "E2E p99", "meets");
  const bool has_target = ttft_p99_target_ms > 0;
  for (const SweepPoint& p : points) {
    const LoadReport& r = p.report;
    const bool meets = r.ttft_ms.count > 0 && r.ttft_ms.p99 <= ttft_p99_target_ms;
    s += strprintf("%8.3g %6lld %6lld %8.2f %11.1f %10.1f %10.1f %10.2f %10.1f  %s\n", p.qps, static_cast<long long>(r.n_ok),
                   static_cast<long long>(r.n_errors), r.request_throughput, r.output_throughput, r.ttft_ms.p50,
                   r.ttft_ms.p99, r.tpot_ms.p99, r.e2e_ms.p99, has_target ? (meets ? "yes" : "no") : "-");
  }
  if (has_target) {
    const int64_t best = best_sweep_point(points, ttft_p99_target_ms);
    s += best < 0 ? strprintf("no QPS meets P99 TTFT <= %.1f ms\n", ttft_p99_target_ms)
                  : strprintf("highest QPS with P99 TTFT <= %.1f ms: %.3g\n", ttft_p99_target_ms,
                              points[static_cast<size_t>(best)].qps);
  }
  return s;
}

nlohmann::json sweep_json(const std::vector<SweepPoint>& points, double ttft_p99_target_ms) {
  nlohmann::json j;
  j["points"] = nlohmann::json::array();
  for (const SweepPoint& p : points) {
    nlohmann::json r = report_json(p.report);
    r["offered_qps"] = p.qps;
    j["points"].push_back(std::move(r));
  }
  if (ttft_p99_target_ms > 0) {
    j["ttft_p99_target_ms"] = ttft_p99_target_ms;
    const int64_t best = best_sweep_point(points, ttft_p99_target_ms);
    j["best_qps"] = best < 0 ? nlohmann::json(nullptr) : nlohmann::json(points[static_cast<size_t>(best)].qps);
  }
  return j;
}

plan::Chart sweep_chart(const std::vector<SweepPoint>& points, double ttft_p99_target_ms) {
  plan::Chart c;
  c.title = "P99 time to first token against offered load";
  c.x_label = "offered load (req/s)";
  c.y_label = "P99 TTFT (ms)";
  c.y_headroom = 0.15;  // the target line and the highest point stay clear of the frame
  plan::Series measured;
  measured.label = "P99 TTFT";
  measured.markers = true;  // each rate is one measurement; the line between them is not data
  std::vector<const SweepPoint*> sorted;
  for (const SweepPoint& p : points) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](const SweepPoint* a, const SweepPoint* b) { return a->qps < b->qps; });
  for (const SweepPoint* p : sorted) {
    if (p->report.ttft_ms.count == 0) continue;
    measured.x.push_back(p->qps);
    measured.y.push_back(p->report.ttft_ms.p99);
  }
  c.series.push_back(measured);
  if (ttft_p99_target_ms > 0 && !sorted.empty()) {
    plan::Series target;
    target.label = strprintf("target %.0f ms", ttft_p99_target_ms);
    target.x = {sorted.front()->qps, sorted.back()->qps};
    target.y = {ttft_p99_target_ms, ttft_p99_target_ms};
    c.series.push_back(target);
  }
  return c;
}

}  // namespace fathom::loadgen
