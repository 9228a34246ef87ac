// AVX-512 (F, BW, VL, VNNI) dot products of the codebook i-quants IQ3_XXS, IQ3_S, IQ1_S and IQ1_M
// with Q8_K activations. A register holds 64 values: two 32-value sub-blocks, whose grid entries
// are gathered by index and whose sign bits become a byte mask that negates the activations. The
// int32 sums of a super-block are the reference's exactly (quant_iq3.cpp, quant_iq1.cpp), and the
// float combine per super-block is the reference's expression (IQ1_M: an exactly equal one, see
// dot_iq1_m), so results are bit-identical.
#include <cmath>
#include <cstring>

#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq1_grids.h"
#include "quant/iq3_grids.h"
#include "quant/iq_signs.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

// int32 lanes 0..7 = a, 8..15 = b: one integer scale per 32-value sub-block.
FATHOM_AVX512_BMI2 inline __m512i halves(int a, int b) {
  return _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(a), _mm512_set1_epi32(b));
}

// Per 4-value lane: sum of unsigned magnitudes * activations negated where `negative` is set.
FATHOM_AVX512_BMI2 inline __m512i signed_dot(__m512i magnitudes, __mmask64 negative, const int8_t* q8) {
  const __m512i y = _mm512_loadu_si512(q8);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitudes,
                             _mm512_mask_sub_epi8(y, negative, _mm512_setzero_si512(), y));
}

FATHOM_AVX512_BMI2 float dot_iq3_xxs(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq3_xxs*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint32_t words[8];
    std::memcpy(words, x[i].qs + kQK / 4, sizeof(words));
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 8; k += 2) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 8 * k)));
      const __m512i grid = _mm512_i32gather_epi32(idx, kIq3XxsGrid.data(), 4);
      const uint64_t negative = iq_sign_bytes(words[k]) | static_cast<uint64_t>(iq_sign_bytes(words[k + 1])) << 32;
      const __m512i p = signed_dot(grid, negative, y[i].qs + 32 * k);
      const __m512i ls = halves(2 * static_cast<int>(words[k] >> 28) + 1, 2 * static_cast<int>(words[k + 1] >> 28) + 1);
      acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(p, ls));
    }
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(_mm512_reduce_add_epi32(acc)), sum);
  }
  return 0.25f * sum;
}

FATHOM_AVX512_BMI2 float dot_iq3_s(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq3_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  const __m512i bit8 = _mm512_set1_epi32(256);
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 8; k += 2) {
      __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 8 * k)));
      // Bit j of qh[k] is the 9th bit of index 8k + j: qh[k], qh[k + 1] are a 16-lane mask.
      idx = _mm512_mask_add_epi32(idx, static_cast<__mmask16>(x[i].qh[k] | x[i].qh[k + 1] << 8), idx, bit8);
      const __m512i grid = _mm512_i32gather_epi32(idx, kIq3SGrid.data(), 4);
      uint64_t negative;
      std::memcpy(&negative, x[i].signs + 4 * k, 8);
      const __m512i p = signed_dot(grid, negative, y[i].qs + 32 * k);
      const int s = x[i].scales[k / 2];
      acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(p, halves(2 * (s & 0xF) + 1, 2 * (s >> 4) + 1)));
    }
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(_mm512_reduce_add_epi32(acc)), sum);
  }
  return sum;
}

FATHOM_AVX512_BMI2 float dot_iq1_s(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  // Group l of sub-block h (of two) has its 3 high index bits at bit 16h + 3l of qh[k] | qh[k+1] << 16.
  const __m512i high_shift = _mm512_set_epi64(25, 22, 19, 16, 9, 6, 3, 0);
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m512i acc = _mm512_setzero_si512();
    int32_t delta_sum = 0;
    for (int k = 0; k < 8; k += 2) {
      const uint32_t qh = x[i].qh[k] | static_cast<uint32_t>(x[i].qh[k + 1]) << 16;
      const __m512i low = _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].qs + 4 * k)));
      const __m512i high = _mm512_and_si512(_mm512_srlv_epi64(_mm512_set1_epi64(qh), high_shift), _mm512_set1_epi64(7));
      const __m512i grid =
          _mm512_i64gather_epi64(_mm512_or_si512(low, _mm512_slli_epi64(high, 8)), kIq1SGrid.data(), 8);
      const __m512i p = signed_dot(_mm512_abs_epi8(grid), _mm512_movepi8_mask(grid), y[i].qs + 32 * k);
      int ls[2];
      for (int h = 0; h < 2; ++h) {
        const unsigned word = x[i].qh[k + h];
        ls[h] = 2 * static_cast<int>((word >> 12) & 7) + 1;
        const int sub_sum = y[i].bsums[2 * (k + h)] + y[i].bsums[2 * (k + h) + 1];
        delta_sum += ls[h] * (word & 0x8000 ? -sub_sum : sub_sum);
      }
      acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(p, halves(ls[0], ls[1])));
    }
    const float sums = static_cast<float>(_mm512_reduce_add_epi32(acc)) + kIq1SDelta * static_cast<float>(delta_sum);
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, sums, sum);
  }
  return sum;
}

