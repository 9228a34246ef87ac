// AVX-512 (F, BW, VL, VNNI) kernels: dot products for q4_0, q8_0, q4_K, q5_K, q6_K, iq4_nl,
// iq4_xs, tq1_0, tq2_0, f32, f16, bf16 and bit-exact activation quantization to q8_0 / q8_K.
// Built with per-function target attributes like the AVX2 file; selected only when CPUID reports
// all four extensions.
//
// 512-bit registers hold two 32-value units side by side (two q4_0/q8_0 blocks, or two K-quant
// sub-block chunks), so per-unit float scales or integer sub-block scales go in per half.
#include <cstdint>
#include <cstring>

#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"
#include "quant/blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

FATHOM_AVX512 inline float half(uint16_t h) { return _cvtsh_ss(h); }

FATHOM_AVX512 inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
FATHOM_AVX512 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Two 32-byte pieces into one register: a in the low half, b in the high half.
FATHOM_AVX512 inline __m512i join(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

// Float vector holding a in lanes 0..7 and b in lanes 8..15 (one scale per 32-value unit).
FATHOM_AVX512 inline __m512 scale_halves(float a, float b) {
  return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

// Signed int8 x signed int8 accumulated into 16 int32 lanes (4 products each): VNNI wants the
// left side unsigned, so take |x| and move x's sign onto y. |values| <= 127 in all callers.
FATHOM_AVX512 inline __m512i dot_i8(__m512i acc, __m512i x, __m512i y) {
  const __mmask64 negative = _mm512_movepi8_mask(x);
  const __m512i y_signed = _mm512_mask_sub_epi8(y, negative, _mm512_setzero_si512(), y);
  return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(x), y_signed);
}

// Same on 256 bits for an odd trailing block.
FATHOM_AVX512 inline __m256i dot_i8_256(__m256i x, __m256i y) {
  const __mmask32 negative = _mm256_movepi8_mask(x);
  const __m256i y_signed = _mm256_mask_sub_epi8(y, negative, _mm256_setzero_si256(), y);
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), y_signed);
}

FATHOM_AVX512 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 packed nibble bytes -> 32 bytes 0..15 in q4_0 value order (low nibbles, then high).
FATHOM_AVX512 inline __m256i nibbles_q4_0(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

FATHOM_AVX512 float dot_q4_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const int64_t nb = n / kQK4_0;
  __m512 acc = _mm512_setzero_ps();
  const __m512i eight = _mm512_set1_epi8(8);
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i q = _mm512_sub_epi8(join(nibbles_q4_0(x[i].qs), nibbles_q4_0(x[i + 1].qs)), eight);
    const __m512i yy = join(load256(y[i].qs), load256(y[i + 1].qs));
    const __m512i p = dot_i8(_mm512_setzero_si512(), q, yy);
    const __m512 d = scale_halves(half(x[i].d) * half(y[i].d), half(x[i + 1].d) * half(y[i + 1].d));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  if (i < nb) {
    const __m256i q = _mm256_sub_epi8(nibbles_q4_0(x[i].qs), _mm256_set1_epi8(8));
    const __m256i p = dot_i8_256(q, load256(y[i].qs));
    sum += hsum256(_mm256_mul_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p)));
  }
  return sum;
}

FATHOM_AVX512 float dot_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const int64_t nb = n / kQK8_0;
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i xx = join(load256(x[i].qs), load256(x[i + 1].qs));
    const __m512i yy = join(load256(y[i].qs), load256(y[i + 1].qs));
    const __m512i p = dot_i8(_mm512_setzero_si512(), xx, yy);
    const __m512 d = scale_halves(half(x[i].d) * half(y[i].d), half(x[i + 1].d) * half(y[i + 1].d));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  if (i < nb) {
    const __m256i p = dot_i8_256(load256(x[i].qs), load256(y[i].qs));
    sum += hsum256(_mm256_mul_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p)));
  }
  return sum;
}

