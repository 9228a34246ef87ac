// AVX-512 (F, BW, VL, VNNI) dot products of the 2-bit i-quants (IQ2_XXS, IQ2_XS, IQ2_S) with
// Q8_K activations. A step takes 64 values (two 32-value units): 8 grid entries (looked up or
// gathered, whichever measured faster for the type) form the unsigned magnitudes, the 64 sign
// bits become a mask that negates the activations, and maddubs + dpwssd apply the 16-value
// scales. The integer sum of a super-block is exactly the reference's, and the float
// accumulation is in the reference's order, so results are bit-identical to quant::vec_dot_ref.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/iq2_units.h"
#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

// Groups 8 * step .. 8 * step + 7 of a super-block (two 32-value units).
struct Iq2Step {
  __m512i grid;      // 64 magnitudes
  uint64_t signs;    // bit v set: value v of the step is negative
  uint64_t scales4;  // 2s + 1 of the four 16-value sub-blocks, 16 bits each
};

FATHOM_AVX512 inline uint64_t unit_scales(const Iq2Unit& u0, const Iq2Unit& u1) {
  return u0.scale[0] | static_cast<uint64_t>(u0.scale[1]) << 16 | static_cast<uint64_t>(u1.scale[0]) << 32 |
         static_cast<uint64_t>(u1.scale[1]) << 48;
}

// IQ2_XS and IQ2_S: 2s + 1 from the two scale bytes of the step's units, low nibble first.
FATHOM_AVX512 inline uint64_t nibble_scales(const uint8_t* scales) {
  const uint64_t s = (scales[0] & 0xFu) | (scales[0] >> 4) << 16 | static_cast<uint64_t>(scales[1] & 0xF) << 32 |
                     static_cast<uint64_t>(scales[1] >> 4) << 48;
  return 2 * s + 0x0001000100010001ull;
}

// IQ2_XXS: scalar look-ups of the 8 byte indices measured faster than a gather.
FATHOM_AVX512 inline Iq2Step step_of(const block_iq2_xxs& b, int step) {
  const Iq2Unit u0 = iq2_unit(b, 2 * step), u1 = iq2_unit(b, 2 * step + 1);
  return {_mm512_set_epi64(static_cast<int64_t>(u1.grid[3]), static_cast<int64_t>(u1.grid[2]),
                           static_cast<int64_t>(u1.grid[1]), static_cast<int64_t>(u1.grid[0]),
                           static_cast<int64_t>(u0.grid[3]), static_cast<int64_t>(u0.grid[2]),
                           static_cast<int64_t>(u0.grid[1]), static_cast<int64_t>(u0.grid[0])),
          u0.signs | static_cast<uint64_t>(u1.signs) << 32, unit_scales(u0, u1)};
}

// IQ2_XS: the 8 words give the indices (gathered) and the sign patterns (narrowed to bytes).
FATHOM_AVX512 inline Iq2Step step_of(const block_iq2_xs& b, int step) {
  const __m512i words = _mm512_cvtepu16_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 8 * step)));
  const __m512i grid = _mm512_i64gather_epi64(_mm512_and_si512(words, _mm512_set1_epi64(511)),
                                              reinterpret_cast<const long long*>(kIq2xsGrid.data()), 8);
  const auto sevens = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(_mm512_srli_epi64(words, 9))));
  return {grid, iq_add_sign_parity(sevens), nibble_scales(b.scales + 2 * step)};
}

// IQ2_S: index bits 8, 9 of group l come from bits 2l, 2l+1 of the step's two qh bytes.
FATHOM_AVX512 inline Iq2Step step_of(const block_iq2_s& b, int step) {
  uint64_t low, signs;
  std::memcpy(&low, b.qs + 8 * step, 8);
  std::memcpy(&signs, b.qs + 32 + 8 * step, 8);
  uint16_t qh;
  std::memcpy(&qh, b.qh + 2 * step, 2);
  const __m512i high = _mm512_and_si512(
      _mm512_srlv_epi64(_mm512_set1_epi64(qh), _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14)), _mm512_set1_epi64(3));
  const __m512i indices = _mm512_or_si512(_mm512_cvtepu8_epi64(_mm_cvtsi64_si128(static_cast<int64_t>(low))),
                                          _mm512_slli_epi64(high, 8));
  return {_mm512_i64gather_epi64(indices, reinterpret_cast<const long long*>(kIq2sGrid.data()), 8), signs,
          nibble_scales(b.scales + 2 * step)};
}

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
      const Iq2Step st = step_of(x[i], step);
      const __m512i yq = _mm512_loadu_si512(y[i].qs + 64 * step);
      const __m512i y_signed = _mm512_mask_sub_epi8(yq, _cvtu64_mask64(st.signs), zero, yq);
      const __m512i scales = _mm512_permutexvar_epi16(scale_index, _mm512_set1_epi64(static_cast<int64_t>(st.scales4)));
      isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(st.grid, y_signed), scales);
    }
    sum = std::fma(_cvtsh_ss(x[i].d) * y[i].d, static_cast<float>(_mm512_reduce_add_epi32(isum)), sum);
  }
  return 0.125f * sum;
}

}  // namespace

void install_iq2_avx512(Kernels& k) {
  set_dot(k, DType::IQ2_XXS, dot_rows<dot_iq2<block_iq2_xxs>>, true);
  set_dot(k, DType::IQ2_XS, dot_rows<dot_iq2<block_iq2_xs>>, true);
  set_dot(k, DType::IQ2_S, dot_rows<dot_iq2<block_iq2_s>>, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq2_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
