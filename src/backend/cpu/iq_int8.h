// The codebook i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) decoded one
// super-block at a time into plain signed int8 values and integer scales, so a multi-token kernel
// (vec_dot_iq_tokens_avx512.cpp) decodes each weight block once and reuses it for every token of
// a prefill batch. Per type, the integer sum of a super-block with a Q8_K block is
//   S = sum_j scale[j] * (q[16j..16j+15] . y[16j..16j+15]),   D = sum_j delta[j] * bsums[j],
// and block_sum(S, D) is the float the reference adds with fma(d * y.d, block_sum, sum); the row's
// sum is finally multiplied by kRowScale. Both are the reference's expressions (quant_iq2.cpp,
// quant_iq3.cpp, quant_iq1.cpp), so results are bit-identical to quant::vec_dot_ref.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/iq2_units.h"
#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq1_grids.h"
#include "quant/iq3_grids.h"
#include "quant/iq_signs.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"
#endif

namespace fathom::cpu::detail {

struct IqInt8Block {
  int8_t q[256];      // signed values (IQ1_S: times the scale; IQ1_M: 8 * grid value +- 1, its delta folded in)
  int16_t scale[16];  // integer scale of values 16j..16j+15
  int16_t delta[16];  // IQ1_S: +-scale of the shared delta of values 16j..16j+15 (times bsums[j]); else 0
  float d;            // super-block scale
};

// Eight magnitudes (byte j of `magnitudes`) with value j negated where bit j of `signs` is set.
inline void put_signed8(uint64_t magnitudes, unsigned signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const auto m = static_cast<int8_t>(static_cast<uint8_t>(magnitudes >> (8 * j)));
    q[j] = (signs >> j) & 1 ? static_cast<int8_t>(-m) : m;
  }
}

template <typename Block>
struct IqInt8;

// The 2-bit types share the 32-value units of iq2_units.h; the reference sums 2s + 1 scaled
// integer sums and divides the row by 8.
template <typename Block>
struct Iq2Int8 {
  static constexpr float kRowScale = 0.125f;
  static constexpr bool kHasDelta = false;
  static constexpr bool kScalesFolded = false;
  static void decode(const Block& b, IqInt8Block& out) {
    out.d = fp16_to_fp32(b.d);
    for (int u = 0; u < 8; ++u) {
      const Iq2Unit unit = iq2_unit(b, u);
      for (int l = 0; l < 4; ++l) put_signed8(unit.grid[l], unit.signs >> (8 * l), out.q + 32 * u + 8 * l);
      out.scale[2 * u] = static_cast<int16_t>(unit.scale[0]);
      out.scale[2 * u + 1] = static_cast<int16_t>(unit.scale[1]);
    }
    std::memset(out.delta, 0, sizeof(out.delta));
  }
  static float block_sum(int32_t s, int32_t) { return static_cast<float>(s); }
};
template <>
struct IqInt8<quant::block_iq2_xxs> : Iq2Int8<quant::block_iq2_xxs> {};
template <>
struct IqInt8<quant::block_iq2_xs> : Iq2Int8<quant::block_iq2_xs> {};
template <>
struct IqInt8<quant::block_iq2_s> : Iq2Int8<quant::block_iq2_s> {};

// Four magnitudes per grid entry, one 2s + 1 scale per 32 values, row divided by 4.
template <>
struct IqInt8<quant::block_iq3_xxs> {
  static constexpr float kRowScale = 0.25f;
  static constexpr bool kHasDelta = false;
  static constexpr bool kScalesFolded = false;
  static void decode(const quant::block_iq3_xxs& b, IqInt8Block& out) {
    out.d = fp16_to_fp32(b.d);
    for (int k = 0; k < 8; ++k) {
      const uint32_t word = load_le32(b.qs + 64 + 4 * k);  // 4 x 7 sign bits, then the scale
      const uint32_t signs = quant::iq_sign_bytes(word);
      for (int l = 0; l < 4; ++l) {
        const uint64_t pair = quant::kIq3XxsGrid[b.qs[8 * k + 2 * l]] |
                              static_cast<uint64_t>(quant::kIq3XxsGrid[b.qs[8 * k + 2 * l + 1]]) << 32;
        put_signed8(pair, signs >> (8 * l), out.q + 32 * k + 8 * l);
      }
      out.scale[2 * k] = out.scale[2 * k + 1] = static_cast<int16_t>(2 * (word >> 28) + 1);
    }
    std::memset(out.delta, 0, sizeof(out.delta));
  }
  static float block_sum(int32_t s, int32_t) { return static_cast<float>(s); }
};

