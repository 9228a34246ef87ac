// AVX2 + FMA (+F16C) kernels: dot products for q4_0, q8_0, q4_K, q5_K, q6_K, iq4_nl, iq4_xs,
// tq1_0, tq2_0, f32, f16, bf16 and bit-exact activation quantization to q8_0 / q8_K. Every function carries a target attribute
// instead of the file being built with -mavx2, so the library still runs on any x86-64 and only
// calls in here after CPUID said yes (see kernels_for).
//
// Integer math is exactly the reference's (quant::vec_dot_ref): per-block int32 sums times the
// same integer sub-block scales; only the float accumulation order differs.
#include <cstring>

#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"
#include "quant/blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

FATHOM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

FATHOM_AVX2 inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

FATHOM_AVX2 inline float half(uint16_t h) { return _cvtsh_ss(h); }

// Signed int8 x signed int8 -> 8 int32 sums of 4 products. maddubs needs an unsigned left side,
// so the sign moves to the right side; no saturation since |x| <= 127 in all callers.
FATHOM_AVX2 inline __m256i dot_i8x32(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 16 packed nibble bytes -> 32 bytes 0..15: low nibbles first, then high (the q4_0 order).
FATHOM_AVX2 inline __m256i nibbles_q4_0(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

FATHOM_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

FATHOM_AVX2 float dot_q4_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t nb = n / kQK4_0;
  int64_t i = 0;
  // Two blocks per step on independent accumulators hides the FMA latency.
  for (; i + 2 <= nb; i += 2) {
    const __m256i q0 = _mm256_sub_epi8(nibbles_q4_0(x[i].qs), _mm256_set1_epi8(8));
    const __m256i q1 = _mm256_sub_epi8(nibbles_q4_0(x[i + 1].qs), _mm256_set1_epi8(8));
    const __m256i p0 = dot_i8x32(q0, load256(y[i].qs));
    const __m256i p1 = dot_i8x32(q1, load256(y[i + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i + 1].d) * half(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i q = _mm256_sub_epi8(nibbles_q4_0(x[i].qs), _mm256_set1_epi8(8));
    const __m256i p = dot_i8x32(q, load256(y[i].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

FATHOM_AVX2 float dot_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t nb = n / kQK8_0;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i p0 = dot_i8x32(load256(x[i].qs), load256(y[i].qs));
    const __m256i p1 = dot_i8x32(load256(x[i + 1].qs), load256(y[i + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i + 1].d) * half(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i p = dot_i8x32(load256(x[i].qs), load256(y[i].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// sum_j mins[j] * (bsums[2j] + bsums[2j+1]) for the 8 sub-blocks of 32.
FATHOM_AVX2 inline int k4_min_sum(const uint8_t mins[8], const int16_t bsums[16]) {
  uint8_t m2[16];
  for (int j = 0; j < 8; ++j) m2[2 * j] = m2[2 * j + 1] = mins[j];
  const __m256i m16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m2)));
  return hsum_i32(_mm256_madd_epi16(load256(bsums), m16));
}

// q4_K (qh null) and q5_K: 8 sub-blocks of 32, unsigned 4/5-bit quants against q8_K.
template <bool kHasHighBit>
FATHOM_AVX2 inline void k45_block(const uint8_t* qs, const uint8_t* qh_bytes, uint16_t d, uint16_t dmin,
                                  const uint8_t* packed, const block_q8_K& y, __m256& acc, float& min_acc) {
  uint8_t scales[8], mins[8];
  unpack_scales_mins_k4(packed, scales, mins);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  __m256i qh = kHasHighBit ? load256(qh_bytes) : _mm256_setzero_si256();
  __m256i isum = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    const __m256i q = load256(qs + 32 * c);
    __m256i lo = _mm256_and_si256(q, low_mask);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_mask);
    if (kHasHighBit) {
      // After c shifts by 2, bit 0 / bit 1 of each byte are chunk c's 5th bits.
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(1)), 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(2)), 3));
      qh = _mm256_srli_epi16(qh, 2);
    }
    const __m256i p_lo = _mm256_maddubs_epi16(lo, load256(y.qs + 64 * c));
    const __m256i p_hi = _mm256_maddubs_epi16(hi, load256(y.qs + 64 * c + 32));
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p_lo, _mm256_set1_epi16(scales[2 * c])));
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p_hi, _mm256_set1_epi16(scales[2 * c + 1])));
  }
  acc = _mm256_fmadd_ps(_mm256_set1_ps(y.d * half(d)), _mm256_cvtepi32_ps(isum), acc);
  min_acc += y.d * half(dmin) * static_cast<float>(k4_min_sum(mins, y.bsums));
}

