// AVX2 dot products of the codebook i-quants IQ3_XXS, IQ3_S, IQ1_S and IQ1_M with Q8_K
// activations, one 32-value sub-block per register. Grid entries are loaded by index, sign bits
// are widened to a byte mask that negates the activations, and vpmaddubsw/vpmaddwd apply the
// integer sub-block scales. The int32 sums of a super-block are the reference's exactly
// (quant_iq3.cpp, quant_iq1.cpp), and the float combine per super-block is the reference's
// expression (IQ1_M: an exactly equal one, see dot_iq1_m), so results are bit-identical.
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

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

FATHOM_AVX2 inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 32 activations with value j negated where bit j of `negative` is set.
FATHOM_AVX2 inline __m256i negate_where(const int8_t* q8, uint32_t negative) {
  // Byte j of the register gets byte j / 8 of the mask, then keeps only bit j % 8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(negative)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i minus = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);  // -1 where negative
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8));
  return _mm256_sub_epi8(_mm256_xor_si256(y, minus), minus);
}

// Sum over a sub-block of magnitude * signed activation (32 unsigned bytes <= 62), times ls.
FATHOM_AVX2 inline __m256i scaled_dot(__m256i magnitudes, __m256i signed_q8, __m256i ls16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes, signed_q8), ls16);
}

FATHOM_AVX2 float dot_iq3_xxs(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq3_xxs*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      const uint8_t* idx = x[i].qs + 8 * k;
      uint32_t word;
      std::memcpy(&word, x[i].qs + kQK / 4 + 4 * k, 4);
      const uint32_t negative = iq_sign_bytes(word);
      const __m256i grid =
          _mm256_set_epi32(static_cast<int>(kIq3XxsGrid[idx[7]]), static_cast<int>(kIq3XxsGrid[idx[6]]),
                           static_cast<int>(kIq3XxsGrid[idx[5]]), static_cast<int>(kIq3XxsGrid[idx[4]]),
                           static_cast<int>(kIq3XxsGrid[idx[3]]), static_cast<int>(kIq3XxsGrid[idx[2]]),
                           static_cast<int>(kIq3XxsGrid[idx[1]]), static_cast<int>(kIq3XxsGrid[idx[0]]));
      const __m256i ls = _mm256_set1_epi16(static_cast<int16_t>(2 * (word >> 28) + 1));
      acc = _mm256_add_epi32(acc, scaled_dot(grid, negate_where(y[i].qs + 32 * k, negative), ls));
    }
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(hsum_i32(acc)), sum);
  }
  return 0.25f * sum;
}

FATHOM_AVX2 float dot_iq3_s(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq3_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      int idx[8];
      for (int j = 0; j < 8; ++j) idx[j] = x[i].qs[8 * k + j] | (((x[i].qh[k] >> j) & 1) << 8);
      const __m256i grid = _mm256_set_epi32(static_cast<int>(kIq3SGrid[idx[7]]), static_cast<int>(kIq3SGrid[idx[6]]),
                                            static_cast<int>(kIq3SGrid[idx[5]]), static_cast<int>(kIq3SGrid[idx[4]]),
                                            static_cast<int>(kIq3SGrid[idx[3]]), static_cast<int>(kIq3SGrid[idx[2]]),
                                            static_cast<int>(kIq3SGrid[idx[1]]), static_cast<int>(kIq3SGrid[idx[0]]));
      uint32_t negative;
      std::memcpy(&negative, x[i].signs + 4 * k, 4);
      const __m256i ls = _mm256_set1_epi16(static_cast<int16_t>(2 * ((x[i].scales[k / 2] >> (4 * (k % 2))) & 0xF) + 1));
      acc = _mm256_add_epi32(acc, scaled_dot(grid, negate_where(y[i].qs + 32 * k, negative), ls));
    }
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(hsum_i32(acc)), sum);
  }
  return sum;
}

