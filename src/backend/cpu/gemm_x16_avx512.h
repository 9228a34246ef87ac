// The AVX-512 decoding of repacked x16 groups (repack.h) into the (u, scale, corr) form of
// gemm.h, shared by the VNNI kernels (gemm_avx512.cpp) and the AMX ones (gemm_amx.cpp), so both
// see the same integers and the same float scales. Internal to src/backend/cpu; x86 only.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cpu/gemm.h"
#include "core/dtype.h"
#include "backend/cpu/isa_targets.h"
#include "quant/blocks.h"

namespace fathom::cpu::detail {

// 16 fp16 values -> f32.
FATHOM_AVX512 inline __m512 halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// 16 signed 8-bit scales (one per row of a group) as f32: IQ4_XS's and Q6_K's sub-block scales.
FATHOM_AVX512 inline __m512 int8_scales(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Low and high nibbles of 4 nibble vectors -> the 8 vectors of a 32-value block, plus the 5th
// bits of the high-bit vector at hi when it is not null (bit g of each byte -> vector g).
FATHOM_AVX512 inline void nibbles(const uint8_t* nib, const uint8_t* hi, __m512i* w) {
  const __m512i low4 = _mm512_set1_epi8(15);
  for (int g = 0; g < 4; ++g) {
    const __m512i v = _mm512_loadu_si512(nib + 64 * g);
    w[g] = _mm512_and_si512(v, low4);
    w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  }
  if (hi == nullptr) return;
  const __m512i h = _mm512_loadu_si512(hi);
  const __m512i sixteen = _mm512_set1_epi8(16);
  for (int g = 0; g < 8; ++g) {
    const __mmask64 m = _mm512_test_epi8_mask(h, _mm512_set1_epi8(static_cast<char>(1 << g)));
    w[g] = _mm512_mask_add_epi8(w[g], m, w[g], sixteen);  // bit 4 is clear: add = or
  }
}

// The 8 u vectors (0..63) of one q6_Kx16 pair of sub-blocks (repack.h): w[0..3] sub-block 2p,
// w[4..7] sub-block 2p + 1; the 2-bit field l of a high-bit vector is shifted to bits 4-5.
FATHOM_AVX512 inline void q6_pair(const uint8_t* pair, __m512i* w) {
  nibbles(pair, nullptr, w);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  for (int h = 0; h < 2; ++h) {
    const __m512i v = _mm512_loadu_si512(pair + 4 * 64 + 64 * h);
    // w | (field & 0x30): ternary-logic table 0xF8 is a | (b & c).
    w[4 * h] = _mm512_ternarylogic_epi32(w[4 * h], _mm512_slli_epi16(v, 4), bits45, 0xF8);
    w[4 * h + 1] = _mm512_ternarylogic_epi32(w[4 * h + 1], _mm512_slli_epi16(v, 2), bits45, 0xF8);
    w[4 * h + 2] = _mm512_ternarylogic_epi32(w[4 * h + 2], v, bits45, 0xF8);
    w[4 * h + 3] = _mm512_ternarylogic_epi32(w[4 * h + 3], _mm512_srli_epi16(v, 2), bits45, 0xF8);
  }
}

// Nibble vectors (codebook indices) -> the unsigned weight bytes of iq4_nl/iq4_xs: value + 128,
// looked up in each 128-bit lane.
FATHOM_AVX512 inline void iq4_lookup(__m512i* w) {
  const __m128i values = _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIq4nlValues));
  const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(values, _mm_set1_epi8(static_cast<char>(0x80))));
  for (int g = 0; g < 8; ++g) w[g] = _mm512_shuffle_epi8(table, w[g]);
}

// One q4_Kx16/q5_Kx16 super-block (the layout of repack.h): the rows' d and -dmin, and where its
// scales, mins and nibbles start; sub_block(j) gives sub-block j's scale s and correction c.
struct KQuantSuper {
  __m512 d, neg_dmin;
  const uint8_t* sc;
  const uint8_t* mn;
  const uint8_t* qs;
};

FATHOM_AVX512 inline KQuantSuper k_quant_super(const uint8_t* src) {
  constexpr int64_t R = kGemmRows;
  const uint8_t* sc = src + 4 * R;
  return {halves(src), _mm512_sub_ps(_mm512_setzero_ps(), halves(src + 2 * R)), sc, sc + 8 * R, sc + 16 * R};
}

FATHOM_AVX512 inline void k_quant_sub_block(const KQuantSuper& k, int j, __m512* s, __m512* c) {
  const __m512 scf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k.sc + 16 * j))));
  const __m512 mf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k.mn + 16 * j))));
  *s = _mm512_mul_ps(k.d, scf);
  *c = _mm512_mul_ps(k.neg_dmin, mf);
}

