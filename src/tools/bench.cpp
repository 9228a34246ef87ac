// fathom bench: prompt processing (pp: one batch of P tokens) and generation (tg: N tokens one
// at a time) in tokens/s, mean ± stddev over repetitions after a warm-up, as llama-bench defines
// them; then the machine's read bandwidth on the engine's own threads and the generation bound
// it implies (bandwidth / weight bytes one token reads). With --device cuda the device's copy
// bandwidth and f16 tensor throughput are measured too, and the bounds use them for the weights
// placed there.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/placed_backend.h"
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

// What a pp or tg run computes on: the cache's element types and the positions already in it.
struct RunSetup {
  KvCacheTypes kv_types;
  int64_t depth = 0;  // tokens evaluated (untimed) before the run, as llama-bench's -d
};

// A cache for one sequence of n_tokens positions, holding `depth` evaluated tokens. Every pp
// and tg run writes only positions from `depth` on and attends only to positions up to its
// own, so one filled cache serves all of them: a run starts from the same state whatever the
// runs before it left beyond `depth` (the fill costs more than all the runs at -d 16384).
Expected<KvCache> filled_cache(Model& model, const RunSetup& setup, int64_t n_tokens) {
  const KvCacheShape shape = with_types(model.kv_shape(n_tokens), setup.kv_types);
  FATHOM_RETURN_IF_ERROR(check_kv_cache_types(shape));
  KvCache kv(shape, static_cast<int32_t>((n_tokens + shape.block_size - 1) / shape.block_size));
  Batch batch;
  for (int64_t i = 0; i < setup.depth; ++i) batch.add(bench_token(i, model.config().n_vocab), static_cast<int32_t>(i), 0, i + 1 == setup.depth);
  std::vector<float> logits;
  if (setup.depth > 0) FATHOM_RETURN_IF_ERROR(model.forward(batch, kv, logits));
  return kv;
}

// Seconds to evaluate n_prompt tokens as one batch (chunked by the model's step budget) after
// `depth` cached tokens.
Expected<double> time_prompt(Model& model, KvCache& kv, int64_t depth, int64_t n_prompt) {
  Batch batch;
  for (int64_t i = depth; i < depth + n_prompt; ++i)
    batch.add(bench_token(i, model.config().n_vocab), static_cast<int32_t>(i), 0, i + 1 == depth + n_prompt);
  std::vector<float> logits;
  const double t0 = now_seconds();
  FATHOM_RETURN_IF_ERROR(model.forward(batch, kv, logits));
  return now_seconds() - t0;
}

