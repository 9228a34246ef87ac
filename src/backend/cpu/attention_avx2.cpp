// AVX2+FMA attention tile: the 16-key tile as two 8-lane halves. Each half's scores come from
// 8 per-key accumulators over the head width folded by a horizontal-add tree; softmax weights
// use a vector exp (Cephes polynomial, ~1 ulp); the weighted value sum keeps up to 64 output
// floats in registers per pass. Built with per-function target attributes. Also the f16/bf16 row
// conversion of stored caches (F16C, and a 16-bit shift for bf16).
#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_internal.h"
#include "core/fp16.h"
#include "core/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

namespace {

// Lane j of the result = horizontal sum of acc[j].
FATHOM_AVX2_FMA inline __m256 reduce8(const __m256* acc) {
  const __m256 t0 = _mm256_hadd_ps(acc[0], acc[1]), t1 = _mm256_hadd_ps(acc[2], acc[3]);
  const __m256 t2 = _mm256_hadd_ps(acc[4], acc[5]), t3 = _mm256_hadd_ps(acc[6], acc[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  // u0 = [sums of acc 0..3 over the low 128 bits | over the high 128 bits], u1 likewise for 4..7.
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

FATHOM_AVX2_FMA inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

FATHOM_AVX2_FMA inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^x for x <= 0; inputs below -87 give ~1e-38, masked off by callers.
FATHOM_AVX2_FMA inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n built in the exponent field; n >= -126 because x >= -87.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Scores of one query row against 8 keys.
FATHOM_AVX2_FMA inline __m256 scores8(const float* q, const float* const* k, int64_t dk) {
  __m256 acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t d = 0; d < dk; d += 8) {
    const __m256 qd = _mm256_loadu_ps(q + d);
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k[j] + d), acc[j]);
  }
  return reduce8(acc);
}

// Lanes [0, n) set, n clamped to 0..8.
FATHOM_AVX2_FMA inline __m256 lane_mask(int n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes));
}

// o[0 .. 8*U) = o * correction + sum_j p[j] * v_j, U registers of outputs held across keys.
template <int U>
FATHOM_AVX2_FMA inline void accumulate_values(float* o, const float* const* v, int64_t offset, const float* p,
                                              int n_keys, __m256 correction) {
  __m256 acc[U];
  for (int u = 0; u < U; ++u) acc[u] = _mm256_mul_ps(_mm256_loadu_ps(o + 8 * u), correction);
  for (int j = 0; j < n_keys; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    for (int u = 0; u < U; ++u) acc[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v[j] + offset + 8 * u), acc[u]);
  }
  for (int u = 0; u < U; ++u) _mm256_storeu_ps(o + 8 * u, acc[u]);
}

FATHOM_AVX2_FMA void tile_avx2_impl(const KeyTile& tile, const RowTile& rows) {
  // Keys past n_keys point at the last valid key (in bounds); their scores are masked off.
  const float* k[kTileKeys];
  const float* v[kTileKeys];
  for (int j = 0; j < kTileKeys; ++j) {
    const int jj = std::min(j, tile.n_keys - 1);
    k[j] = tile.k + jj * tile.k_stride;
    v[j] = tile.v + jj * tile.v_stride;
  }
  const bool two_halves = tile.n_keys > 8;
  const __m256 minus_inf = _mm256_set1_ps(-INFINITY), scale = _mm256_set1_ps(rows.scale);
  alignas(32) float p[kTileKeys];
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const int n_visible = rows.n_visible[r];
    if (n_visible <= 0) continue;
    const float* q = rows.q + r * rows.dk;
    const __m256 mask_lo = lane_mask(n_visible), mask_hi = lane_mask(n_visible - 8);
    const __m256 s_lo = _mm256_blendv_ps(minus_inf, _mm256_mul_ps(scores8(q, k, rows.dk), scale), mask_lo);
    const __m256 s_hi = two_halves && n_visible > 8 ? _mm256_blendv_ps(minus_inf, _mm256_mul_ps(scores8(q, k + 8, rows.dk), scale), mask_hi) : minus_inf;
    const float m_old = rows.m[r];
    const float m_new = std::max(m_old, hmax8(_mm256_max_ps(s_lo, s_hi)));
    const float correction = std::exp(m_old - m_new);  // 0 for the first tile (m = -inf)
    const __m256 shift = _mm256_set1_ps(m_new);
    const __m256 w_lo = _mm256_and_ps(mask_lo, exp8(_mm256_sub_ps(s_lo, shift)));
    const __m256 w_hi = _mm256_and_ps(mask_hi, exp8(_mm256_sub_ps(s_hi, shift)));
    rows.l[r] = rows.l[r] * correction + hsum8(_mm256_add_ps(w_lo, w_hi));
    rows.m[r] = m_new;
    _mm256_store_ps(p, w_lo);
    _mm256_store_ps(p + 8, w_hi);
    float* o = rows.o + r * rows.dv;
    const __m256 corr = _mm256_set1_ps(correction);
    int64_t d = 0;
    for (; d + 64 <= rows.dv; d += 64) accumulate_values<8>(o + d, v, d, p, n_visible, corr);
    for (; d < rows.dv; d += 8) accumulate_values<1>(o + d, v, d, p, n_visible, corr);
  }
}

FATHOM_AVX2 void convert_avx2_impl(DType t, const uint8_t* src, float* dst, int64_t n) {
  const auto* h = reinterpret_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (t == DType::F16) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
    return;
  }
  FATHOM_CHECK(t == DType::BF16);
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
}

}  // namespace

TileFn tile_avx2() { return tile_avx2_impl; }
ConvertFn convert_avx2() { return convert_avx2_impl; }

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
TileFn tile_avx2() { return nullptr; }
ConvertFn convert_avx2() { return nullptr; }
}  // namespace fathom::cpu::detail

#endif