// Calls visit(w, ng, s, c, b) for every (sub-)block b of one 16-row x16 group of an integer
// type with n values per row, in order: w[0..ng) the block's u vectors (vector g: values
// 4g..4g+3 of rows 0..15, 4 bytes per row), ng (std::integral_constant: 8 for 32-value blocks, 4
// for q6_K's 16) and the rows' scale s and corr c. pf > 0 prefetches the weight stream that
// many bytes ahead (the first pass over a group in decode; gemm.h kDecodePrefetchBytes), a
// super-block one sub-block's share at a time (gemm.h prefetch_sub_block).
template <class Visit>
FATHOM_AVX512 inline void for_each_x16_block(DType type, const uint8_t* grp, int64_t n, int64_t pf, Visit&& visit) {
  constexpr int64_t R = kGemmRows;
  constexpr std::integral_constant<int, 8> kEight;
  switch (type) {
    case DType::Q4_0:
    case DType::Q5_0: {
      const bool five = type == DType::Q5_0;
      const float k = five ? -16.0f : -8.0f;
      const int64_t bb = 2 * R + 4 * 64 + (five ? 64 : 0);
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* src = grp + b * bb;
        if (pf > 0) prefetch_weights(src + pf, bb);
        const __m512 s = halves(src);
        const __m512 c = _mm512_mul_ps(_mm512_set1_ps(k), s);
        __m512i w[8];
        nibbles(src + 2 * R, five ? src + 2 * R + 4 * 64 : nullptr, w);
        visit(w, kEight, s, c, b);
      }
      return;
    }
    case DType::Q8_0: {
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* src = grp + b * (2 * R + 8 * 64);
        if (pf > 0) prefetch_weights(src + pf, 2 * R + 8 * 64);
        const __m512 s = halves(src);
        const __m512 c = _mm512_mul_ps(_mm512_set1_ps(-128.0f), s);
        __m512i w[8];
        for (int g = 0; g < 8; ++g) w[g] = _mm512_loadu_si512(src + 2 * R + 64 * g);
        visit(w, kEight, s, c, b);
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const int64_t bb = 4 * R + 16 * R + 8 * 4 * 64 + (five ? 8 * 64 : 0);
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = grp + i * bb;
        const KQuantSuper k = k_quant_super(src);
        const uint8_t* hi = k.qs + 8 * 4 * 64;
        for (int j = 0; j < 8; ++j) {
          prefetch_sub_block(src, pf, bb, j, 8);
          __m512 s, c;
          k_quant_sub_block(k, j, &s, &c);
          __m512i w[8];
          nibbles(k.qs + 256 * j, five ? hi + 64 * j : nullptr, w);
          visit(w, kEight, s, c, i * 8 + j);
        }
      }
      return;
    }
    case DType::IQ4_NL: {
      const int64_t bb = 2 * R + 4 * 64;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* src = grp + b * bb;
        if (pf > 0) prefetch_weights(src + pf, bb);
        const __m512 s = halves(src);
        const __m512 c = _mm512_mul_ps(_mm512_set1_ps(-128.0f), s);
        __m512i w[8];
        nibbles(src + 2 * R, nullptr, w);
        iq4_lookup(w);
        visit(w, kEight, s, c, b);
      }
      return;
    }
    case DType::IQ4_XS: {
      const int64_t bb = 2 * R + 8 * R + 8 * 4 * 64;
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = grp + i * bb;
        const __m512 d = halves(src);
        const uint8_t* sc = src + 2 * R;
        const uint8_t* qs = sc + 8 * R;
        for (int j = 0; j < 8; ++j) {
          prefetch_sub_block(src, pf, bb, j, 8);
          const __m512 scf = int8_scales(sc + 16 * j);
          const __m512 s = _mm512_mul_ps(d, scf);
          const __m512 c = _mm512_mul_ps(_mm512_set1_ps(-128.0f), s);
          __m512i w[8];
          nibbles(qs + 256 * j, nullptr, w);
          iq4_lookup(w);
          visit(w, kEight, s, c, i * 8 + j);
        }
      }
      return;
    }
    case DType::TQ1_0:
    case DType::TQ2_0: {
      const int64_t bb = 2 * R + 8 * 2 * 64;
      const __m512i three = _mm512_set1_epi8(3);
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = grp + i * bb;
        const __m512 s = halves(src);
        const __m512 c = _mm512_mul_ps(_mm512_set1_ps(-1.0f), s);
        for (int j = 0; j < 8; ++j) {
          prefetch_sub_block(src, pf, bb, j, 8);
          __m512i w[8];
          for (int h = 0; h < 2; ++h) {
            const __m512i v = _mm512_loadu_si512(src + 2 * R + 128 * j + 64 * h);
            w[4 * h] = _mm512_and_si512(v, three);
            w[4 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 2), three);
            w[4 * h + 2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), three);
            w[4 * h + 3] = _mm512_and_si512(_mm512_srli_epi16(v, 6), three);
          }
          visit(w, kEight, s, c, i * 8 + j);
        }
      }
      return;
    }
    case DType::Q6_K: {
      const int64_t bb = 2 * R + 16 * R + 8 * kQ6PairBytes;
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = grp + i * bb;
        const __m512 d = halves(src);
        const __m512 d32 = _mm512_mul_ps(_mm512_set1_ps(-32.0f), d);
        const uint8_t* sc = src + 2 * R;
        const uint8_t* qv = sc + 16 * R;
        __m512i w[8];
        for (int j = 0; j < 16; ++j) {
          prefetch_sub_block(src, pf, bb, j, 16);
          const __m512 scf = int8_scales(sc + 16 * j);
          const __m512 s = _mm512_mul_ps(d, scf);
          const __m512 c = _mm512_mul_ps(d32, scf);
          if (j % 2 == 0) q6_pair(qv + kQ6PairBytes * (j / 2), w);
          visit(w + 4 * (j % 2), std::integral_constant<int, 4>{}, s, c, i * 16 + j);
        }
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace fathom::cpu::detail