FATHOM_AVX2 float dot_q4_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  float min_acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) k45_block<false>(x[i].qs, nullptr, x[i].d, x[i].dmin, x[i].scales, y[i], acc, min_acc);
  return hsum(acc) - min_acc;
}

FATHOM_AVX2 float dot_q5_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  float min_acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) k45_block<true>(x[i].qs, x[i].qh, x[i].d, x[i].dmin, x[i].scales, y[i], acc, min_acc);
  return hsum(acc) - min_acc;
}

// Scale vector for a 32-value register whose halves belong to sub-blocks a and b.
FATHOM_AVX2 inline __m256i scale_pair(int8_t a, int8_t b) {
  return _mm256_set_m128i(_mm_set1_epi16(b), _mm_set1_epi16(a));
}

FATHOM_AVX2 float dot_q6_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const int8_t* sc = x[i].scales;
    // The quants are stored unsigned (q + 32): sum sc*(q-32)*y = sum sc*q*y - 32 * sum sc*bsum.
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    __m256i isum = _mm256_slli_epi32(_mm256_madd_epi16(load256(y[i].bsums), sc16), 5);
    isum = _mm256_sub_epi32(_mm256_setzero_si256(), isum);
    for (int c = 0; c < 2; ++c) {
      const __m256i ql0 = load256(x[i].ql + 64 * c);
      const __m256i ql1 = load256(x[i].ql + 64 * c + 32);
      const __m256i qh = load256(x[i].qh + 32 * c);
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(ql0, low_mask),
                                         _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(ql1, low_mask),
                                         _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)), 2));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_mask),
                                         _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
      const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_mask),
                                         _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(0xC0))), 2));
      const int8_t* yq = y[i].qs + 128 * c;
      const int8_t* s = sc + 8 * c;
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, load256(yq)), scale_pair(s[0], s[1])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q2, load256(yq + 32)), scale_pair(s[2], s[3])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q3, load256(yq + 64)), scale_pair(s[4], s[5])));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q4, load256(yq + 96)), scale_pair(s[6], s[7])));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * half(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

// Float rows: 4 x 8 lanes in flight; the tail (n % 32) runs scalar.
FATHOM_AVX2 inline __m256 load8_f32(const void* w, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(w) + i); }
FATHOM_AVX2 inline __m256 load8_f16(const void* w, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
}
FATHOM_AVX2 inline __m256 load8_bf16(const void* w, int64_t i) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float load1_f32(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
inline float load1_f16(const void* w, int64_t i) { return fp16_to_fp32(static_cast<const uint16_t*>(w)[i]); }
inline float load1_bf16(const void* w, int64_t i) { return bf16_to_fp32(static_cast<const uint16_t*>(w)[i]); }

template <__m256 (*Load8)(const void*, int64_t), float (*Load1)(const void*, int64_t)>
FATHOM_AVX2 float dot_float(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const float*>(a);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int u = 0; u < 4; ++u) acc[u] = _mm256_fmadd_ps(Load8(w, i + 8 * u), _mm256_loadu_ps(x + i + 8 * u), acc[u]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(Load8(w, i), _mm256_loadu_ps(x + i), acc[0]);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += Load1(w, i) * x[i];
  return sum;
}

template <VecDotFn Dot>
FATHOM_AVX2 void rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) out[r] = Dot(w + static_cast<size_t>(r) * row_bytes, x_q, n);
}