// int16 scale vector: lanes 0..15 = a, 16..31 = b (pairs of maddubs results per 32-value half).
FATHOM_AVX512 inline __m512i scale16_halves(int a, int b) {
  return join(_mm256_set1_epi16(static_cast<int16_t>(a)), _mm256_set1_epi16(static_cast<int16_t>(b)));
}

// sum_j mins[j] * (bsums[2j] + bsums[2j+1]).
FATHOM_AVX512 inline int k4_min_sum(const uint8_t mins[8], const int16_t bsums[16]) {
  uint8_t m2[16];
  for (int j = 0; j < 8; ++j) m2[2 * j] = m2[2 * j + 1] = mins[j];
  const __m256i m16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m2)));
  const __m256i p = _mm256_madd_epi16(load256(bsums), m16);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// q4_K (no high bits) and q5_K. A step takes 64 quant bytes = chunks 2h (low half) and 2h+1
// (high half); low nibbles are sub-blocks 4h and 4h+2, high nibbles 4h+1 and 4h+3.
template <bool kHasHighBit>
FATHOM_AVX512 inline void k45_block(const uint8_t* qs, const uint8_t* qh_bytes, uint16_t d, uint16_t dmin,
                                    const uint8_t* packed, const block_q8_K& y, __m512& acc, float& min_acc) {
  uint8_t scales[8], mins[8];
  unpack_scales_mins_k4(packed, scales, mins);
  const __m512i low_mask = _mm512_set1_epi8(0x0F);
  const __m512i qh_both = kHasHighBit ? _mm512_broadcast_i64x4(load256(qh_bytes)) : _mm512_setzero_si512();
  __m512i isum = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const __m512i q = load512(qs + 64 * h);
    __m512i lo = _mm512_and_si512(q, low_mask);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low_mask);
    if (kHasHighBit) {
      // Chunk c's 5th bits are bits 2c (low nibbles) and 2c+1 (high) of qh: shift each half by
      // 2c = 4h (low half) or 4h + 2 (high half).
      const __m512i shift = join(_mm256_set1_epi16(static_cast<int16_t>(4 * h)), _mm256_set1_epi16(static_cast<int16_t>(4 * h + 2)));
      const __m512i bits = _mm512_srlv_epi16(qh_both, shift);
      lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(bits, _mm512_set1_epi8(1)), 4));
      hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(bits, _mm512_set1_epi8(2)), 3));
    }
    const int8_t* yq = y.qs + 128 * h;
    const __m512i y_lo = join(load256(yq), load256(yq + 64));
    const __m512i y_hi = join(load256(yq + 32), load256(yq + 96));
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(lo, y_lo), scale16_halves(scales[4 * h], scales[4 * h + 2]));
    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(hi, y_hi), scale16_halves(scales[4 * h + 1], scales[4 * h + 3]));
  }
  acc = _mm512_fmadd_ps(_mm512_set1_ps(y.d * half(d)), _mm512_cvtepi32_ps(isum), acc);
  min_acc += y.d * half(dmin) * static_cast<float>(k4_min_sum(mins, y.bsums));
}

FATHOM_AVX512 float dot_q4_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  __m512 acc = _mm512_setzero_ps();
  float min_acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) k45_block<false>(x[i].qs, nullptr, x[i].d, x[i].dmin, x[i].scales, y[i], acc, min_acc);
  return _mm512_reduce_add_ps(acc) - min_acc;
}

FATHOM_AVX512 float dot_q5_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  __m512 acc = _mm512_setzero_ps();
  float min_acc = 0;
  for (int64_t i = 0; i < n / kQK; ++i) k45_block<true>(x[i].qs, x[i].qh, x[i].d, x[i].dmin, x[i].scales, y[i], acc, min_acc);
  return _mm512_reduce_add_ps(acc) - min_acc;
}

