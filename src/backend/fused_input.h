// The shared input of fused products (Backend::rms_norm_matmul_batch, Backend::swiglu_matmul):
// made from other data instead of passed in, so an accelerator can make it where the products
// run, without a round trip through the host. Jobs name it by `result`, the host buffer the
// unfused op would write; a backend writes that only when a product it runs on the CPU reads it.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace fathom {

struct FusedInput {
  enum Kind { kRmsNorm, kSwiglu };
  Kind kind = kRmsNorm;
  const float* a = nullptr;  // rms_norm: x; swiglu: gate. [n_tokens, n]
  const float* b = nullptr;  // rms_norm: weight [n]; swiglu: up [n_tokens, n]
  float eps = 0.0f;          // rms_norm only
  float* result = nullptr;   // [n_tokens, n]
  int64_t n_tokens = 0;
  int64_t n = 0;

  static FusedInput rms_norm(const float* x, const float* weight, int64_t n_tokens, int64_t n, float eps, float* normed) {
    return {kRmsNorm, x, weight, eps, normed, n_tokens, n};
  }
  // In place: the result replaces gate, as Backend::swiglu_matmul's unfused form does.
  static FusedInput swiglu(float* gate, const float* up, int64_t n_tokens, int64_t n) {
    return {kSwiglu, gate, up, 0.0f, gate, n_tokens, n};
  }

  int64_t count() const { return n_tokens * n; }                  // floats of a and of result
  int64_t b_count() const { return kind == kRmsNorm ? n : count(); }
  // The unfused op on `backend`: result = rms_norm(a, b) or swiglu(a, b).
  void make_on(Backend& backend) const {
    if (kind == kRmsNorm) backend.rms_norm(a, b, n_tokens, n, eps, result);
    else backend.swiglu(a, b, count(), result);
  }
};

}  // namespace fathom
