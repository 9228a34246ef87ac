// Element-wise activations of the CPU backend, with a scalar reference and per-ISA kernels.
#pragma once

#include <cstdint>

#include "backend/cpu/isa.h"

namespace fathom::cpu {

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
using SwigluFn = void (*)(const float* gate, const float* up, int64_t n, float* out);

// The scalar reference (std::exp).
void swiglu_reference(const float* gate, const float* up, int64_t n, float* out);
// The kernel for `isa` (a vector ISA from vector_isa()): AVX-512 uses a vector e^x (exp_avx512.h),
// within 4 ulp of the reference; the others are the reference.
SwigluFn swiglu_kernel(Isa isa);

}  // namespace fathom::cpu