// ---- activation quantization ----

FATHOM_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

FATHOM_AVX2 inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// roundf (half away from zero), as the reference q8_0 quantizer rounds; cvtps_epi32 alone would
// round half to even. v - trunc(v) is exact, so the comparison with 0.5 is too.
FATHOM_AVX2 inline __m256i round_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = abs_ps(_mm256_sub_ps(v, t));
  const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
  const __m256 bump = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one);
  return _mm256_cvttps_epi32(_mm256_add_ps(t, bump));
}

// Four vectors of 8 int32 (in value order) -> 32 int8 in value order.
FATHOM_AVX2 inline __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  // The packs work per 128-bit lane; this restores the value order.
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

FATHOM_AVX2 void quantize_q8_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_0*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int u = 0; u < 4; ++u) {
      v[u] = _mm256_loadu_ps(x + 8 * u);
      m = _mm256_max_ps(m, abs_ps(v[u]));
    }
    const float d = hmax(m) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int u = 0; u < 4; ++u) q[u] = round_away(_mm256_mul_ps(v[u], vid));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
  }
}

FATHOM_AVX2 void quantize_q8_K(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < kQK; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
    const float amax = hmax(m);
    if (!amax) {
      std::memset(&y[i], 0, sizeof(block_q8_K));
      continue;
    }
    // The reference keeps the sign of the first value with the largest magnitude.
    float max = 0;
    for (int j = 0; j < kQK; j += 8) {
      const int mask = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (mask) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(mask))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 vis = _mm256_set1_ps(iscale);
    const __m256i limit = _mm256_set1_epi32(127);
    for (int j = 0; j < kQK; j += 32) {
      __m256i q[4];
      for (int u = 0; u < 4; ++u)
        q[u] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 8 * u))), limit);
      // Each pair of int32 vectors is one 16-value group of bsums.
      y[i].bsums[j / 16] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      y[i].bsums[j / 16 + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    }
    y[i].d = 1 / iscale;
  }
}

// ---- iq4_nl, iq4_xs, tq1_0, tq2_0 ----

// 32 nibble indices (q4_0 order) looked up in the iq4_nl codebook.
FATHOM_AVX2 inline __m256i iq4_values(const uint8_t* qs) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues));
  return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(table), nibbles_q4_0(qs));
}

FATHOM_AVX2 float dot_iq4_nl(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const int64_t nb = n / kQK4_NL;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i p0 = dot_i8x32(iq4_values(x[i].qs), load256(y[i].qs));
    const __m256i p1 = dot_i8x32(iq4_values(x[i + 1].qs), load256(y[i + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i + 1].d) * half(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i p = dot_i8x32(iq4_values(x[i].qs), load256(y[i].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// The integer sum is the reference's exactly; so is the float step (one multiply-add per block).
FATHOM_AVX2 float dot_iq4_xs(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const __m256i q = iq4_values(x[i].qs + 16 * g);
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load256(y[i].qs + 32 * g), q));
      const __m256i scale = _mm256_set1_epi16(static_cast<int16_t>(iq4_xs_scale(x[i], g)));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, scale));
    }
    sum += (half(x[i].d) * y[i].d) * static_cast<float>(hsum_i32(isum));
  }
  return sum;
}

// sum of a q8_K block's 256 quants, from its 16 partial sums.
FATHOM_AVX2 inline int q8_K_total(const block_q8_K& y) {
  return hsum_i32(_mm256_madd_epi16(load256(y.bsums), _mm256_set1_epi16(1)));
}

// sum(t * y) over 32 values, t unsigned (0..3).
FATHOM_AVX2 inline __m256i dot_u8x32(__m256i t, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(t, y), _mm256_set1_epi16(1));
}

