// Block formats of GGUF tensors: scalar reference quantize / dequantize / dot product.
// These are the reference twins every optimized kernel is tested against; the fast path lives in
// src/backend/cpu. Block structs with their byte-size static_asserts are in quant/blocks.h.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace fathom::quant {

// True for types dequantize_row and vec_dot_ref support: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, IQ2_XXS, IQ2_XS,
// IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
bool can_dequantize(DType t);
// True for types quantize_row_ref can produce: the same list (every type fathom reads).
bool can_quantize(DType t);

// dst[n] = values of n elements of `src` (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Reference quantization of n floats into `dst` (row_size(t, n) bytes), rounding exactly as
// ggml's reference quantizers do (so files we write match the ecosystem's), except IQ2_*: their
// quantizer is our own search (quant_iq2.cpp), decoded by any reader of the format.
// `importance` (optional, [n]) weights the rounding error, as llama.cpp's imatrix does; nullptr
// means unweighted.
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n, const float* importance = nullptr);

// The format activations are quantized to for a dot product with a weight row of type t:
// Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, the 256-value
// i-quants and the ternary types, F32 for F32/F16/BF16.
DType vec_dot_type(DType t);

// Reference dot product of one weight row (type t, n values) with activations already in
// vec_dot_type(t) format (n values). Integer math per block as ggml does, float accumulate.
float vec_dot_ref(DType t, int64_t n, const void* weight_row, const void* activations);

}  // namespace fathom::quant
