// AVX-512 (F, BW, VL, VNNI) multi-token dot products of the codebook i-quants with Q8_K
// activations, for prefill: each weight super-block is decoded once (iq_int8.h) and multiplied
// with every token of the batch, instead of being decoded again per token as the row kernels do.
//
// The decoded values are signed, VNNI's dpbusd multiplies unsigned by signed bytes: the kernel
// stores q + 128 (q ^ 0x80) and removes 128 * sum(y), which Q8_K keeps per 16 values (bsums),
// so each integer sum is exact. Per token the float combine runs super-block by super-block in
// the reference's order, so a token's result is bit-identical to quant::vec_dot_ref and does not
// depend on which other tokens share the batch.
#include <cmath>
#include <cstdint>

#include "backend/cpu/iq_int8.h"
#include "backend/cpu/vec_dot_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same headers, in the 256-bit halves' extracts
#endif

namespace fathom::cpu::detail {

namespace {

using quant::block_q8_K;

struct Avx512Iq {
  // Super-blocks of a row decoded at a time (4096 values): 4 rows of them stay in L1.
  static constexpr int kBlockChunk = 16;

  // One decoded super-block in the form the dot loop reads.
  struct Prepared {
    __m512i biased[4];      // q + 128 as unsigned bytes, 64 values per vector
    __m512i lane_scale[4];  // int32 lane m of vector v: scale of values 64v + 4m .. 64v + 4m + 3
    __m256i scale128;       // 128 * scale[j], int16: weights of bsums[j] in the bias correction
    __m256i delta;          // IQ1_S: delta[j], int16: weights of bsums[j] in the delta sum
    float d;                // super-block scale
  };

  template <typename Block>
  FATHOM_AVX512 static void prepare(const Block& b, Prepared& p) {
    IqInt8Block dec;
    IqInt8<Block>::decode(b, dec);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m256i scale16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dec.scale));
    const __m512i scales = _mm512_cvtepi16_epi32(scale16);
    const __m512i lane_group =
        _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2);
    for (int v = 0; v < 4; ++v) {
      p.biased[v] = _mm512_xor_si512(_mm512_loadu_si512(dec.q + 64 * v), flip);
      p.lane_scale[v] = _mm512_permutexvar_epi32(_mm512_add_epi32(lane_group, _mm512_set1_epi32(4 * v)), scales);
    }
    p.scale128 = _mm256_slli_epi16(scale16, 7);
    p.delta = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dec.delta));
    p.d = dec.d;
  }

  // Adds super-blocks prep[r][0 .. n_blocks) of kRows rows to every token's running sums.
  template <typename Block, int kRows>
  FATHOM_AVX512 static void chunk(const Prepared (*prep)[kBlockChunk], int n_blocks, const uint8_t* x_q,
                                  size_t act_row, int64_t n_tokens, bool first, float* out, int64_t out_stride) {
    using Traits = IqInt8<Block>;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const auto* y = reinterpret_cast<const block_q8_K*>(x_q + static_cast<size_t>(t) * act_row);
      float sum[kRows];
      for (int r = 0; r < kRows; ++r) sum[r] = first ? 0.f : out[t * out_stride + r];
      for (int c = 0; c < n_blocks; ++c) {
        __m512i acc[kRows];
        for (int r = 0; r < kRows; ++r) acc[r] = _mm512_setzero_si512();
        for (int v = 0; v < 4; ++v) {
          const __m512i yq = _mm512_loadu_si512(y[c].qs + 64 * v);
          for (int r = 0; r < kRows; ++r) {
            if constexpr (Traits::kScalesFolded) {
              acc[r] = _mm512_dpbusd_epi32(acc[r], prep[r][c].biased[v], yq);
            } else {
              const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), prep[r][c].biased[v], yq);
              acc[r] = _mm512_add_epi32(acc[r], _mm512_mullo_epi32(p, prep[r][c].lane_scale[v]));
            }
          }
        }
        const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[c].bsums));
        for (int r = 0; r < kRows; ++r) {
          const Prepared& p = prep[r][c];
          const __m512i bias = _mm512_zextsi256_si512(_mm256_madd_epi16(p.scale128, bsums));
          const auto s = static_cast<int32_t>(_mm512_reduce_add_epi32(_mm512_sub_epi32(acc[r], bias)));
          const int32_t delta_sum = Traits::kHasDelta ? reduce8(_mm256_madd_epi16(p.delta, bsums)) : 0;
          sum[r] = std::fma(p.d * y[c].d, Traits::block_sum(s, delta_sum), sum[r]);
        }
      }
      for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = sum[r];
    }
  }
};

}  // namespace

void install_iq_tokens_avx512(Kernels& k) { install_iq_dot_tokens<Avx512Iq>(k); }

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq_tokens_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
