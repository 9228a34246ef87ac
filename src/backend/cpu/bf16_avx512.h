// f32 -> bf16 conversions of the AMX kernels (gemm_amx.cpp, attention_amx.cpp) and of the KV
// rows' bf16 conversion (activations.cpp). Internal to src/backend/cpu; include it inside the
// files' `#if defined(__x86_64__)`.
#pragma once

#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

// f32 -> bf16 in the low 16 bits of each lane, round to nearest even (a NaN stays a quiet NaN).
// Integer code rather than VCVTNEPS2BF16, so the emulated tile paths run on any AVX-512 CPU and
// round as the real ones do.
FATHOM_AMX inline __m512i bf16_bits(__m512 f) {
  const __m512i bits = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
}

// 16 lanes as 16 consecutive bf16 values, round to nearest even: VCVTNEPS2BF16 when native
// (the rounding VCVTNE2PS2BF16 does), else the integer rounding.
template <bool kNative>
FATHOM_AMX inline __m256i bf16_row16(__m512 f) {
  if constexpr (kNative) return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(f));
  else return _mm512_cvtepi32_epi16(bf16_bits(f));
}

// One B tile row: the pair (f0[r], f1[r]) of every lane r, as bf16. Native: VCVTNE2PS2BF16 (the
// same round to nearest even; the denormals it flushes are zeros to TDPBF16PS anyway), else the
// integer rounding.
template <bool kNative>
FATHOM_AMX inline __m512i bf16_pairs(__m512 f0, __m512 f1) {
  if constexpr (kNative) {
    // [bf16(f0[0..15]), bf16(f1[0..15])] -> pairs: element 2r = f0[r], 2r + 1 = f1[r].
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                                21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(f1, f0)));
  } else {
    return _mm512_or_si512(bf16_bits(f0), _mm512_slli_epi32(bf16_bits(f1), 16));
  }
}

// Two registers of bf16_bits() results as 32 consecutive bf16 values: lo's 16, then hi's.
FATHOM_AMX inline __m512i bf16_concat(__m512i lo, __m512i hi) {
  const __m512i even = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26, 24,
                                        22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  return _mm512_permutex2var_epi16(lo, even, hi);
}

// One 16 x 64-byte B tile from 16 rows of f32 values `stride` floats apart (row r's 32 values at
// src + r * stride): tile row i holds values 2i and 2i + 1 of every row r, paired (bf16_pairs).
template <bool kNative>
FATHOM_AMX inline void bf16_pairs_tile(const float* src, int64_t stride, void* dst) {
  const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(static_cast<int32_t>(stride)));
  for (int i = 0; i < 16; ++i) {
    const __m512 f0 = _mm512_i32gather_ps(lanes, src + 2 * i, 4), f1 = _mm512_i32gather_ps(lanes, src + 2 * i + 1, 4);
    _mm512_store_si512(static_cast<uint8_t*>(dst) + 64 * i, bf16_pairs<kNative>(f0, f1));
  }
}

}  // namespace fathom::cpu::detail
