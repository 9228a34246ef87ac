// Shared by the per-ISA kernel files (internal to src/backend/cpu/vec_dot*.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/vec_dot.h"

namespace fathom::cpu::detail {

// One-row dot: weight row of n values with an activation row in vec_dot_type format.
using VecDotFn = float (*)(const void* w, const void* x_q, int64_t n);

// The rows of a call are consecutive in memory and, in decode, read once: before each row the
// bytes this far past its start are prefetched. The hardware prefetcher alone left the codebook
// kernels waiting on the first load of each super-block (30% of the IQ2_XXS kernel's samples).
// Sapphire Rapids-class Xeon, 2 threads, tg32 of the issue-21 files (qwen2 1.5B shape, 8 layers):
// IQ1_S 31.2 -> 46.1 tok/s, IQ2_XXS (AVX-512 kernel) 24.6 -> 37; the distance, on the VBMI
// IQ2_XXS kernel: none 38.5, 512 B 41-42, 1 KiB 45, 2 KiB 48.5-48.7, 3 KiB 44-46, 4 KiB 46.5-47.
constexpr int64_t kRowPrefetchBytes = 2048;

// Applies a one-row dot to n_rows rows.
template <VecDotFn Dot>
void dot_rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    prefetch_weights(row + kRowPrefetchBytes, static_cast<int64_t>(row_bytes));  // gemm.h
    out[r] = Dot(row, x_q, n);
  }
}

inline void set_dot(Kernels& k, DType t, VecDotRowsFn fn, bool simd) {
  // .at: a DType id past kDTypeSlots throws while the table is built instead of writing past it.
  k.dot_rows.at(static_cast<size_t>(t)) = fn;
  k.dot_is_simd.at(static_cast<size_t>(t)) = simd;
}

// Per value of a tq1_0 block (in groups of 64), the power of 3 that moves the value's trit to the
// top of its byte (blocks.h: tq1_0_trit), so vector code decodes 64 trits with one multiply.
struct Tq1Multipliers {
  alignas(64) uint8_t m[4][64];  // [value / 64][value % 64]
};

constexpr Tq1Multipliers make_tq1_multipliers() {
  Tq1Multipliers t{};
  constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  for (int v = 0; v < 256; ++v) {
    const int trit = v < 160 ? v / 32 : (v < 240 ? (v - 160) / 16 : (v - 240) / 4);
    t.m[v / 64][v % 64] = kPow3[trit];
  }
  return t;
}

inline constexpr Tq1Multipliers kTq1Multipliers = make_tq1_multipliers();

// Fill a table: generic for every type; the ISA installers overwrite what they specialise.
// install_avx2/install_avx512 do nothing in builds for non-x86 targets.
void install_generic(Kernels& k);
void install_avx2(Kernels& k);
void install_avx512(Kernels& k);
// The 2-bit i-quants' vector kernels (vec_dot_iq2_avx2.cpp, vec_dot_iq2_avx512.cpp).
void install_iq2_avx2(Kernels& k);
void install_iq2_avx512(Kernels& k);
// vec_dot_iq3_iq1_avx2.cpp / _avx512.cpp: IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (called by the above).
void install_iq3_iq1_avx2(Kernels& k);
void install_iq3_iq1_avx512(Kernels& k);
// vec_dot_iq_tokens_avx2.cpp / _avx512.cpp: the multi-token kernels of the codebook i-quants
// (dot_tokens).
void install_iq_tokens_avx2(Kernels& k);
void install_iq_tokens_avx512(Kernels& k);
// vec_dot_iq_vbmi.cpp: IQ2_XXS and IQ1_S rows with AVX512_VBMI byte permutes (the AMX table only).
void install_iq_vbmi(Kernels& k);

}  // namespace fathom::cpu::detail
