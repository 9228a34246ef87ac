// fathom bench: prompt processing (pp: one batch of P tokens) and generation (tg: N tokens one
// at a time) in tokens/s, mean ± stddev over repetitions after a warm-up, as llama-bench defines
// them; then the machine's read bandwidth on the engine's own threads and the generation bound
// it implies (bandwidth / weight bytes one token reads).
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/bandwidth.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

struct Measurement {
  double mean = 0.0;    // tokens per second
  double stddev = 0.0;  // across repetitions
};

Measurement summarize(const std::vector<double>& tps) {
  Measurement m;
  for (double v : tps) m.mean += v;
  m.mean /= static_cast<double>(tps.size());
  for (double v : tps) m.stddev += (v - m.mean) * (v - m.mean);
  m.stddev = tps.size() > 1 ? std::sqrt(m.stddev / static_cast<double>(tps.size() - 1)) : 0.0;
  return m;
}

// Tokens spread over the vocabulary, deterministic.
int32_t bench_token(int64_t i, int64_t n_vocab) { return static_cast<int32_t>((i * 7919 + 13) % n_vocab); }

// Seconds to evaluate n_prompt tokens as one batch (chunked by the model's step budget).
Expected<double> time_prompt(Model& model, int64_t n_prompt) {
  KvCacheShape shape = model.kv_shape(n_prompt + 1);
  KvCache kv(shape, static_cast<int32_t>((n_prompt + shape.block_size) / shape.block_size));
  Batch batch;
  for (int64_t i = 0; i < n_prompt; ++i) batch.add(bench_token(i, model.config().n_vocab), static_cast<int32_t>(i), 0, i + 1 == n_prompt);
  std::vector<float> logits;
  const double t0 = now_seconds();
  FATHOM_RETURN_IF_ERROR(model.forward(batch, kv, logits));
  return now_seconds() - t0;
}

// Seconds to generate n_gen tokens one forward at a time from an empty context.
Expected<double> time_generation(Model& model, int64_t n_gen) {
  KvCacheShape shape = model.kv_shape(n_gen + 1);
  KvCache kv(shape, static_cast<int32_t>((n_gen + shape.block_size) / shape.block_size));
  Batch batch;
  std::vector<float> logits;
  const double t0 = now_seconds();
  for (int64_t i = 0; i < n_gen; ++i) {
    batch.clear();
    batch.add(bench_token(i, model.config().n_vocab), static_cast<int32_t>(i), 0, true);
    FATHOM_RETURN_IF_ERROR(model.forward(batch, kv, logits));
  }
  return now_seconds() - t0;
}

// Reads memory on the backend's own thread pool (a fresh pool of as many threads for a backend
// without one).
ReadBandwidth bench_bandwidth(Backend& backend, size_t bytes) {
  if (auto* cpu = dynamic_cast<CpuBackend*>(&backend)) return measure_read_bandwidth(cpu->pool(), bytes, 5, 0.3);
  ThreadPool pool(backend.n_threads());
  return measure_read_bandwidth(pool, bytes, 5, 0.3);
}

}  // namespace

