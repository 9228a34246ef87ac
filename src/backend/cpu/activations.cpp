#include "backend/cpu/activations.h"

#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/exp_avx512.h"

FATHOM_AVX512_WARNINGS_OFF
#endif

namespace fathom::cpu {

void swiglu_reference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

#if defined(__x86_64__) || defined(__i386__)
namespace {

// The reference's operations in the same order, 16 at a time, with the vector e^x.
FATHOM_AVX512_FLOAT void swiglu_avx512(const float* gate, const float* up, int64_t n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = detail::exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace
#endif

SwigluFn swiglu_kernel(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::kAvx512) return swiglu_avx512;
#endif
  (void)isa;
  return swiglu_reference;
}

}  // namespace fathom::cpu