// Ternary dots take the fields t (0..2, or 3 in tq2_0) unsigned: sum((t - 1) y) = sum(t y) - sum(y).
FATHOM_AVX2 float dot_tq2_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_tq2_0*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m256i three = _mm256_set1_epi8(3);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i q = load256(x[i].qs + 32 * c);
      for (int l = 0; l < 4; ++l) {
        const __m256i t = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * l)), three);
        acc = _mm256_add_epi32(acc, dot_u8x32(t, load256(y[i].qs + 128 * c + 32 * l)));
      }
    }
    const int isum = hsum_i32(acc) - q8_K_total(y[i]);
    sum += static_cast<float>(isum) * (half(x[i].d) * y[i].d);
  }
  return sum;
}

// v * m per unsigned byte (mod 256): 16-bit multiplies of the even bytes and of the odd bytes.
FATHOM_AVX2 inline __m256i mul_u8(__m256i v, __m256i m) {
  const __m256i low_bytes = _mm256_set1_epi16(0x00FF);
  const __m256i even = _mm256_and_si256(_mm256_mullo_epi16(v, _mm256_and_si256(m, low_bytes)), low_bytes);
  const __m256i odd = _mm256_mullo_epi16(_mm256_andnot_si256(low_bytes, v), _mm256_srli_epi16(m, 8));
  return _mm256_or_si256(even, odd);
}

// The top trit (q * 3) >> 8 of each byte: 1 from 86 up, 2 from 171 up (compare masks are -1).
FATHOM_AVX2 inline __m256i top_trit(__m256i q) {
  const __m256i ge86 = _mm256_cmpeq_epi8(_mm256_max_epu8(q, _mm256_set1_epi8(86)), q);
  const __m256i ge171 = _mm256_cmpeq_epi8(_mm256_max_epu8(q, _mm256_set1_epi8(static_cast<char>(171))), q);
  return _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), ge86), ge171);
}

// Values 32h..32h+31 of a tq1_0 block come from these byte vectors (see kTq1Multipliers).
FATHOM_AVX2 float dot_tq1_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_tq1_0*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i head = load256(x[i].qs);                                                    // qs[0..31]
    const __m128i tail = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 32));  // qs[32..47]
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    const __m256i tails = _mm256_broadcastsi128_si256(tail);
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(qh)), tail);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 8; ++h) {
      const __m256i src = h < 5 ? head : (h < 7 ? tails : last);
      const __m256i t = top_trit(mul_u8(src, load256(kTq1Multipliers.m[h / 2] + 32 * (h % 2))));
      acc = _mm256_add_epi32(acc, dot_u8x32(t, load256(y[i].qs + 32 * h)));
    }
    const int isum = hsum_i32(acc) - q8_K_total(y[i]);
    sum += static_cast<float>(isum) * (half(x[i].d) * y[i].d);
  }
  return sum;
}

}  // namespace

void install_avx2(Kernels& k) {
  set_dot(k, DType::F32, rows<dot_float<load8_f32, load1_f32>>, true);
  set_dot(k, DType::F16, rows<dot_float<load8_f16, load1_f16>>, true);
  set_dot(k, DType::BF16, rows<dot_float<load8_bf16, load1_bf16>>, true);
  set_dot(k, DType::Q4_0, rows<dot_q4_0>, true);
  set_dot(k, DType::Q8_0, rows<dot_q8_0>, true);
  set_dot(k, DType::Q4_K, rows<dot_q4_K>, true);
  set_dot(k, DType::Q5_K, rows<dot_q5_K>, true);
  set_dot(k, DType::Q6_K, rows<dot_q6_K>, true);
  install_iq3_iq1_avx2(k);
  set_dot(k, DType::IQ4_NL, rows<dot_iq4_nl>, true);
  set_dot(k, DType::IQ4_XS, rows<dot_iq4_xs>, true);
  set_dot(k, DType::TQ1_0, rows<dot_tq1_0>, true);
  set_dot(k, DType::TQ2_0, rows<dot_tq2_0>, true);
  k.quantize_q8_0 = quantize_q8_0;
  k.quantize_q8_K = quantize_q8_K;
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_avx2(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