// 9-bit indices (9th bit in qh), explicit sign bits, 2s + 1 nibble scales per 32 values.
template <>
struct IqInt8<quant::block_iq3_s> {
  static constexpr float kRowScale = 1.0f;
  static constexpr bool kHasDelta = false;
  static constexpr bool kScalesFolded = false;
  static void decode(const quant::block_iq3_s& b, IqInt8Block& out) {
    out.d = fp16_to_fp32(b.d);
    for (int k = 0; k < 8; ++k) {
      for (int l = 0; l < 4; ++l) {
        const int m = 2 * l;
        const auto index = [&](int j) { return b.qs[8 * k + j] | ((b.qh[k] >> j) & 1) << 8; };
        const uint64_t pair = quant::kIq3SGrid[index(m)] | static_cast<uint64_t>(quant::kIq3SGrid[index(m + 1)]) << 32;
        put_signed8(pair, b.signs[4 * k + l], out.q + 32 * k + 8 * l);
      }
      out.scale[2 * k] = out.scale[2 * k + 1] = static_cast<int16_t>(2 * ((b.scales[k / 2] >> (4 * (k % 2))) & 0xF) + 1);
    }
    std::memset(out.delta, 0, sizeof(out.delta));
  }
  static float block_sum(int32_t s, int32_t) { return static_cast<float>(s); }
};

// Grid values -1, 0, +1 with 11-bit indices; per 32 values a 2s + 1 scale and a shared +-1/8
// delta, whose sum over the activations is two Q8_K bsums.
template <>
struct IqInt8<quant::block_iq1_s> {
  static constexpr float kRowScale = 1.0f;
  static constexpr bool kHasDelta = true;
  // ls * grid value is within +-15: the scale is multiplied into the values, every scale[j] is 1.
  static constexpr bool kScalesFolded = true;
  static void decode(const quant::block_iq1_s& b, IqInt8Block& out) {
    out.d = fp16_to_fp32(b.d);
    for (int k = 0; k < 8; ++k) {
      const unsigned h = b.qh[k];
      const auto ls = static_cast<int16_t>(2 * ((h >> 12) & 7) + 1);
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIq1SGrid[b.qs[4 * k + l] | ((h >> (3 * l)) & 7) << 8];
        for (int j = 0; j < 8; ++j)
          out.q[32 * k + 8 * l + j] = static_cast<int8_t>(ls * static_cast<int8_t>(static_cast<uint8_t>(grid >> (8 * j))));
      }
      out.scale[2 * k] = out.scale[2 * k + 1] = 1;
      out.delta[2 * k] = out.delta[2 * k + 1] = h & 0x8000 ? static_cast<int16_t>(-ls) : ls;
    }
  }
  static float block_sum(int32_t s, int32_t delta_sum) {
    return static_cast<float>(s) + quant::kIq1SDelta * static_cast<float>(delta_sum);
  }
};

// Per 8 values a delta sign, too fine for the bsums: folded into the value as 8 * grid +- 1, so
// S / 8 is exactly the reference's grid part + delta part (|S| < 2^24, see dot_iq1_m in
// vec_dot_iq3_iq1_avx512.cpp).
template <>
struct IqInt8<quant::block_iq1_m> {
  static_assert(quant::kIq1MDelta == 0.125f, "the folded delta assumes 1/8");
  static constexpr float kRowScale = 1.0f;
  static constexpr bool kHasDelta = false;
  static constexpr bool kScalesFolded = false;
  static void decode(const quant::block_iq1_m& b, IqInt8Block& out) {
    uint16_t words[4];
    std::memcpy(words, b.scales, sizeof(words));
    out.d = fp16_to_fp32(quant::iq1_m_scale_bits(words));
    for (int k = 0; k < 8; ++k) {
      const unsigned w = words[k / 2] >> (6 * (k % 2));
      out.scale[2 * k] = static_cast<int16_t>(2 * (w & 7) + 1);
      out.scale[2 * k + 1] = static_cast<int16_t>(2 * ((w >> 3) & 7) + 1);
      for (int l = 0; l < 4; ++l) {
        const unsigned nibble = (b.qh[2 * k + l / 2] >> (4 * (l % 2))) & 0xF;
        const uint64_t grid = quant::kIq1SGrid[b.qs[4 * k + l] | (nibble & 7) << 8];
        for (int j = 0; j < 8; ++j) {
          const auto g = static_cast<int8_t>(static_cast<uint8_t>(grid >> (8 * j)));
          out.q[32 * k + 8 * l + j] = static_cast<int8_t>(8 * g + (nibble & 8 ? -1 : 1));
        }
      }
    }
    std::memset(out.delta, 0, sizeof(out.delta));
  }
  static float block_sum(int32_t s, int32_t) { return static_cast<float>(s) * 0.125f; }
};

