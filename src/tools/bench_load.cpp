// fathom bench load: a load generator for serving, in MLPerf's scenarios (single-stream, server,
// offline), against an OpenAI-compatible server (--url) or an engine in this process (-m).
// Reports TTFT / TPOT / inter-token / end-to-end latency percentiles, throughput and errors by
// kind; --sweep-qps finds the highest request rate that meets a P99 TTFT target.
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "core/process.h"
#include "loadgen/http_target.h"
#include "loadgen/local_target.h"
#include "loadgen/progress.h"
#include "loadgen/report.h"
#include "loadgen/runner.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

using loadgen::Scenario;

struct LoadBenchOptions {
  std::string url;                // --url: OpenAI-compatible server base (…/v1)
  std::string model_path;         // -m: local GGUF instead of a server
  std::string scenario;           // single-stream | server | offline
  double qps = 0;                 // server scenario rate
  int64_t concurrency = 0;        // 0: unlimited
  int64_t requests = 0;           // 0: bounded by duration (default 64 when neither is given)
  double duration_s = 0;          // 0: bounded by requests
  std::string prompt_len = "128"; // length distribution of synthetic prompts
  std::string output_len = "128"; // length distribution of max_tokens
  std::string dataset;            // JSONL file instead of synthetic prompts
  int64_t seed = 42;              // workload and arrival seed
  std::string model_name;         // --model-name: remote "model" field
  std::string api_key;            // remote bearer token
  bool chat = false;              // remote: /chat/completions
  double timeout_s = 600;         // per request
  bool as_json = false;           // print JSON instead of the table
  std::string plot_path;          // SVG charts
  std::string sweep_qps;          // "a,b,c"
  double ttft_p99_target_ms = 0;  // sweep: the latency target
  int threads = 0;                // local: CPU threads
  MapOptions map;                 // local: --mlock, --no-mmap
  int64_t max_seqs = 0;           // local: sequences the engine runs at once
  bool quiet = false;             // no progress output
};

Expected<std::vector<double>> parse_qps_list(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || end != item.c_str() + item.size() || !(v > 0) || !std::isfinite(v))
      return error(ErrorCode::kInvalidArgument, "--sweep-qps '" + text + "': expected positive numbers separated by commas");
    out.push_back(v);
  }
  if (out.empty()) return error(ErrorCode::kInvalidArgument, "--sweep-qps: no rates given");
  return out;
}

// Context per sequence for a local engine: the longest prompt + output among the first
// requests (all of them, up to 4096), so the KV cache is no larger than the workload needs.
int64_t local_context_size(const loadgen::Workload& workload, int64_t n_requests) {
  const int64_t n = n_requests > 0 ? std::min<int64_t>(n_requests, 4096) : 4096;
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const loadgen::WorkItem w = workload.item(i);
    // A dataset prompt's token count is unknown before tokenizing; its byte length bounds it
    // for byte-level BPE, plus room for a chat template's framing.
    const int64_t prompt = w.prompt_tokens > 0 ? w.prompt_tokens
                                               : static_cast<int64_t>(w.prompt.size() + w.messages.dump().size()) + 64;
    longest = std::max(longest, prompt + w.max_tokens + 1);
  }
  return (longest + 15) / 16 * 16;
}

// Error details quote server output, which need not be valid UTF-8; JSON output replaces such bytes.
std::string to_text(const nlohmann::json& j) { return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace); }

int fail(const Status& st) {
  std::fprintf(stderr, "fathom bench load: %s\n", st.to_string().c_str());
  return st.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

// A run in which no request succeeded measured nothing: it says why on stderr, and the command
// exits 1 (after the report, which has the counts by kind).
bool all_failed(const loadgen::LoadReport& report) {
  if (report.n_requests == 0 || report.n_ok > 0) return false;
  std::string cause = report.error_examples.empty() ? "" : ": " + report.error_examples.front();
  std::string kinds;
  for (const auto& [kind, count] : report.errors_by_kind) kinds += (kinds.empty() ? "" : ", ") + strprintf("%lld %s", static_cast<long long>(count), kind.c_str());
  std::fprintf(stderr, "fathom bench load: all %lld requests failed (%s)%s\n", static_cast<long long>(report.n_requests),
               kinds.c_str(), cause.c_str());
  return true;
}

Expected<loadgen::RunResult> run_once(loadgen::Target& target, const loadgen::Workload& workload,
                                      const loadgen::RunOptions& ro, const LoadBenchOptions& o) {
  std::string label = loadgen::scenario_name(ro.scenario);
  if (ro.scenario == Scenario::kServer) label += strprintf(" %.3g req/s", ro.qps);
  loadgen::ProgressPrinter printer(stderr, stderr_is_tty(), label);
  loadgen::ProgressCallback progress;
  if (!o.quiet) progress = [&printer](const loadgen::ProgressSnapshot& s) { printer.update(s); };
  return loadgen::run_scenario(target, workload, ro, progress);
}

}  // namespace

