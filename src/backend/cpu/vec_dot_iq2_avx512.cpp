// AVX-512 (F, BW, VL, VNNI) dot products of the 2-bit i-quants (IQ2_XXS, IQ2_XS, IQ2_S) with
// Q8_K activations. A step takes 64 values (two 32-value units): 8 grid entries form the
// unsigned magnitudes, the 64 sign bits become a mask that negates the activations, and
// maddubs + dpwssd apply the 16-value scales. The integer sum of a super-block is exactly the
// reference's, and the float accumulation is in the reference's order, so results are
// bit-identical to quant::vec_dot_ref.
#include <cmath>
#include <cstdint>

#include "backend/cpu/iq2_units.h"
#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// GCC 12's AVX-512 headers build vectors from _mm512_undefined_*() and trip this false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define FATHOM_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

template <typename Block>
FATHOM_AVX512 float dot_iq2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  // int16 lane m of a maddubs result holds values 2m, 2m+1 of the step: scale m / 8 of the four.
  const __m512i scale_index = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
                                               0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i zero = _mm512_setzero_si512();
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m512i isum = zero;
    for (int step = 0; step < 4; ++step) {
      const Iq2Unit u0 = iq2_unit(x[i], 2 * step), u1 = iq2_unit(x[i], 2 * step + 1);
      const __m512i grid = _mm512_set_epi64(static_cast<int64_t>(u1.grid[3]), static_cast<int64_t>(u1.grid[2]),
                                            static_cast<int64_t>(u1.grid[1]), static_cast<int64_t>(u1.grid[0]),
                                            static_cast<int64_t>(u0.grid[3]), static_cast<int64_t>(u0.grid[2]),
                                            static_cast<int64_t>(u0.grid[1]), static_cast<int64_t>(u0.grid[0]));
      const __mmask64 negative = _cvtu64_mask64(u0.signs | static_cast<uint64_t>(u1.signs) << 32);
      const __m512i yq = _mm512_loadu_si512(y[i].qs + 64 * step);
      const __m512i y_signed = _mm512_mask_sub_epi8(yq, negative, zero, yq);
      const uint64_t scales4 = u0.scale[0] | static_cast<uint64_t>(u0.scale[1]) << 16 |
                               static_cast<uint64_t>(u1.scale[0]) << 32 | static_cast<uint64_t>(u1.scale[1]) << 48;
      const __m512i scales = _mm512_permutexvar_epi16(scale_index, _mm512_set1_epi64(static_cast<int64_t>(scales4)));
      isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(grid, y_signed), scales);
    }
    sum = std::fma(_cvtsh_ss(x[i].d) * y[i].d, static_cast<float>(_mm512_reduce_add_epi32(isum)), sum);
  }
  return 0.125f * sum;
}

template <VecDotFn Dot>
FATHOM_AVX512 void rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) out[r] = Dot(w + static_cast<size_t>(r) * row_bytes, x_q, n);
}

}  // namespace

void install_iq2_avx512(Kernels& k) {
  set_dot(k, DType::IQ2_XXS, rows<dot_iq2<block_iq2_xxs>>, true);
  set_dot(k, DType::IQ2_XS, rows<dot_iq2<block_iq2_xs>>, true);
  set_dot(k, DType::IQ2_S, rows<dot_iq2<block_iq2_s>>, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq2_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
