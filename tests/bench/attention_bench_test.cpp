// Benchmarks (ctest label `slow`: `make bench` runs them, `make test` does not): CPU attention
// at a 4096-token context, the reference twin against every ISA this machine supports, with the
// figures printed and each timed kernel's output checked against the reference's.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/attention_test_util.h"
#include "backend/cpu/attention.h"

namespace fathom::cpu {
namespace {

// Seconds per call, best of `reps`.
template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Context 4096 at the R1-Distill-Qwen-1.5B attention shape (12 heads, 2 KV heads, 128 wide):
// one decode token, and a 64-token prefill chunk ending at position 4095. Two threads.
TEST(AttentionBench, Context4096) {
  ThreadPool pool(2);
  const int64_t n_head = 12, n_head_kv = 2, d = 128;
  // Decode on each stored type (they cost a conversion per tile), and a prefill chunk on f32.
  const std::pair<int64_t, KvCacheTypes> runs[] = {
      {1, kF32Cache}, {1, {DType::F16, DType::F16}}, {1, {DType::Q8_0, DType::Q8_0}}, {1, {DType::Q4_0, DType::Q4_0}}, {64, kF32Cache}};
  for (const auto& [n_new, types] : runs) {
    PagedCache setup({{4096, n_new}}, n_head_kv * d, n_head_kv * d, 16, 1, types);
    const AttentionBatch batch = setup.batch();
    std::mt19937 rng(2);
    std::vector<float> q(static_cast<size_t>(batch.n_tokens * n_head * d)), out(q.size());
    fill_gaussian(q.data(), static_cast<int64_t>(q.size()), rng);
    const int reps = n_new > 1 ? 3 : types.k == DType::F32 ? 20 : 5;
    const double ref = best_seconds(reps, [&] {
      attention_ref(pool, q.data(), setup.kv, 0, batch, n_head, n_head_kv, d, d, 0.088f, out.data());
    });
    const std::vector<float> want = out;
    std::printf("[ bench    ] attention ctx 4096, %lld new token(s), 12/2 heads x 128, %s, 2 threads: reference %.3f ms",
                static_cast<long long>(n_new), types_name(types).c_str(), ref * 1e3);
    for (Isa isa : available_isas()) {
      const double t = best_seconds(reps, [&] {
        attention(pool, isa, q.data(), setup.kv, 0, batch, n_head, n_head_kv, d, d, 0.088f, out.data());
      });
      std::printf(", %s %.3f ms (x%.1f)", isa_name(isa), t * 1e3, ref / t);
      EXPECT_LT(max_row_error(out, want, d), 1e-4) << isa_name(isa);  // what was timed computed the right thing
    }
    std::printf("\n");
  }
}

// Context 4096 at DeepSeek-V2-Lite's MLA shape (16 heads, kv_lora_rank 512, 64 rope dims), decode.
TEST(AttentionBench, MlaContext4096) {
  ThreadPool pool(2);
  const int64_t n_head = 16, rank = 512, n_rot = 64;
  PagedCache setup({{4096, 1}}, rank + n_rot, 0, 16, 1);
  const AttentionBatch batch = setup.batch();
  std::mt19937 rng(2);
  std::vector<float> q_abs(static_cast<size_t>(n_head * rank)), q_pe(static_cast<size_t>(n_head * n_rot)), out(q_abs.size());
  fill_gaussian(q_abs.data(), static_cast<int64_t>(q_abs.size()), rng);
  fill_gaussian(q_pe.data(), static_cast<int64_t>(q_pe.size()), rng);
  const double ref = best_seconds(10, [&] {
    mla_attention_ref(pool, q_abs.data(), q_pe.data(), setup.kv, 0, batch, n_head, rank, n_rot, 0.04f, out.data());
  });
  const std::vector<float> want = out;
  std::printf("[ bench    ] mla attention ctx 4096, 1 new token, 16 heads x (512 + 64), 2 threads: reference %.3f ms", ref * 1e3);
  for (Isa isa : available_isas()) {
    const double t = best_seconds(10, [&] {
      mla_attention(pool, isa, q_abs.data(), q_pe.data(), setup.kv, 0, batch, n_head, rank, n_rot, 0.04f, out.data());
    });
    std::printf(", %s %.3f ms (x%.1f)", isa_name(isa), t * 1e3, ref / t);
    EXPECT_LT(max_row_error(out, want, rank), 1e-4) << isa_name(isa);
  }
  std::printf("\n");
}

}  // namespace
}  // namespace fathom::cpu