FATHOM_AVX512 float dot_q6_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m512i low_mask = _mm512_set1_epi8(0x0F);
  // q1|q2 take qh bits 0-1 | 2-3 (moved up to bits 4-5), q3|q4 take bits 4-5 | 6-7.
  const __m512i mask12 = join(_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
  const __m512i shl12 = join(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
  const __m512i mask34 = join(_mm256_set1_epi8(0x30), _mm256_set1_epi8(static_cast<char>(0xC0)));
  const __m512i shr34 = join(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
  // Lane k (int16) of a maddubs result covers values 2k, 2k+1: scale index k / 8 within the pair.
  const __m512i scale_index = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
                                               0, 0, 0, 0, 0, 0, 0, 0);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales)));
    const __m512i sc_all = _mm512_castsi256_si512(sc16);
    // Stored quants are q + 32: sum sc*(q-32)*y = sum sc*q*y - 32 * sum sc*bsum.
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load256(y[i].bsums), sc16), 5);
    __m512i isum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), offset));
    for (int c = 0; c < 2; ++c) {
      const __m512i ql = load512(x[i].ql + 64 * c);
      const __m512i qh = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * c));
      const __m512i q12 = _mm512_or_si512(_mm512_and_si512(ql, low_mask), _mm512_sllv_epi16(_mm512_and_si512(qh, mask12), shl12));
      const __m512i q34 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low_mask),
                                          _mm512_srlv_epi16(_mm512_and_si512(qh, mask34), shr34));
      const int8_t* yq = y[i].qs + 128 * c;
      const __m512i s12 = _mm512_permutexvar_epi16(_mm512_add_epi16(scale_index, _mm512_set1_epi16(static_cast<int16_t>(8 * c))), sc_all);
      const __m512i s34 = _mm512_permutexvar_epi16(_mm512_add_epi16(scale_index, _mm512_set1_epi16(static_cast<int16_t>(8 * c + 4))), sc_all);
      isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q12, load512(yq)), s12);
      isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q34, load512(yq + 64)), s34);
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * half(x[i].d)), _mm512_cvtepi32_ps(isum), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// Float rows: 4 x 16 lanes in flight; 8-wide and scalar tails.
FATHOM_AVX512 inline __m512 load16_f32(const void* w, int64_t i) { return _mm512_loadu_ps(static_cast<const float*>(w) + i); }
FATHOM_AVX512 inline __m512 load16_f16(const void* w, int64_t i) {
  return _mm512_cvtph_ps(load256(static_cast<const uint16_t*>(w) + i));
}
FATHOM_AVX512 inline __m512 load16_bf16(const void* w, int64_t i) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load256(static_cast<const uint16_t*>(w) + i)), 16));
}
inline float load1_f32(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
inline float load1_f16(const void* w, int64_t i) { return fp16_to_fp32(static_cast<const uint16_t*>(w)[i]); }
inline float load1_bf16(const void* w, int64_t i) { return bf16_to_fp32(static_cast<const uint16_t*>(w)[i]); }

template <__m512 (*Load16)(const void*, int64_t), float (*Load1)(const void*, int64_t)>
FATHOM_AVX512 float dot_float(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const float*>(a);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int u = 0; u < 4; ++u) acc[u] = _mm512_fmadd_ps(Load16(w, i + 16 * u), _mm512_loadu_ps(x + i + 16 * u), acc[u]);
  for (; i + 16 <= n; i += 16) acc[0] = _mm512_fmadd_ps(Load16(w, i), _mm512_loadu_ps(x + i), acc[0]);
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += Load1(w, i) * x[i];
  return sum;
}

template <VecDotFn Dot>
FATHOM_AVX512 void rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) out[r] = Dot(w + static_cast<size_t>(r) * row_bytes, x_q, n);
}

// ---- activation quantization ----

FATHOM_AVX512 inline __m512 abs_ps(__m512 v) { return _mm512_abs_ps(v); }

// roundf (half away from zero), matching the reference q8_0 quantizer.
FATHOM_AVX512 inline __m512i round_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 bump = _mm512_cmp_ps_mask(abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_set1_ps(1.0f)),
                                                         _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN))));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, bump, t, one));
}

