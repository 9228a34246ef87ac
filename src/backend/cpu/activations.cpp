#include "backend/cpu/activations.h"

#include <cmath>

#include "core/fp16.h"
#include "core/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/bf16_avx512.h"
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

void rms_norm_row_reference(const float* x, const float* weight, int64_t n, float eps, float* out) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void half_row_reference(DType t, const float* src, uint16_t* dst, int64_t n) {
  FATHOM_CHECK(t == DType::F16 || t == DType::BF16);
  for (int64_t i = 0; i < n; ++i) dst[i] = t == DType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
}

#if defined(__x86_64__) || defined(__i386__)
namespace {

// The lanes of a 16-value step with `left` values left: all 16, or the first `left`.
inline __mmask16 lanes(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

// The squares summed in two vectors of 16 lanes (the scalar chain of adds bound the row at ~4
// cycles a value: ~3% of a pp512 on 1.5B, 2 threads); out as the reference computes it.
FATHOM_AVX512_FLOAT void rms_norm_row_avx512(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    s0 = _mm512_fmadd_ps(a, a, s0);
    s1 = _mm512_fmadd_ps(b, b, s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
    s0 = _mm512_fmadd_ps(a, a, s0);
  }
  alignas(64) float partial[16];
  _mm512_store_ps(partial, _mm512_add_ps(s0, s1));
  float sum = 0.0f;
  for (float l : partial) sum += l;
  const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(sum / static_cast<float>(n) + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale), _mm512_maskz_loadu_ps(m, weight + i));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

// 16 values as f16 (VCVTPS2PH, round to nearest even, NaN lanes replaced by the reference's
// quiet NaN) or bf16 (bf16_avx512.h's bf16_bits, the reference's rounding).
FATHOM_AVX512 inline __m256i half16(DType t, __m512 v) {
  if (t == DType::BF16) return _mm512_cvtepi32_epi16(detail::bf16_bits(v));
  const __m512i x = _mm512_castps_si512(v);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512i quiet = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x8000)),
                                        _mm512_set1_epi32(0x7e00));
  return _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(quiet));
}

FATHOM_AVX512 void half_row_avx512(DType t, const float* src, uint16_t* dst, int64_t n) {
  FATHOM_CHECK(t == DType::F16 || t == DType::BF16);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    _mm256_mask_storeu_epi16(dst + i, m, half16(t, _mm512_maskz_loadu_ps(m, src + i)));
  }
}

// The reference's operations in the same order, 16 at a time, with the vector e^x.
FATHOM_AVX512_FLOAT void swiglu_avx512(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = lanes(n - i);
    _mm512_mask_storeu_ps(out + i, m, detail::swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
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

RmsNormRowFn rms_norm_row_kernel(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::kAvx512) return rms_norm_row_avx512;
#endif
  (void)isa;
  return rms_norm_row_reference;
}

HalfRowFn half_row_kernel(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::kAvx512) return half_row_avx512;
#endif
  (void)isa;
  return half_row_reference;
}

}  // namespace fathom::cpu
