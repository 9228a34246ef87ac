// Fast CPU dot products of quantized weight rows with quantized activations, and the activation
// quantizers feeding them. One table of kernels per instruction set (generic C++, AVX2+FMA,
// AVX-512 with VNNI), chosen at run time from CPUID; the ISA code is compiled with per-function
// target attributes, so the same binary runs on any x86-64 and every table a CPU supports can be
// tested side by side. Reference twins: quant::vec_dot_ref and quant::quantize_row_ref.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "backend/cpu/gemm.h"
#include "backend/cpu/isa.h"
#include "core/dtype.h"

namespace fathom::cpu {

// The widest ISA this CPU and build support (isa.h). kAvx512 needs AVX-512 F, BW, VL and VNNI
// (Ice Lake, Zen 4 and later); CPUs with AVX-512 but no VNNI use the AVX2 kernels. kAmx also
// needs AMX-TILE, AMX-INT8, the OS tile state and the kernel's permission.
Isa best_isa();
bool isa_supported(Isa isa);
// The ISA the kernels use: FATHOM_CPU_ISA when set (the CLI rejects a bad value at start-up),
// else best_isa().
Isa active_isa();

// out[r] = dot(weight row r, activations) for r < n_rows; row r starts at w + r * row_bytes and
// holds n values; x_q is one activation row already in quant::vec_dot_type(t) format.
using VecDotRowsFn = void (*)(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q,
                              float* out);
// Multi-token form for prefill: out[t * out_stride + r] = dot(weight row r, activation row t) for
// r < n_rows, t < n_tokens; activation row t starts at x_q + t * act_row. Each token's result is
// bit-identical to the one-row kernel's, whatever n_tokens is.
using VecDotTokensFn = void (*)(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* x_q,
                                size_t act_row, int64_t n_tokens, float* out, int64_t out_stride);
// Quantizes n floats (a multiple of the format's block size) into one activation row.
using QuantizeActFn = void (*)(const float* x, void* dst, int64_t n);

constexpr size_t kDTypeSlots = 36;  // DType ids are < 36 (TQ2_0 = 35 is the largest)

// The kernel table of one ISA. Entries an ISA does not specialise fall back to the generic ones.
struct Kernels {
  Isa isa = Isa::kGeneric;                        // which instruction set the table was built for
  std::array<VecDotRowsFn, kDTypeSlots> dot_rows{};  // by DType id; nullptr: type has no dot product
  std::array<bool, kDTypeSlots> dot_is_simd{};       // by DType id: dot_rows uses this ISA's vector code
  std::array<VecDotTokensFn, kDTypeSlots> dot_tokens{};  // by DType id; nullptr: use dot_rows per token
  QuantizeActFn quantize_q8_0 = nullptr;          // activations -> Q8_0 (bit-exact with quantize_row_ref)
  QuantizeActFn quantize_q8_1 = nullptr;          // activations -> Q8_1
  QuantizeActFn quantize_q8_K = nullptr;          // activations -> Q8_K (bit-exact with quantize_row_ref)
  GemmX16Fn gemm_x16 = nullptr;                   // repacked-weight matmul tile kernel (gemm.h, repack.h)
  GemmX16RangeFn gemm_x16_range = nullptr;        // several consecutive groups at once; nullptr: gemm_x16 per group
  GemmQuantizeFn quantize_gemm = nullptr;         // activations for gemm_x16 (bit-exact with the reference)
  GemmBf16TokensFn gemm_bf16_tokens = nullptr;    // bf16 token tiles for gemm_x16_range's BF16 path (AMX)
  GemmRowsBf16Fn gemm_rows_bf16 = nullptr;        // GGUF rows without an x16 layout on BF16 tiles (AMX)
  GemmSwigluRangeFn gemm_swiglu_range = nullptr;  // SwiGLU gate/up products as the next product's bf16 tiles (AMX)
  bool gemm_token_tiles = false;                  // gemm_x16(_range) reads GemmActivations::qt/xdt/xst too
  bool gemm_is_simd = false;                      // gemm_x16 is vector code: repacking weights pays off
};

// The table for `isa` (built once, immutable). The ISA must be supported by this CPU
// (isa_supported); asking for an unsupported one is a broken invariant and aborts.
const Kernels& kernels_for(Isa isa);
inline const Kernels& best_kernels() { return kernels_for(active_isa()); }
// Test hook: the AMX table with the tile instructions emulated in C++ (amx_tiles.h), so the AMX
// kernels' layout, blocking and epilogue run on any AVX-512 CPU. Needs isa_supported(kAvx512).
const Kernels& amx_emulated_kernels();

// True when t has a dot product in `k` at all (weight types with a vec_dot_type).
bool supports(const Kernels& k, DType t);
// True when k's dot product for t is vector code rather than the generic fallback.
bool has_fast_path(const Kernels& k, DType t);

// Quantize one activation row (n floats) into fmt: Q8_0, Q8_1, Q8_K, or F32 (a copy).
void quantize_activations(const Kernels& k, DType fmt, const float* x, void* dst, int64_t n);
// out[r] = dot of weight row r (type t, n values, rows row_bytes apart) with one activation row
// in vec_dot_type(t) format; out is overwritten, not accumulated into.
void vec_dot_rows(const Kernels& k, DType t, int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                  const void* x_q, float* out);
float vec_dot(const Kernels& k, DType t, int64_t n, const void* w_row, const void* x_q);
// The same for n_tokens activation rows (act_row bytes apart): out[tok * out_stride + r]. Uses
// k.dot_tokens where the type has one (weight blocks decoded once for all tokens), else dot_rows
// per token; the results are the same either way.
void vec_dot_tokens(const Kernels& k, DType t, int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows,
                    const uint8_t* x_q, size_t act_row, int64_t n_tokens, float* out, int64_t out_stride);

// Same, with the best kernels for this CPU.
inline void quantize_activations(DType fmt, const float* x, void* dst, int64_t n) {
  quantize_activations(best_kernels(), fmt, x, dst, n);
}
inline void vec_dot_rows(DType t, int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q,
                         float* out) {
  vec_dot_rows(best_kernels(), t, n, w, row_bytes, n_rows, x_q, out);
}
inline float vec_dot(DType t, int64_t n, const void* w_row, const void* x_q) {
  return vec_dot(best_kernels(), t, n, w_row, x_q);
}
inline bool has_fast_path(DType t) { return has_fast_path(best_kernels(), t); }

}  // namespace fathom::cpu
