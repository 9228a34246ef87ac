// CPU matrix multiplication over GGUF block formats: activations are quantized once per call
// into the weight type's vec_dot format, then output rows are split across the pool so each
// weight row is read once for all tokens of the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "backend/backend.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/vec_dot.h"
#include "core/threadpool.h"

namespace fathom::cpu {

// Scratch reused across calls (grown as needed).
struct MatmulScratch {
  std::vector<uint8_t> act_q;  // [n_tokens, row_size(vec_dot_type, n_in)] activations for the row dots
  std::vector<GemmScratch> gemm;  // one per job of a batch
  AlignedScratch<uint16_t> bt;    // [tokens, n_in] bf16 token tiles of the AMX BF16 row path
};

// y[t, r] = dot(W row r, x[t, :]). x: [n_tokens, n_in]; y: [n_tokens, n_out]. Weights the cache
// repacks (when the kernels have a SIMD x16 path) go through gemm(); the rest through row dot
// products on the GGUF layout. Either way a token's result does not depend on the batch.
void matmul(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* x, int64_t n_tokens, float* y,
            MatmulScratch& scratch, RepackCache* repacked);
// y = W · swiglu(gate, up) with the activation fused into the tokens' conversion (GemmJob::up),
// when W is a quantized matrix the cache repacks; false (nothing done) otherwise, for the caller's
// unfused form. gate, up: [n_tokens, n_in], left as they were.
bool matmul_swiglu(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* gate, const float* up,
                   int64_t n_tokens, float* y, MatmulScratch& scratch, RepackCache* repacked);
// A SwiGLU FFN's repacked matrices.
struct FfnMatrices {
  const RepackedMatrix* gate = nullptr;
  const RepackedMatrix* up = nullptr;
  const RepackedMatrix* down = nullptr;
};
// Whether y = W_down · swiglu(W_gate · x, W_up · x) runs fused for n_tokens tokens (gemm_swiglu:
// all three repacked, the AMX BF16 path); if so, *m holds the repacked matrices for ffn_swiglu.
bool ffn_fuses(ThreadPool& pool, const Kernels& kernels, const TensorView& w_gate, const TensorView& w_up,
               const TensorView& w_down, int64_t n_tokens, RepackCache* repacked, FfnMatrices* m);
void ffn_swiglu(ThreadPool& pool, const Kernels& kernels, const FfnMatrices& m, const float* x, int64_t n_tokens,
                float* y, MatmulScratch& scratch);
// Several products: the repacked ones together in one gemm_many pass, the others one by one.
void matmul_batch(ThreadPool& pool, const Kernels& kernels, const std::vector<MatmulJob>& jobs, MatmulScratch& scratch,
                  RepackCache* repacked);

}  // namespace fathom::cpu
