// CPU matrix multiplication over GGUF block formats: activations are quantized once per call
// into the weight type's vec_dot format, then output rows are split across the pool so each
// weight row is read once for all tokens of the batch.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "backend/cpu/vec_dot.h"
#include "core/threadpool.h"

namespace fathom::cpu {

// y[t, r] = dot(W row r, x[t, :]). x: [n_tokens, n_in]; y: [n_tokens, n_out].
// act_q: scratch reused across calls (grown as needed).
void matmul(ThreadPool& pool, const Kernels& kernels, const TensorView& w, const float* x, int64_t n_tokens, float* y, std::vector<uint8_t>& act_q);

}  // namespace fathom::cpu
