// AVX2 multi-token dot products of the codebook i-quants with Q8_K activations (the AVX-512 form
// and the tiling: vec_dot_iq_tokens_avx512.cpp, iq_int8.h). Without VNNI the decoded values are
// kept as magnitudes |q| and signs: per token the activations take q's sign (sign_epi8; Q8_K
// values are within +-127, so negating one is exact), maddubs multiplies them with |q| into 16-bit
// pair sums (|q| <= 62: no saturation) and madd applies the 16-value scales. Bit-identical to
// quant::vec_dot_ref per token, like the AVX-512 kernels.
#include <cmath>
#include <cstdint>

#include "backend/cpu/iq_int8.h"
#include "backend/cpu/vec_dot_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

namespace {

using quant::block_q8_K;

struct Avx2Iq {
  // Super-blocks of a row decoded at a time (2048 values): 4 rows of them (26 KB) stay in L1.
  static constexpr int kBlockChunk = 8;

  struct Prepared {
    __m256i magnitude[8];  // |q|, 32 values per vector
    __m256i sign[8];       // q: its sign goes onto the activations
    __m256i scale[8];      // int16 lane m of vector v: scale of values 32v + 2m, 32v + 2m + 1
    __m256i delta;         // IQ1_S: delta[j], int16: weights of bsums[j] in the delta sum
    float d;               // super-block scale
  };

  template <typename Block>
  FATHOM_AVX2 static void prepare(const Block& b, Prepared& p) {
    IqInt8Block dec;
    IqInt8<Block>::decode(b, dec);
    for (int v = 0; v < 8; ++v) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dec.q + 32 * v));
      p.sign[v] = q;
      p.magnitude[v] = _mm256_abs_epi8(q);
      p.scale[v] = _mm256_setr_m128i(_mm_set1_epi16(dec.scale[2 * v]), _mm_set1_epi16(dec.scale[2 * v + 1]));
    }
    p.delta = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dec.delta));
    p.d = dec.d;
  }

  // Adds super-blocks prep[r][0 .. n_blocks) of kRows rows to every token's running sums.
  template <typename Block, int kRows>
  FATHOM_AVX2 static void chunk(const Prepared (*prep)[kBlockChunk], int n_blocks, const uint8_t* x_q, size_t act_row,
                                int64_t n_tokens, bool first, float* out, int64_t out_stride) {
    using Traits = IqInt8<Block>;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const auto* y = reinterpret_cast<const block_q8_K*>(x_q + static_cast<size_t>(t) * act_row);
      float sum[kRows];
      for (int r = 0; r < kRows; ++r) sum[r] = first ? 0.f : out[t * out_stride + r];
      for (int c = 0; c < n_blocks; ++c) {
        __m256i acc[kRows];
        for (int r = 0; r < kRows; ++r) acc[r] = _mm256_setzero_si256();
        for (int v = 0; v < 8; ++v) {
          const __m256i yq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[c].qs + 32 * v));
          for (int r = 0; r < kRows; ++r) {
            const Prepared& p = prep[r][c];
            const __m256i pairs = _mm256_maddubs_epi16(p.magnitude[v], _mm256_sign_epi8(yq, p.sign[v]));
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, p.scale[v]));
          }
        }
        const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[c].bsums));
        for (int r = 0; r < kRows; ++r) {
          const Prepared& p = prep[r][c];
          const int32_t delta_sum = Traits::kHasDelta ? reduce8(_mm256_madd_epi16(p.delta, bsums)) : 0;
          sum[r] = std::fma(p.d * y[c].d, Traits::block_sum(reduce8(acc[r]), delta_sum), sum[r]);
        }
      }
      for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = sum[r];
    }
  }
};

}  // namespace

void install_iq_tokens_avx2(Kernels& k) { install_iq_dot_tokens<Avx2Iq>(k); }

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq_tokens_avx2(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