int cmd_bench(const Args& args) {
  if (!args.empty() && args[0] == "load") return cmd_bench_load(Args(args.begin() + 1, args.end()));
  std::string model_path;
  int threads = 0, reps = 3;
  int64_t n_prompt = 512, n_gen = 128;
  int64_t bw_mib = -1;
  bool as_json = false;
  ArgParser p("fathom bench -m FILE.gguf [-t N] [-p 512] [-n 128] [-r 3] [--bw-mib MiB] [--json]",
              "Measures prompt processing (pp: one batch of P tokens) and generation (tg: N single-token\n"
              "steps) in tokens/s, mean ± stddev over R repetitions after one warm-up — llama-bench's definitions.\n"
              "Then measures the memory read bandwidth on the same threads and prints the generation bound:\n"
              "bandwidth / weight bytes one token reads (MoE: active experts only).\n"
              "Serving load tests (latency percentiles under a request rate): see `fathom bench load --help`.");
  p.add_string("-m,--model", "FILE", "GGUF model file (required)", &model_path);
  p.add_int("-t,--threads", "N", "CPU threads (default: all cores)", &threads);
  p.add_int("-p,--n-prompt", "P", "prompt tokens; 0 skips pp (default 512)", &n_prompt);
  p.add_int("-n,--n-gen", "N", "generated tokens; 0 skips tg (default 128)", &n_gen);
  p.add_int("-r,--repetitions", "R", "repetitions (default 3)", &reps);
  p.add_int("--bw-mib", "MiB", "bandwidth probe buffer; 0 skips the probe (default: max(1024, 8 x last-level cache))", &bw_mib);
  p.add_flag("--json", "print JSON", &as_json);
  if (auto rc = p.parse(args)) return *rc;
  if (model_path.empty()) {
    std::fprintf(stderr, "fathom bench: pass -m FILE.gguf\n");
    return 2;
  }
  if (reps < 1 || n_prompt < 0 || n_gen < 0) {
    std::fprintf(stderr, "fathom bench: -r must be >= 1 and -p/-n >= 0\n");
    return 2;
  }
  LoadOptions lo;
  lo.n_threads = threads;
  auto model = Model::load(model_path, lo);
  if (!model) {
    std::fprintf(stderr, "fathom bench: %s\n", model.status().to_string().c_str());
    return 1;
  }
  Model& m = **model;
  nlohmann::json out;
  out["model"] = model_path;
  out["threads"] = m.backend().n_threads();
  out["config"] = m.config().summary();
  auto run = [&](const char* name, int64_t n, auto timer) -> bool {
    if (n == 0) return true;
    std::vector<double> tps;
    for (int r = 0; r <= reps; ++r) {  // r == 0 is the warm-up
      auto secs = timer(m, n);
      if (!secs) {
        std::fprintf(stderr, "fathom bench: %s\n", secs.status().to_string().c_str());
        return false;
      }
      if (r > 0) tps.push_back(static_cast<double>(n) / *secs);
    }
    const Measurement meas = summarize(tps);
    const std::string test = std::string(name) + std::to_string(n);
    out["results"].push_back({{"test", test}, {"tokens_per_second", meas.mean}, {"stddev", meas.stddev}, {"samples", tps}});
    if (!as_json) std::printf("%-8s %10.2f ± %.2f tok/s\n", test.c_str(), meas.mean, meas.stddev);
    return true;
  };
  if (!as_json) std::printf("model: %s\n%s\nthreads: %d\n", model_path.c_str(), m.config().summary().c_str(), m.backend().n_threads());
  if (!run("pp", n_prompt, time_prompt) || !run("tg", n_gen, time_generation)) return 1;

  const uint64_t weight_bytes = weight_bytes_per_token(m.file(), m.config());
  out["weight_bytes_per_token"] = weight_bytes;
  if (bw_mib != 0) {
    const size_t buffer = bw_mib > 0 ? static_cast<size_t>(bw_mib) << 20 : default_bandwidth_buffer_bytes();
    const ReadBandwidth bw = bench_bandwidth(m.backend(), buffer);
    const double bound = weight_bytes > 0 ? bw.gb_per_s * 1e9 / static_cast<double>(weight_bytes) : 0.0;
    out["bandwidth_gb_s"] = bw.gb_per_s;
    out["bandwidth_buffer_bytes"] = bw.bytes;
    out["tg_bound_tok_s"] = bound;
    if (!as_json) {
      std::printf("bandwidth %.1f GB/s (best of %d reads of %zu MiB, %d threads), weights %.3f GB/token -> tg bound %.1f tok/s",
                  bw.gb_per_s, bw.passes, bw.bytes >> 20, m.backend().n_threads(), static_cast<double>(weight_bytes) / 1e9, bound);
      for (const auto& r : out["results"])
        if (r["test"].get<std::string>().rfind("tg", 0) == 0 && bound > 0)
          std::printf("; %s = %.0f%% of bound", r["test"].get<std::string>().c_str(), 100.0 * r["tokens_per_second"].get<double>() / bound);
      std::printf("\n");
    }
  } else if (!as_json) {
    std::printf("weights %.3f GB/token (bandwidth probe skipped)\n", static_cast<double>(weight_bytes) / 1e9);
  }
  if (as_json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace fathom::tools
