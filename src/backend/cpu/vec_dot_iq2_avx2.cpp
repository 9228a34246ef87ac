// AVX2 dot products of the 2-bit i-quants (IQ2_XXS, IQ2_XS, IQ2_S) with Q8_K activations. A
// step takes one 32-value unit: 4 grid entries form the unsigned magnitudes, the 4 sign bytes
// are spread to one byte per value and flip the activations' signs, and maddubs + madd apply the
// two 16-value scales. The integer sum of a super-block is exactly the reference's, and the
// float accumulation is in the reference's order, so results are bit-identical to
// quant::vec_dot_ref.
#include <cmath>
#include <cstdint>

#include "backend/cpu/iq2_units.h"
#include "backend/cpu/vec_dot_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

FATHOM_AVX2 inline int32_t sum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

template <typename Block>
FATHOM_AVX2 float dot_iq2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  // Byte v of the unit takes sign byte v / 8 (shuffles stay within 128-bit halves, and every
  // half of the broadcast word holds all four bytes), then its bit v % 8.
  const __m256i sign_byte = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i sign_bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i one = _mm256_set1_epi8(1);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int unit = 0; unit < 8; ++unit) {
      const Iq2Unit u = iq2_unit(x[i], unit);
      const __m256i grid = _mm256_set_epi64x(static_cast<int64_t>(u.grid[3]), static_cast<int64_t>(u.grid[2]),
                                             static_cast<int64_t>(u.grid[1]), static_cast<int64_t>(u.grid[0]));
      const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(u.signs)), sign_byte);
      const __m256i bits = _mm256_and_si256(spread, sign_bit);
      const __m256i negative = _mm256_cmpeq_epi8(bits, sign_bit);  // 0xFF where the sign bit is set
      const __m256i yq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 32 * unit));
      const __m256i y_signed = _mm256_sign_epi8(yq, _mm256_or_si256(negative, one));
      // int16 lanes 0..7 hold values 0..15 (first scale), lanes 8..15 values 16..31.
      const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(u.scale[1])),
                                              _mm_set1_epi16(static_cast<int16_t>(u.scale[0])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(grid, y_signed), scales));
    }
    sum = std::fma(_cvtsh_ss(x[i].d) * y[i].d, static_cast<float>(sum_i32(isum)), sum);
  }
  return 0.125f * sum;
}

}  // namespace

void install_iq2_avx2(Kernels& k) {
  set_dot(k, DType::IQ2_XXS, dot_rows<dot_iq2<block_iq2_xxs>>, true);
  set_dot(k, DType::IQ2_XS, dot_rows<dot_iq2<block_iq2_xs>>, true);
  set_dot(k, DType::IQ2_S, dot_rows<dot_iq2<block_iq2_s>>, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq2_avx2(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