// Four kIq1SGrid entries (32 values -1, 0, +1) times 32 activations, as 16 int16 pair sums
// (lanes 0..7: values 0..15, lanes 8..15: values 16..31).
FATHOM_AVX2 inline __m256i iq1_pair_sums(const int* idx, const int8_t* q8) {
  const __m256i grid =
      _mm256_set_epi64x(static_cast<int64_t>(kIq1SGrid[idx[3]]), static_cast<int64_t>(kIq1SGrid[idx[2]]),
                        static_cast<int64_t>(kIq1SGrid[idx[1]]), static_cast<int64_t>(kIq1SGrid[idx[0]]));
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8));
  return _mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_sign_epi8(y, grid));
}

FATHOM_AVX2 float dot_iq1_s(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i acc = _mm256_setzero_si256();
    int32_t delta_sum = 0;
    for (int k = 0; k < 8; ++k) {
      const unsigned qh = x[i].qh[k];
      int idx[4];
      for (int l = 0; l < 4; ++l) idx[l] = x[i].qs[4 * k + l] | static_cast<int>(((qh >> (3 * l)) & 7) << 8);
      const int ls = 2 * static_cast<int>((qh >> 12) & 7) + 1;
      const int sub_sum = y[i].bsums[2 * k] + y[i].bsums[2 * k + 1];
      delta_sum += ls * (qh & 0x8000 ? -sub_sum : sub_sum);
      acc = _mm256_add_epi32(
          acc, _mm256_madd_epi16(iq1_pair_sums(idx, y[i].qs + 32 * k), _mm256_set1_epi16(static_cast<int16_t>(ls))));
    }
    const float sums = static_cast<float>(hsum_i32(acc)) + kIq1SDelta * static_cast<float>(delta_sum);
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, sums, sum);
  }
  return sum;
}

// IQ1_M folds its per-8 delta into the grid value: v = 8 * grid + delta sign (-9..9), so one
// integer sum S = sum ls * v * q8 = 8 * (grid part) + (delta part), and S / 8 is exactly the
// reference's grid part + kIq1MDelta * delta part (|S| < 2^24: every step is exact in float).
FATHOM_AVX2 float dot_iq1_m(const void* w, const void* a, int64_t n) {
  static_assert(kIq1MDelta == 0.125f, "the folded delta assumes 1/8");
  const auto* x = static_cast<const block_iq1_m*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint16_t words[4];
    std::memcpy(words, x[i].scales, sizeof(words));
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      const unsigned sc = words[k / 2] >> (6 * (k % 2));
      uint16_t qh;
      std::memcpy(&qh, x[i].qh + 2 * k, 2);
      int64_t grid[4], delta[4];
      for (int l = 0; l < 4; ++l) {
        const unsigned nibble = (qh >> (4 * l)) & 0xF;
        grid[l] = static_cast<int64_t>(kIq1SGrid[x[i].qs[4 * k + l] | ((nibble & 7) << 8)]);
        delta[l] = nibble & 8 ? -1 : 0x0101010101010101;
      }
      __m256i v = _mm256_set_epi64x(grid[3], grid[2], grid[1], grid[0]);
      v = _mm256_add_epi8(v, v);
      v = _mm256_add_epi8(v, v);
      v = _mm256_add_epi8(v, v);
      v = _mm256_add_epi8(v, _mm256_set_epi64x(delta[3], delta[2], delta[1], delta[0]));
      const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 32 * k));
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(q8, v));
      const __m256i ls = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(2 * ((sc >> 3) & 7) + 1)),
                                          _mm_set1_epi16(static_cast<int16_t>(2 * (sc & 7) + 1)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ls));
    }
    sum = std::fma(fp16_to_fp32(iq1_m_scale_bits(words)) * y[i].d, static_cast<float>(hsum_i32(acc)) * 0.125f, sum);
  }
  return sum;
}

}  // namespace

void install_iq3_iq1_avx2(Kernels& k) {
  set_dot(k, DType::IQ3_XXS, dot_rows<dot_iq3_xxs>, true);
  set_dot(k, DType::IQ3_S, dot_rows<dot_iq3_s>, true);
  set_dot(k, DType::IQ1_S, dot_rows<dot_iq1_s>, true);
  set_dot(k, DType::IQ1_M, dot_rows<dot_iq1_m>, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq3_iq1_avx2(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