FATHOM_AVX512 void quantize_q8_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_0*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float d = _mm512_reduce_max_ps(_mm512_max_ps(abs_ps(v0), abs_ps(v1))) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    const __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v0, vid))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16), _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v1, vid))));
  }
}

FATHOM_AVX512 void quantize_q8_K(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < kQK; j += 16) m = _mm512_max_ps(m, abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(m);
    if (!amax) {
      std::memset(&y[i], 0, sizeof(block_q8_K));
      continue;
    }
    // The reference keeps the sign of the first value with the largest magnitude.
    float max = 0;
    for (int j = 0; j < kQK; j += 16) {
      const __mmask16 hit = _mm512_cmp_ps_mask(abs_ps(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m512 vis = _mm512_set1_ps(iscale);
    const __m512i limit = _mm512_set1_epi32(127);
    for (int j = 0; j < kQK; j += 16) {
      // cvtps_epi32 rounds half to even under the default MXCSR, as the reference nearest_int.
      const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(vis, _mm512_loadu_ps(x + j))), limit);
      y[i].bsums[j / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + j), _mm512_cvtsepi32_epi8(q));
    }
    y[i].d = 1 / iscale;
  }
}

// ---- iq4_nl, iq4_xs, tq1_0, tq2_0 ----

FATHOM_AVX512 inline __m128i iq4_table() { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)); }

// Two 32-value groups of nibble indices (q4_0 order) looked up in the iq4_nl codebook.
FATHOM_AVX512 inline __m512i iq4_values(const uint8_t* qs_a, const uint8_t* qs_b) {
  return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(iq4_table()), join(nibbles_q4_0(qs_a), nibbles_q4_0(qs_b)));
}

FATHOM_AVX512 float dot_iq4_nl(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const int64_t nb = n / kQK4_NL;
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i p = dot_i8(_mm512_setzero_si512(), iq4_values(x[i].qs, x[i + 1].qs),
                             join(load256(y[i].qs), load256(y[i + 1].qs)));
    const __m512 d = scale_halves(half(x[i].d) * half(y[i].d), half(x[i + 1].d) * half(y[i + 1].d));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  if (i < nb) {
    const __m256i q = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(iq4_table()), nibbles_q4_0(x[i].qs));
    const __m256i p = dot_i8_256(q, load256(y[i].qs));
    sum += hsum256(_mm256_mul_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p)));
  }
  return sum;
}

// The integer sum is the reference's exactly; so is the float step (one multiply-add per block).
FATHOM_AVX512 float dot_iq4_xs(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    __m512i isum = _mm512_setzero_si512();
    for (int g = 0; g < 8; g += 2) {
      // Pairs of products in int16 (|sum| <= 2 * 127 * 127), then times the sub-block scales
      // into int32: cheaper than VNNI followed by a 32-bit multiply.
      const __m512i q = iq4_values(x[i].qs + 16 * g, x[i].qs + 16 * (g + 1));
      const __m512i yy = load512(y[i].qs + 32 * g);
      const __m512i y_signed = _mm512_mask_sub_epi8(yy, _mm512_movepi8_mask(q), _mm512_setzero_si512(), yy);
      const __m512i p16 = _mm512_maddubs_epi16(_mm512_abs_epi8(q), y_signed);
      isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p16, scale16_halves(iq4_xs_scale(x[i], g), iq4_xs_scale(x[i], g + 1))));
    }
    sum += (half(x[i].d) * y[i].d) * static_cast<float>(_mm512_reduce_add_epi32(isum));
  }
  return sum;
}

// sum of a q8_K block's 256 quants, from its 16 partial sums.
FATHOM_AVX512 inline int q8_K_total(const block_q8_K& y) {
  return _mm512_reduce_add_epi32(_mm512_cvtepi16_epi32(load256(y.bsums)));
}