int cmd_bench_load(const Args& args) {
  LoadBenchOptions o;
  ArgParser p("fathom bench load (--url http://HOST:PORT/v1 | -m FILE.gguf) --scenario NAME [options]",
              "Load test for serving, in MLPerf's scenarios: single-stream (one request at a time), server\n"
              "(Poisson arrivals at --qps, open loop) and offline (all requests at once). Reports time to first\n"
              "token (TTFT), time per output token (TPOT), inter-token and end-to-end latency at P50/P90/P99,\n"
              "throughput and errors by kind. Failed requests are counted, never fatal. Remote requests stream\n"
              "from /v1/completions (or /v1/chat/completions with --chat); -m runs the engine in this process\n"
              "with end-of-generation ignored, so every request generates exactly its output length.");
  p.add_string("--url", "URL", "OpenAI-compatible server base URL, e.g. http://127.0.0.1:8080/v1", &o.url);
  p.add_string("-m,--model", "FILE", "GGUF model to run in this process instead of a server", &o.model_path);
  p.add_string("--scenario", "NAME", "single-stream, server or offline (required unless --sweep-qps)", &o.scenario);
  p.add_float("--qps", "Q", "server: mean request rate, requests/s", &o.qps, Range{0, 1e6, /*min_exclusive=*/true});
  p.add_int("--concurrency", "C", "requests in flight at most; 0 = unlimited (default)", &o.concurrency,
            Range::between(0, 1 << 20));
  p.add_int("--requests", "N", "requests to send (default 64 unless --duration)", &o.requests, Range::between(1, 1e8));
  p.add_float("--duration", "S", "keep issuing requests for S seconds", &o.duration_s, Range{0, 7 * 86400.0, true});
  p.add_string("--prompt-len", "DIST", "synthetic prompt tokens: 128, uniform:LO:HI, normal:M:SD, lognormal:M:SD (default 128)", &o.prompt_len);
  p.add_string("--output-len", "DIST", "output tokens (max_tokens), same forms (default 128)", &o.output_len);
  p.add_string("--dataset", "FILE", "JSONL prompts: {\"prompt\": ..., \"max_tokens\": N} or {\"messages\": [...]} per line", &o.dataset);
  p.add_int("--seed", "S", "workload and arrival seed (default 42)", &o.seed, Range::at_least(0));
  p.add_string("--model-name", "NAME", "remote: the request's model field (default: the first of GET /v1/models)",
               &o.model_name);
  p.add_string("--api-key", "KEY", "remote: sent as Authorization: Bearer KEY", &o.api_key);
  p.add_flag("--chat", "remote: use /v1/chat/completions", &o.chat);
  p.add_float("--timeout", "S", "per-request time limit in seconds (default 600)", &o.timeout_s, Range{0, 86400, true});
  p.add_threads("local: CPU threads (default: all cores)", &o.threads);
  add_map_options(p, &o.map);
  p.add_int("--max-seqs", "N", "local: sequences the engine runs at once (default: min(concurrency, requests, 64))",
            &o.max_seqs, Range::between(1, 4096));
  p.add_flag("--json", "print the report as JSON", &o.as_json);
  p.add_string("--plot", "FILE.svg", "write latency CDFs and throughput over time (or, with --sweep-qps, P99 TTFT vs QPS)", &o.plot_path);
  p.add_string("--sweep-qps", "A,B,C", "run the server scenario at each rate and report the knee", &o.sweep_qps);
  p.add_float("--ttft-p99-target", "MS", "sweep: the P99 TTFT a rate must meet", &o.ttft_p99_target_ms,
              Range{0, 1e9, true});
  p.add_flag("-q,--quiet", "no progress output", &o.quiet);
  if (auto rc = p.parse(args)) return *rc;

  if (o.url.empty() == o.model_path.empty()) return fail(error(ErrorCode::kInvalidArgument, "pass exactly one of --url and -m"));
  std::vector<double> sweep;
  if (!o.sweep_qps.empty()) {
    auto list = parse_qps_list(o.sweep_qps);
    if (!list) return fail(list.status());
    sweep = std::move(*list);
    if (!o.scenario.empty() && o.scenario != "server")
      return fail(error(ErrorCode::kInvalidArgument, "--sweep-qps runs the server scenario; drop --scenario or set it to server"));
    o.scenario = "server";
  }
  if (o.scenario.empty()) return fail(error(ErrorCode::kInvalidArgument, "pass --scenario single-stream|server|offline"));
  auto scenario = loadgen::parse_scenario(o.scenario);
  if (!scenario) return fail(scenario.status());
  if (o.requests <= 0 && o.duration_s <= 0) o.requests = 64;
  if (*scenario == Scenario::kServer && sweep.empty() && !(o.qps > 0))
    return fail(error(ErrorCode::kInvalidArgument, "the server scenario needs --qps Q (or --sweep-qps A,B,C)"));

  auto output_len = plan::LengthDistribution::parse(o.output_len);
  if (!output_len) return fail(output_len.status());
  const uint64_t seed = static_cast<uint64_t>(o.seed);
  std::unique_ptr<loadgen::Workload> workload;
  if (!o.dataset.empty()) {
    auto w = loadgen::Workload::from_jsonl(o.dataset, *output_len, seed);
    if (!w) return fail(w.status());
    workload = std::make_unique<loadgen::Workload>(std::move(*w));
  } else {
    auto prompt_len = plan::LengthDistribution::parse(o.prompt_len);
    if (!prompt_len) return fail(prompt_len.status());
    workload = std::make_unique<loadgen::Workload>(loadgen::Workload::synthetic(*prompt_len, *output_len, seed));
  }

  std::unique_ptr<loadgen::Target> target;
  if (!o.url.empty()) {
    loadgen::HttpTargetOptions ho{o.url, o.model_name, o.api_key, o.chat, o.timeout_s};
    auto t = loadgen::HttpTarget::create(ho);
    if (!t) return fail(t.status());
    if (ho.model.empty()) {
      // OpenAI-style servers need a model name; ask for the one it serves.
      if (auto id = (*t)->first_model_id()) {
        ho.model = *id;
        t = loadgen::HttpTarget::create(ho);
        if (!t) return fail(t.status());
      }
    }
    target = std::move(*t);
  } else {
    loadgen::LocalTargetOptions lo;
    lo.model_path = o.model_path;
    lo.n_threads = o.threads;
    lo.map = o.map;
    lo.n_ctx = local_context_size(*workload, o.requests);
    const int64_t in_flight = *scenario == Scenario::kSingleStream ? 1 : o.concurrency > 0 ? o.concurrency : 64;
    lo.n_seq_max = static_cast<int32_t>(o.max_seqs > 0 ? o.max_seqs : std::max<int64_t>(1, o.requests > 0 ? std::min(in_flight, o.requests) : in_flight));
    lo.seed = seed;
    auto t = loadgen::LocalTarget::create(lo);
    if (!t) return fail(t.status());
    target = std::move(*t);
  }

  loadgen::RunOptions ro;
  ro.scenario = *scenario;
  ro.qps = o.qps;
  ro.concurrency = o.concurrency;
  ro.requests = o.requests;
  ro.duration_s = o.duration_s;
  ro.seed = seed + 1;  // arrivals draw from a stream of their own
  const bool local = !o.model_path.empty();

  if (sweep.empty()) {
    auto run = run_once(*target, *workload, ro, o);
    if (!run) return fail(run.status());
    loadgen::LoadReport report = loadgen::summarize_run(*run, target->describe(), workload->describe());
    if (local) report.peak_rss_bytes = peak_resident_bytes();
    if (o.as_json) std::printf("%s\n", to_text(loadgen::report_json(report)).c_str());
    else std::printf("%s", loadgen::report_table(report).c_str());
    if (!o.plot_path.empty()) {
      const Status st = plan::write_text_file(o.plot_path, plan::render_svg_panels(loadgen::run_charts(*run, report)));
      if (!st.is_ok()) return fail(st);
      if (!o.as_json) std::printf("plot         %s\n", o.plot_path.c_str());
    }
    return all_failed(report) ? 1 : 0;
  }

  std::vector<loadgen::SweepPoint> points;
  plan::Chart ttft_cdfs;
  ttft_cdfs.title = "Time to first token, CDF per offered load";
  ttft_cdfs.x_label = "TTFT (ms)";
  ttft_cdfs.y_label = "fraction of requests";
  for (double qps : sweep) {
    ro.qps = qps;
    auto run = run_once(*target, *workload, ro, o);
    if (!run) return fail(run.status());
    loadgen::LoadReport report = loadgen::summarize_run(*run, target->describe(), workload->describe());
    if (local) report.peak_rss_bytes = peak_resident_bytes();
    std::vector<double> ttft;
    for (const loadgen::RequestRecord& r : run->records)
      if (r.outcome.ok() && !r.outcome.chunk_times.empty()) ttft.push_back((r.outcome.t_first_token - r.outcome.t_sent) * 1e3);
    ttft_cdfs.series.push_back(plan::cdf_series(strprintf("%.3g req/s", qps), ttft));
    points.push_back({qps, std::move(report)});
  }
  if (o.as_json) {
    std::printf("%s\n", to_text(loadgen::sweep_json(points, o.ttft_p99_target_ms)).c_str());
  } else {
    std::printf("target       %s\nworkload     %s\n%s", target->describe().c_str(), workload->describe().c_str(),
                loadgen::sweep_table(points, o.ttft_p99_target_ms).c_str());
  }
  if (!o.plot_path.empty()) {
    const Status st = plan::write_text_file(o.plot_path,
                                            plan::render_svg_panels({loadgen::sweep_chart(points, o.ttft_p99_target_ms), ttft_cdfs}));
    if (!st.is_ok()) return fail(st);
    if (!o.as_json) std::printf("plot         %s\n", o.plot_path.c_str());
  }
  bool every_rate_failed = true;
  for (const loadgen::SweepPoint& point : points) every_rate_failed = every_rate_failed && all_failed(point.report);
  return every_rate_failed ? 1 : 0;
}

}  // namespace fathom::tools