// Rows decoded together, so each token's activations are loaded once for all of them.
constexpr int kIqRowTile = 4;

// The tiling shared by the ISA drivers (Kernel: vec_dot_iq_tokens_*.cpp). A tile of kRows rows x
// Kernel::kBlockChunk super-blocks is decoded (Kernel::prepare, into the ISA's Prepared form) and
// Kernel::chunk adds it to every token's running sums out[t * out_stride + r], the row's first
// chunk starting them from 0; the row factor is applied last, as the reference does.
template <typename Kernel, typename Block, int kRows>
void iq_dot_row_tile(int64_t n, const uint8_t* w, size_t row_bytes, const uint8_t* x_q, size_t act_row,
                     int64_t n_tokens, float* out, int64_t out_stride) {
  constexpr int kChunk = Kernel::kBlockChunk;
  alignas(64) typename Kernel::Prepared prep[kRows][kChunk];
  const int64_t n_blocks = n / quant::kQK;
  for (int64_t b0 = 0; b0 < n_blocks; b0 += kChunk) {
    const int chunk = static_cast<int>(std::min<int64_t>(kChunk, n_blocks - b0));
    for (int r = 0; r < kRows; ++r) {
      const auto* x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * row_bytes) + b0;
      for (int c = 0; c < chunk; ++c) Kernel::prepare(x[c], prep[r][c]);
    }
    Kernel::template chunk<Block, kRows>(prep, chunk, x_q + static_cast<size_t>(b0) * sizeof(quant::block_q8_K),
                                         act_row, n_tokens, b0 == 0, out, out_stride);
  }
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] *= IqInt8<Block>::kRowScale;
}

// A VecDotTokensFn: the rows in tiles of kIqRowTile, then one at a time.
template <typename Kernel, typename Block>
void iq_dot_tokens(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* x_q, size_t act_row,
                   int64_t n_tokens, float* out, int64_t out_stride) {
  int64_t r = 0;
  for (; r + kIqRowTile <= n_rows; r += kIqRowTile)
    iq_dot_row_tile<Kernel, Block, kIqRowTile>(n, w + static_cast<size_t>(r) * row_bytes, row_bytes, x_q, act_row,
                                               n_tokens, out + r, out_stride);
  for (; r < n_rows; ++r)
    iq_dot_row_tile<Kernel, Block, 1>(n, w + static_cast<size_t>(r) * row_bytes, row_bytes, x_q, act_row, n_tokens,
                                      out + r, out_stride);
}

// Installs iq_dot_tokens<Kernel> for the seven types.
template <typename Kernel>
void install_iq_dot_tokens(Kernels& k) {
  k.dot_tokens[static_cast<size_t>(DType::IQ2_XXS)] = iq_dot_tokens<Kernel, quant::block_iq2_xxs>;
  k.dot_tokens[static_cast<size_t>(DType::IQ2_XS)] = iq_dot_tokens<Kernel, quant::block_iq2_xs>;
  k.dot_tokens[static_cast<size_t>(DType::IQ2_S)] = iq_dot_tokens<Kernel, quant::block_iq2_s>;
  k.dot_tokens[static_cast<size_t>(DType::IQ3_XXS)] = iq_dot_tokens<Kernel, quant::block_iq3_xxs>;
  k.dot_tokens[static_cast<size_t>(DType::IQ3_S)] = iq_dot_tokens<Kernel, quant::block_iq3_s>;
  k.dot_tokens[static_cast<size_t>(DType::IQ1_S)] = iq_dot_tokens<Kernel, quant::block_iq1_s>;
  k.dot_tokens[static_cast<size_t>(DType::IQ1_M)] = iq_dot_tokens<Kernel, quant::block_iq1_m>;
}

#if defined(__x86_64__) || defined(__i386__)
// The sum of v's 8 int32 lanes, for the kernels' 16-value scale sums; AVX2, so the AVX2 and the
// AVX-512 kernels share it (inlined, it takes the caller's instruction set).
FATHOM_AVX2 inline int32_t reduce8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}
#endif

}  // namespace fathom::cpu::detail