// Ternary dots take the fields t (0..2, or 3 in tq2_0) unsigned: sum((t - 1) y) = sum(t y) - sum(y).
FATHOM_AVX512 float dot_tq2_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_tq2_0*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m512i three = _mm512_set1_epi8(3);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m512i q = load512(x[i].qs);  // low half: values 0..127, high half: 128..255
    __m512i acc = _mm512_setzero_si512();
    for (int l = 0; l < 4; ++l) {
      const __m512i t = _mm512_and_si512(_mm512_srl_epi16(q, _mm_cvtsi32_si128(2 * l)), three);
      acc = _mm512_dpbusd_epi32(acc, t, join(load256(y[i].qs + 32 * l), load256(y[i].qs + 128 + 32 * l)));
    }
    const int isum = _mm512_reduce_add_epi32(acc) - q8_K_total(y[i]);
    sum += static_cast<float>(isum) * (half(x[i].d) * y[i].d);
  }
  return sum;
}

// v * m per unsigned byte (mod 256): 16-bit multiplies of the even bytes and of the odd bytes.
FATHOM_AVX512 inline __m512i mul_u8(__m512i v, __m512i m) {
  const __m512i low_bytes = _mm512_set1_epi16(0x00FF);
  const __m512i even = _mm512_mullo_epi16(v, _mm512_and_si512(m, low_bytes));
  const __m512i odd = _mm512_mullo_epi16(_mm512_andnot_si512(low_bytes, v), _mm512_srli_epi16(m, 8));
  return _mm512_mask_blend_epi8(0xAAAAAAAAAAAAAAAAull, even, odd);
}

// The top trit (q * 3) >> 8 of each byte: 1 from 86 up, 2 from 171 up.
FATHOM_AVX512 inline __m512i top_trit(__m512i q) {
  const __m512i one = _mm512_set1_epi8(1);
  const __m512i t = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(q, _mm512_set1_epi8(86)), one);
  return _mm512_mask_add_epi8(t, _mm512_cmpge_epu8_mask(q, _mm512_set1_epi8(static_cast<char>(171))), t, one);
}

// Values 64g..64g+63 of a tq1_0 block come from these byte vectors (see kTq1Multipliers).
FATHOM_AVX512 float dot_tq1_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_tq1_0*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    const __m256i head = load256(x[i].qs);                                                    // qs[0..31]
    const __m128i tail = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 32));  // qs[32..47]
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    const __m512i src[4] = {
        _mm512_broadcast_i64x4(head), _mm512_broadcast_i64x4(head),
        _mm512_inserti64x4(_mm512_castsi256_si512(head), _mm256_broadcastsi128_si256(tail), 1),
        _mm512_inserti32x4(_mm512_broadcast_i32x4(tail), _mm_set1_epi32(static_cast<int>(qh)), 3)};
    __m512i acc = _mm512_setzero_si512();
    for (int g = 0; g < 4; ++g) {
      const __m512i t = top_trit(mul_u8(src[g], load512(kTq1Multipliers.m[g])));
      acc = _mm512_dpbusd_epi32(acc, t, load512(y[i].qs + 64 * g));
    }
    const int isum = _mm512_reduce_add_epi32(acc) - q8_K_total(y[i]);
    sum += static_cast<float>(isum) * (half(x[i].d) * y[i].d);
  }
  return sum;
}

}  // namespace

void install_avx512(Kernels& k) {
  set_dot(k, DType::F32, rows<dot_float<load16_f32, load1_f32>>, true);
  set_dot(k, DType::F16, rows<dot_float<load16_f16, load1_f16>>, true);
  set_dot(k, DType::BF16, rows<dot_float<load16_bf16, load1_bf16>>, true);
  set_dot(k, DType::Q4_0, rows<dot_q4_0>, true);
  set_dot(k, DType::Q8_0, rows<dot_q8_0>, true);
  set_dot(k, DType::Q4_K, rows<dot_q4_K>, true);
  set_dot(k, DType::Q5_K, rows<dot_q5_K>, true);
  set_dot(k, DType::Q6_K, rows<dot_q6_K>, true);
  install_iq3_iq1_avx512(k);
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
void install_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
