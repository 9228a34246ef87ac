#include "backend/cpu/matmul.h"

#include <algorithm>

#include "quant/quant.h"

namespace fathom::cpu {

namespace {

// Rows handed to a thread at a time: at least 16, and enough that a chunk does ~64K
// multiply-adds, so tiny matrices run on the calling thread instead of paying for a wake-up.
constexpr int64_t kMinRowGrain = 16;
constexpr int64_t kMinWorkPerChunk = 1 << 16;
// Rows of a tile reused across all tokens while it is in L1/L2 (prefill); one pass for decode.
constexpr int64_t kRowTile = 64;

// The AMX BF16 path for GGUF rows (Kernels::gemm_rows_bf16): the tokens rounded to bf16 tiles
// once, then the rows' 16-row groups spread over the pool.
void matmul_rows_bf16(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* x, int64_t n_tokens,
                      float* y, MatmulScratch& scratch) {
  const int64_t n = w.ne[0], n_out = w.n_rows();
  const int64_t tiled = (n_tokens + kGemmTokenTile - 1) / kGemmTokenTile * kGemmTokenTile;
  uint16_t* tiles = scratch.bt.get(static_cast<size_t>(tiled * n));
  const int64_t token_grain = std::max<int64_t>(1, kMinWorkPerChunk / (4 * n));
  pool.parallel_for(n_tokens, token_grain, [&](int, int64_t t0, int64_t t1) {
    kernels.gemm_bf16_tokens(x + t0 * n, n_tokens, n, t0, t1, tiles);
  });
  GemmActivations a;
  a.n_tokens = n_tokens;
  a.n = n;
  a.f = x;
  a.bt = tiles;
  const size_t w_row = w.row_bytes();
  const auto* wdata = static_cast<const uint8_t*>(w.data);
  const int64_t n_groups = (n_out + kGemmRows - 1) / kGemmRows;
  pool.parallel_for(n_groups, 8, [&](int, int64_t g0, int64_t g1) {  // 8 groups share each chunk of the tokens
    const int64_t r0 = g0 * kGemmRows, r1 = std::min(n_out, g1 * kGemmRows);
    kernels.gemm_rows_bf16(w.dtype, wdata + static_cast<size_t>(r0) * w_row, w_row, r1 - r0, a, y + r0, n_out);
  });
}

}  // namespace

void matmul(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* x, int64_t n_tokens, float* y,
            MatmulScratch& scratch, RepackCache* repacked) {
  if (repacked != nullptr && kernels.gemm_is_simd) {
    if (const RepackedMatrix* r = repacked->get(w, pool)) {
      if (scratch.gemm.empty()) scratch.gemm.resize(1);
      return gemm(pool, kernels, *r, x, n_tokens, y, scratch.gemm[0]);
    }
  }
  const int64_t n_in = w.ne[0], n_out = w.n_rows();
  if (kernels.gemm_rows_bf16 != nullptr && n_tokens >= kAmxBf16MinTokens && n_in % 256 == 0 && w.dtype != DType::F32 &&
      quant::can_dequantize(w.dtype))
    return matmul_rows_bf16(pool, kernels, w, x, n_tokens, y, scratch);
  std::vector<uint8_t>& act_q = scratch.act_q;
  const DType act_type = quant::vec_dot_type(w.dtype);
  const size_t act_row = row_size(act_type, n_in);
  if (act_q.size() < act_row * static_cast<size_t>(n_tokens)) act_q.resize(act_row * static_cast<size_t>(n_tokens));
  uint8_t* xq = act_q.data();
  const int64_t token_grain = std::max<int64_t>(1, kMinWorkPerChunk / (4 * n_in));
  pool.parallel_for(n_tokens, token_grain, [&](int, int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) quantize_activations(kernels, act_type, x + t * n_in, xq + static_cast<size_t>(t) * act_row, n_in);
  });
  const size_t w_row = w.row_bytes();
  const auto* wdata = static_cast<const uint8_t*>(w.data);
  const int64_t row_grain = std::max<int64_t>(kMinRowGrain, kMinWorkPerChunk / std::max<int64_t>(1, n_in * n_tokens));
  pool.parallel_for(n_out, row_grain, [&](int, int64_t begin, int64_t end) {
    for (int64_t r0 = begin; r0 < end; r0 += kRowTile) {
      const int64_t rows = std::min(end - r0, kRowTile);
      vec_dot_tokens(kernels, w.dtype, n_in, wdata + static_cast<size_t>(r0) * w_row, w_row, rows, xq, act_row,
                     n_tokens, y + r0, n_out);
    }
  });
}

bool matmul_swiglu(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* gate, const float* up,
                   int64_t n_tokens, float* y, MatmulScratch& scratch, RepackCache* repacked) {
  if (repacked == nullptr || !kernels.gemm_is_simd) return false;
  const RepackedMatrix* r = repacked->get(w, pool);
  if (r == nullptr || gemm_block(r->type) == 0) return false;
  if (scratch.gemm.empty()) scratch.gemm.resize(1);
  GemmJob job{r, gate, n_tokens, y};
  job.up = up;
  gemm_many(pool, kernels, &job, 1, scratch.gemm.data());
  return true;
}

bool ffn_fuses(ThreadPool& pool, const Kernels& kernels, const TensorView& w_gate, const TensorView& w_up,
               const TensorView& w_down, int64_t n_tokens, RepackCache* repacked, FfnMatrices* m) {
  if (repacked == nullptr || !kernels.gemm_is_simd || kernels.gemm_swiglu_range == nullptr) return false;
  *m = {repacked->get(w_gate, pool), repacked->get(w_up, pool), repacked->get(w_down, pool)};
  return m->gate != nullptr && m->up != nullptr && m->down != nullptr &&
         gemm_swiglu_fuses(kernels, *m->gate, *m->up, *m->down, n_tokens);
}

void ffn_swiglu(ThreadPool& pool, const Kernels& kernels, const FfnMatrices& m, const float* x, int64_t n_tokens,
                float* y, MatmulScratch& scratch) {
  if (scratch.gemm.size() < 2) scratch.gemm.resize(2);
  gemm_swiglu(pool, kernels, *m.gate, *m.up, *m.down, x, n_tokens, y, scratch.gemm.data());
}

void matmul_batch(ThreadPool& pool, const Kernels& kernels, const std::vector<MatmulJob>& jobs, MatmulScratch& scratch,
                  RepackCache* repacked) {
  std::vector<GemmJob> fast;
  fast.reserve(jobs.size());
  for (const MatmulJob& j : jobs) {
    const RepackedMatrix* r = repacked != nullptr && kernels.gemm_is_simd ? repacked->get(j.w, pool) : nullptr;
    if (r != nullptr) {
      fast.push_back({r, j.x, j.n_tokens, j.y});
    } else {
      matmul(pool, kernels, j.w, j.x, j.n_tokens, j.y, scratch, nullptr);
    }
  }
  if (fast.empty()) return;
  if (scratch.gemm.size() < fast.size()) scratch.gemm.resize(fast.size());
  gemm_many(pool, kernels, fast.data(), fast.size(), scratch.gemm.data());
}

}  // namespace fathom::cpu