// IQ1_M folds its per-8 delta into the grid value: v = 8 * grid + delta sign (-9..9), so one
// integer sum S = sum ls * v * q8 = 8 * (grid part) + (delta part), and S / 8 is exactly the
// reference's grid part + kIq1MDelta * delta part (|S| < 2^24: every step is exact in float).
// 64 values per step: the 16-bit pair sums of 16 values fill one 128-bit lane, so each lane
// takes one of the four scales.
FATHOM_AVX512_BMI2 float dot_iq1_m(const void* w, const void* a, int64_t n) {
  static_assert(kIq1MDelta == 0.125f, "the folded delta assumes 1/8");
  const auto* x = static_cast<const block_iq1_m*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  const __m512i plus_one = _mm512_set1_epi8(1);
  const __m512i nibble_shift = _mm512_set_epi64(28, 24, 20, 16, 12, 8, 4, 0);
  // 128-bit lane j picks 16-bit scale j of a broadcast 64-bit word.
  const __m512i pick_scale =
      _mm512_set_epi64(0x0706070607060706, 0x0706070607060706, 0x0504050405040504, 0x0504050405040504,
                       0x0302030203020302, 0x0302030203020302, 0x0100010001000100, 0x0100010001000100);
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint16_t words[4];
    std::memcpy(words, x[i].scales, sizeof(words));
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 8; k += 2) {
      uint32_t qh;  // nibble g: 3 high index bits and the delta sign of group g of these 64 values
      std::memcpy(&qh, x[i].qh + 2 * k, 4);
      const __m512i low = _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].qs + 4 * k)));
      const __m512i high =
          _mm512_and_si512(_mm512_srlv_epi64(_mm512_set1_epi64(qh), nibble_shift), _mm512_set1_epi64(7));
      __m512i v = _mm512_i64gather_epi64(_mm512_or_si512(low, _mm512_slli_epi64(high, 8)), kIq1SGrid.data(), 8);
      v = _mm512_add_epi8(v, v);
      v = _mm512_add_epi8(v, v);
      v = _mm512_add_epi8(v, v);
      const auto minus = static_cast<__mmask8>(_pext_u32(qh, 0x88888888u));
      v = _mm512_add_epi8(v, _mm512_or_si512(_mm512_movm_epi64(minus), plus_one));
      const __m512i q8 = _mm512_loadu_si512(y[i].qs + 32 * k);
      const __m512i q8_signed = _mm512_mask_sub_epi8(q8, _mm512_movepi8_mask(v), _mm512_setzero_si512(), q8);
      const __m512i pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(v), q8_signed);
      // Scales of values 0..15, 16..31 (sub-block k) and 32..47, 48..63 (k + 1): 3-bit fields
      // 0..3 of scale word k / 2, each 2s + 1, one per 16-bit field.
      const uint64_t sc = words[k / 2];
      const uint64_t fields = (sc & 7) | ((sc >> 3) & 7) << 16 | ((sc >> 6) & 7) << 32 | ((sc >> 9) & 7) << 48;
      const __m512i ls =
          _mm512_shuffle_epi8(_mm512_set1_epi64(static_cast<int64_t>(2 * fields + 0x0001000100010001ull)), pick_scale);
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, ls));
    }
    sum = std::fma(fp16_to_fp32(iq1_m_scale_bits(words)) * y[i].d,
                   static_cast<float>(_mm512_reduce_add_epi32(acc)) * 0.125f, sum);
  }
  return sum;
}

}  // namespace

void install_iq3_iq1_avx512(Kernels& k) {
  set_dot(k, DType::IQ3_XXS, dot_rows<dot_iq3_xxs>, true);
  set_dot(k, DType::IQ3_S, dot_rows<dot_iq3_s>, true);
  set_dot(k, DType::IQ1_S, dot_rows<dot_iq1_s>, true);
  set_dot(k, DType::IQ1_M, dot_rows<dot_iq1_m>, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq3_iq1_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
