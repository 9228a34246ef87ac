// Element-wise activations of the CPU backend, with a scalar reference and per-ISA kernels.
#pragma once

#include <cstdint>

#include "backend/cpu/isa.h"
#include "core/dtype.h"

namespace fathom::cpu {

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
using SwigluFn = void (*)(const float* gate, const float* up, int64_t n, float* out);

// The scalar reference (std::exp).
void swiglu_reference(const float* gate, const float* up, int64_t n, float* out);
// The kernel for `isa` (a vector ISA from vector_isa()): AVX-512 uses a vector e^x (exp_avx512.h),
// within 4 ulp of the reference; the others are the reference.
SwigluFn swiglu_kernel(Isa isa);

// One row of RMS normalization: out[i] = x[i] * (1 / sqrt(mean(x^2) + eps)) * weight[i].
using RmsNormRowFn = void (*)(const float* x, const float* weight, int64_t n, float eps, float* out);

// The scalar reference: the sum of squares in order, in f32.
void rms_norm_row_reference(const float* x, const float* weight, int64_t n, float eps, float* out);
// The kernel for `isa` (a vector ISA from vector_isa()): AVX-512 sums the squares in 32 lanes
// (a different order, so within a few ulp of the reference: tests/kernels/activations_test.cpp);
// the others are the reference. The scaling is the reference's, value by value.
RmsNormRowFn rms_norm_row_kernel(Isa isa);

// dst[i] = src[i] as f16 or bf16 (t), bit-identical with quant::quantize_row_ref: round to
// nearest even, subnormals kept, overflow to infinity, NaN to the reference's quiet NaN. The
// cache rows a prompt writes (CpuBackend::store_kv).
using HalfRowFn = void (*)(DType t, const float* src, uint16_t* dst, int64_t n);

// The scalar reference (fp32_to_fp16 / fp32_to_bf16 of core/fp16.h).
void half_row_reference(DType t, const float* src, uint16_t* dst, int64_t n);
// The kernel for `isa` (a vector ISA from vector_isa()): AVX-512 converts 16 values at a time
// (VCVTPS2PH for f16; the reference's integer rounding for bf16, since VCVTNEPS2BF16 flushes
// subnormal inputs to zero); the others are the reference.
HalfRowFn half_row_kernel(Isa isa);

}  // namespace fathom::cpu
