// e^x on 16 floats (Cephes' polynomial after range reduction, about 1-2 ulp from std::exp),
// shared by the AVX-512 attention softmax and the SwiGLU activation (swiglu16). Internal to
// src/backend/cpu; include it inside the files' `#if defined(__x86_64__) || defined(__i386__)`.
#pragma once

#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

// Inputs below -87 give ~1e-38 (callers that need 0 there mask it off); inputs above ~88.7
// give +inf (the scale step overflows), so 1 + e^x and x / (1 + e^x) keep their limits.
FATHOM_AVX512_FLOAT inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// SwiGLU's product on 16 lanes: silu(g) * u = g / (1 + e^-g) * u. The one definition of the
// activation kernel (activations.cpp) and of the AMX gate/up epilogue (gemm_amx.cpp), so the
// fused and the unfused FFN give the same bits.
FATHOM_AVX512_FLOAT inline __m512 swiglu16(__m512 g, __m512 u) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

}  // namespace fathom::cpu::detail