// Seconds to generate n_gen tokens one forward at a time after `depth` cached tokens.
Expected<double> time_generation(Model& model, KvCache& kv, int64_t depth, int64_t n_gen) {
  Batch batch;
  std::vector<float> logits;
  const double t0 = now_seconds();
  for (int64_t i = depth; i < depth + n_gen; ++i) {
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

#if FATHOM_HAVE_CUDA
CudaBackend* cuda_of(Backend& backend) {
  auto* placed = dynamic_cast<PlacedBackend*>(&backend);
  return placed ? dynamic_cast<CudaBackend*>(&placed->device()) : nullptr;
}
#endif

}  // namespace

int cmd_bench(const Args& args) {
  if (!args.empty() && args[0] == "load") return cmd_bench_load(Args(args.begin() + 1, args.end()));
  std::string model_path;
  int threads = 0, reps = 3;
  int64_t n_prompt = 512, n_gen = 128;
  int64_t bw_mib = -1;
  bool as_json = false;
  LoadOptions lo;
  RunSetup setup;
  KvCacheTypeOptions cache_types;
  ArgParser p("fathom bench -m FILE.gguf [-t N] [--device DEV] [-p 512] [-n 128] [-r 3] [-d D] [--json]",
              "Measures prompt processing (pp: one batch of P tokens) and generation (tg: N single-token\n"
              "steps) in tokens/s, mean ± stddev over R repetitions after one warm-up — llama-bench's definitions.\n"
              "Then measures the memory read bandwidth on the same threads and prints the generation bound:\n"
              "bandwidth / weight bytes one token reads (MoE: active experts only). With --device cuda it also\n"
              "measures the GPU's copy bandwidth and f16 GEMM throughput and relates tg and pp to them.\n"
              "Serving load tests (latency percentiles under a request rate): see `fathom bench load --help`.");
  add_model_option(p, &model_path);
  p.add_threads("CPU threads (default: all cores)", &threads);
  add_device_option(p, &lo.device);
  add_placement_options(p, &lo.placement);
  add_map_options(p, &lo.map);
  p.add_int("-p,--n-prompt", "P", "prompt tokens; 0 skips pp (default 512)", &n_prompt, Range::between(0, kMaxTokens));
  p.add_int("-n,--n-gen", "N", "generated tokens; 0 skips tg (default 128)", &n_gen, Range::between(0, kMaxTokens));
  p.add_int("-r,--repetitions", "R", "repetitions (default 3)", &reps, Range::between(1, 1000));
  p.add_int("-d,--n-depth", "D", "tokens already in the KV cache before each pp and tg run, evaluated once, untimed (default 0)",
            &setup.depth, Range::between(0, kMaxTokens));
  cache_types.add_to(p);
  p.add_int("--bw-mib", "MiB", "bandwidth probe buffer; 0 skips the probe (default: max(1024, 8 x last-level cache))",
            &bw_mib, Range::between(0, 1 << 20));
  p.add_flag("--json", "print JSON", &as_json);
  if (auto rc = p.parse(args)) return *rc;
  if (model_path.empty()) return p.fail("no model; pass -m FILE.gguf");
  if (setup.depth > INT32_MAX - std::max(n_prompt, n_gen) - 1)
    return p.fail(strprintf("-d plus -p or -n passes the %d positions a sequence can hold", INT32_MAX));
  if (!cache_types.parse_or_print("bench", &setup.kv_types)) return 2;
  if (Status st = check_device_exists(lo.device); !st.is_ok()) return p.runtime_error(st.message());
  // pp runs one batch of -p tokens, tg -n single steps; the one cache holds the depth, the longer run and one.
  MemoryDemand demand;
  demand.n_ctx = setup.depth + std::max(n_prompt, n_gen) + 1;
  demand.step_tokens = std::max<int64_t>({n_prompt, setup.depth, 1});
  demand.kv_types = setup.kv_types;
  demand.device = lo.device;
  demand.placement = lo.placement;
  MemoryWording wording;
  wording.request = n_prompt >= n_gen ? strprintf("-p %lld", static_cast<long long>(n_prompt)) : strprintf("-n %lld", static_cast<long long>(n_gen));
  wording.remedy = n_prompt >= n_gen ? "lower -p/--n-prompt" : "lower -n/--n-gen";
  if (!memory_fits("bench", model_path, demand, wording)) return 1;
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
  std::optional<KvCache> kv;  // filled on first use, shared by every run
  auto run = [&](const char* name, int64_t n, auto timer) -> bool {
    if (n == 0) return true;
    if (!kv) {
      auto filled = filled_cache(m, setup, setup.depth + std::max(n_prompt, n_gen) + 1);
      if (!filled) {
        std::fprintf(stderr, "fathom bench: %s\n", filled.status().to_string().c_str());
        return false;
      }
      kv.emplace(std::move(*filled));
    }
    std::vector<double> tps;
    for (int r = 0; r <= reps; ++r) {  // r == 0 is the warm-up
      auto secs = timer(m, *kv, setup.depth, n);
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
  out["backend"] = m.backend().name();
  if (!as_json) {
    std::printf("model: %s\n%s\nthreads: %d\nbackend: %s\n", model_path.c_str(), m.config().summary().c_str(), m.backend().n_threads(),
                m.backend().name());
    // The cache the runs below share: one sequence of D + max(P, N) + 1 positions.
    const KvCacheShape kv = with_types(m.kv_shape(1), setup.kv_types);
    const uint64_t kv_per_layer = static_cast<uint64_t>(kv_bytes_per_token(kv) / std::max<int64_t>(1, kv.n_layer)) *
                                  static_cast<uint64_t>(setup.depth + std::max<int64_t>(n_prompt, n_gen) + 1);
    if (m.placement().device != "cpu")
      for (const std::string& line : m.placement().describe(kv_per_layer)) std::printf("placed   %s\n", line.c_str());
  }
  if (!run("pp", n_prompt, time_prompt) || !run("tg", n_gen, time_generation)) return 1;

  // Weight bytes and FLOPs of one token, split by where the weights run: the device's share is
  // read at the device's bandwidth when it has its own memory (CUDA), the rest at the host's.
  const Placement& placement = m.placement();
  std::unordered_map<std::string, Placed> where;
  for (const TensorPlacement& t : placement.tensors) where[t.name] = t.where;
  const TokenWeights all = weights_per_token(m.file(), m.config());
  const TokenWeights on_device = weights_per_token(m.file(), m.config(), [&](const std::string& name) {
    auto it = where.find(name);
    return it != where.end() && it->second == Placed::kDevice;
  });
  out["weight_bytes_per_token"] = all.bytes;
  out["matmul_params_per_token"] = all.matmul_params;
  double device_gb_s = 0.0, device_tflops = 0.0;
#if FATHOM_HAVE_CUDA
  if (CudaBackend* cuda = cuda_of(m.backend()); cuda && bw_mib != 0) {
    auto peaks = cuda->measure_peaks();
    if (!peaks) {
      std::fprintf(stderr, "fathom bench: measuring the GPU: %s\n", peaks.status().to_string().c_str());
      return 1;
    }
    device_gb_s = peaks->copy_gb_s;
    device_tflops = peaks->fp16_tflops;
    out["device_bandwidth_gb_s"] = device_gb_s;
    out["device_fp16_tflops"] = device_tflops;
    out["device_weight_bytes_per_token"] = on_device.bytes;
    if (!as_json)
      std::printf("gpu       %s: copy %.0f GB/s (%zu MiB device to device, read + write), f16 GEMM %.1f TFLOP/s (n = %lld)\n",
                  cuda->device().name.c_str(), device_gb_s, peaks->copy_bytes >> 20, device_tflops, static_cast<long long>(peaks->gemm_n));
  }
#endif
  if (bw_mib != 0) {
    const size_t buffer = bw_mib > 0 ? static_cast<size_t>(bw_mib) << 20 : default_bandwidth_buffer_bytes();
    const ReadBandwidth bw = bench_bandwidth(m.backend(), buffer);
    const uint64_t host_bytes = device_gb_s > 0 ? all.bytes - on_device.bytes : all.bytes;
    const double secs_per_token = static_cast<double>(host_bytes) / (bw.gb_per_s * 1e9) +
                                  (device_gb_s > 0 ? static_cast<double>(on_device.bytes) / (device_gb_s * 1e9) : 0.0);
    const double bound = secs_per_token > 0 ? 1.0 / secs_per_token : 0.0;
    out["bandwidth_gb_s"] = bw.gb_per_s;
    out["bandwidth_buffer_bytes"] = bw.bytes;
    out["tg_bound_tok_s"] = bound;
    if (!as_json) {
      std::printf("bandwidth %.1f GB/s (best of %d reads of %zu MiB, %d threads), weights %.3f GB/token", bw.gb_per_s, bw.passes,
                  bw.bytes >> 20, m.backend().n_threads(), static_cast<double>(all.bytes) / 1e9);
      if (device_gb_s > 0) std::printf(" (%.3f GB on the GPU)", static_cast<double>(on_device.bytes) / 1e9);
      std::printf(" -> tg bound %.1f tok/s", bound);
      for (const auto& r : out["results"])
        if (r["test"].get<std::string>().rfind("tg", 0) == 0 && bound > 0)
          std::printf("; %s = %.0f%% of bound", r["test"].get<std::string>().c_str(), 100.0 * r["tokens_per_second"].get<double>() / bound);
      std::printf("\n");
    }
  } else if (!as_json) {
    std::printf("weights %.3f GB/token (bandwidth probe skipped)\n", static_cast<double>(all.bytes) / 1e9);
  }
  if (device_tflops > 0) {
    for (const auto& r : out["results"]) {
      if (r["test"].get<std::string>().rfind("pp", 0) != 0) continue;
      const double tflops = r["tokens_per_second"].get<double>() * 2.0 * static_cast<double>(all.matmul_params) / 1e12;
      out["pp_tflops"] = tflops;
      if (!as_json)
        std::printf("%s runs the matrix products at %.1f TFLOP/s = %.0f%% of the measured f16 GEMM peak\n",
                    r["test"].get<std::string>().c_str(), tflops, 100.0 * tflops / device_tflops);
    }
  }
  if (as_json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace fathom::tools
