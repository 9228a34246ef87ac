// AVX-512 attention tile: one 16-lane register holds a query row's scores against the tile's
// 16 keys. Scores come from 16 per-key accumulators over the head width, folded into one
// register by a transpose-and-add tree; softmax weights use a vector exp (Cephes polynomial,
// ~1 ulp); the weighted value sum keeps up to 128 output floats in registers per pass.
// Built with per-function target attributes; used only when the caller's Isa is kAvx512.
#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_internal.h"
#include "core/fp16.h"
#include "core/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/exp_avx512.h"
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

// Lane j of the result = horizontal sum of acc[j].
FATHOM_AVX512_FLOAT inline __m512 reduce16(const __m512* acc) {
  __m512 r8[8];
  for (int i = 0; i < 8; ++i)  // 128-bit lanes: [a0+a2, a1+a3, b0+b2, b1+b3] with a = acc[i], b = acc[i+8]
    r8[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[i], acc[i + 8], 0x44), _mm512_shuffle_f32x4(acc[i], acc[i + 8], 0xEE));
  __m512 r4[4];
  for (int i = 0; i < 4; ++i)  // lanes hold 4 partial sums each of acc[i], acc[i+8], acc[i+4], acc[i+12]
    r4[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r8[i], r8[i + 4], 0x88), _mm512_shuffle_f32x4(r8[i], r8[i + 4], 0xDD));
  const __m512 r2a = _mm512_add_ps(_mm512_unpacklo_ps(r4[0], r4[1]), _mm512_unpackhi_ps(r4[0], r4[1]));
  const __m512 r2b = _mm512_add_ps(_mm512_unpacklo_ps(r4[2], r4[3]), _mm512_unpackhi_ps(r4[2], r4[3]));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(r2a, r2b, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(r2a, r2b, _MM_SHUFFLE(3, 2, 3, 2)));
  // 128-bit lanes now hold sums of acc[0..3], acc[8..11], acc[4..7], acc[12..15].
  return _mm512_shuffle_f32x4(r, r, 0xD8);
}

// For NR rows r (outputs at o + r * o_stride, weights at p + r * kTileKeys, correction[r]):
// o[0 .. 16*U) = o * correction + sum_j p[j] * v_j, U registers of outputs per row held across
// keys. Two rows share each value load: one row alone was bound by its loads (9 per 8 products).
// Keys past a row's visible ones carry weight 0 (the softmax pass masks them), so rows may run
// over the longest of their ranges.
template <int NR, int U>
FATHOM_AVX512_FLOAT inline void accumulate_values(float* o, int64_t o_stride, const float* const* v, int64_t offset,
                                                  const float* p, const float* correction, int n_keys) {
  __m512 acc[NR][U];
  for (int r = 0; r < NR; ++r)
    for (int u = 0; u < U; ++u) acc[r][u] = _mm512_mul_ps(_mm512_loadu_ps(o + r * o_stride + 16 * u), _mm512_set1_ps(correction[r]));
  for (int j = 0; j < n_keys; ++j) {
    __m512 w[NR];
    for (int r = 0; r < NR; ++r) w[r] = _mm512_set1_ps(p[r * kTileKeys + j]);
    for (int u = 0; u < U; ++u) {
      const __m512 vj = _mm512_loadu_ps(v[j] + offset + 16 * u);
      for (int r = 0; r < NR; ++r) acc[r][u] = _mm512_fmadd_ps(w[r], vj, acc[r][u]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int u = 0; u < U; ++u) _mm512_storeu_ps(o + r * o_stride + 16 * u, acc[r][u]);
}

// Rows are taken kRowChunk at a time in three passes (scores, softmax, weighted values) rather
// than one row start to finish: a row's steps form one long dependency chain (scores -> max ->
// correction -> rescaled outputs), and separate passes give the core independent rows to overlap.
constexpr int kRowChunk = 16;

// acc[j] = the lane-wise products of q and key j, summed over the head width. kStride > 0: the
// keys are kStride floats apart from k[0] (a full tile of a converted cache), so each key is an
// immediate offset from one register; with a pointer per key the 16 pointers did not fit in
// registers and every product reloaded one from the stack.
template <int64_t kStride>
FATHOM_AVX512_FLOAT inline void key_products(const float* q, const float* const* k, int64_t dk, __m512* acc) {
  for (int j = 0; j < kTileKeys; ++j) acc[j] = _mm512_setzero_ps();
  if constexpr (kStride > 0) {
    const float* k0 = k[0];
    for (int64_t d = 0; d < dk; d += 16) {
      const __m512 qd = _mm512_loadu_ps(q + d);
      for (int j = 0; j < kTileKeys; ++j) acc[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k0 + j * kStride + d), acc[j]);
    }
  } else {
    for (int64_t d = 0; d < dk; d += 16) {
      const __m512 qd = _mm512_loadu_ps(q + d);
      for (int j = 0; j < kTileKeys; ++j) acc[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k[j] + d), acc[j]);
    }
  }
}

template <int64_t kStride>
FATHOM_AVX512_FLOAT void tile_avx512_rows(const KeyTile& tile, const RowTile& rows) {
  // Keys past n_keys point at the last valid key (in bounds); their scores are masked off.
  const float* k[kTileKeys];
  const float* v[kTileKeys];
  for (int j = 0; j < kTileKeys; ++j) {
    const int jj = std::min(j, tile.n_keys - 1);
    k[j] = tile.k + jj * tile.k_stride;
    v[j] = tile.v + jj * tile.v_stride;
  }
  alignas(64) float p[kRowChunk][kTileKeys];  // scores, then weights
  alignas(64) float m_old[kRowChunk] = {}, m_new[kRowChunk] = {}, sums[kRowChunk] = {}, corrections[kRowChunk];
  for (int64_t r0 = 0; r0 < rows.n_rows; r0 += kRowChunk) {
    const int n = static_cast<int>(std::min<int64_t>(kRowChunk, rows.n_rows - r0));
    for (int i = 0; i < n; ++i) {
      const int n_visible = rows.n_visible[r0 + i];
      if (n_visible <= 0) continue;
      __m512 acc[kTileKeys];
      key_products<kStride>(rows.q + (r0 + i) * rows.dk, k, rows.dk, acc);
      const __mmask16 visible = static_cast<__mmask16>((1u << n_visible) - 1u);
      const __m512 scores = _mm512_mask_blend_ps(visible, _mm512_set1_ps(-INFINITY),
                                                 _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(rows.scale)));
      _mm512_store_ps(p[i], scores);
    }
    for (int i = 0; i < n; ++i) {
      const int n_visible = rows.n_visible[r0 + i];
      m_old[i] = m_new[i] = rows.m[r0 + i];
      if (n_visible <= 0) continue;
      const __m512 scores = _mm512_load_ps(p[i]);
      m_new[i] = std::max(m_old[i], _mm512_reduce_max_ps(scores));
      const __mmask16 visible = static_cast<__mmask16>((1u << n_visible) - 1u);
      const __m512 weights = _mm512_maskz_mov_ps(visible, exp16(_mm512_sub_ps(scores, _mm512_set1_ps(m_new[i]))));
      sums[i] = _mm512_reduce_add_ps(weights);
      _mm512_store_ps(p[i], weights);
    }
    // The corrections e^(m_old - m_new) of the chunk in one vector: 0 where m_old = -inf (the
    // row's first visible tile), 1 for rows that see nothing here (m unchanged).
    const __mmask16 first = _mm512_cmp_ps_mask(_mm512_load_ps(m_old), _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    _mm512_store_ps(corrections, _mm512_maskz_mov_ps(static_cast<__mmask16>(~first),
                                                     exp16(_mm512_sub_ps(_mm512_load_ps(m_old), _mm512_load_ps(m_new)))));
    for (int i = 0; i < n; ++i) {
      const int n_visible = rows.n_visible[r0 + i];
      if (n_visible <= 0) continue;
      rows.l[r0 + i] = rows.l[r0 + i] * corrections[i] + sums[i];
      rows.m[r0 + i] = m_new[i];
    }
    for (int i = 0; i < n;) {
      const int n_visible = rows.n_visible[r0 + i];
      if (n_visible <= 0) {
        ++i;
        continue;
      }
      float* o = rows.o + (r0 + i) * rows.dv;
      int64_t d = 0;
      if (i + 1 < n && rows.n_visible[r0 + i + 1] > 0 && rows.dv % 64 == 0) {
        const int keys = std::max(n_visible, rows.n_visible[r0 + i + 1]);
        for (; d < rows.dv; d += 64) accumulate_values<2, 4>(o + d, rows.dv, v, d, p[i], corrections + i, keys);
        i += 2;
        continue;
      }
      for (; d + 128 <= rows.dv; d += 128) accumulate_values<1, 8>(o + d, rows.dv, v, d, p[i], corrections + i, n_visible);
      for (; d < rows.dv; d += 16) accumulate_values<1, 1>(o + d, rows.dv, v, d, p[i], corrections + i, n_visible);
      ++i;
    }
  }
}

FATHOM_AVX512_FLOAT void tile_avx512_impl(const KeyTile& tile, const RowTile& rows) {
  // The same products in the same order either way (bit-identical).
  if (tile.n_keys == kTileKeys) switch (tile.k_stride) {  // a converted head of width 128; f32 caches of 1, 2 or 4 such heads
      case 128: return tile_avx512_rows<128>(tile, rows);
      case 256: return tile_avx512_rows<256>(tile, rows);
      case 512: return tile_avx512_rows<512>(tile, rows);
      default: break;
    }
  tile_avx512_rows<0>(tile, rows);
}

// f16/bf16 -> f32, 16 values per instruction (the AVX2 conversion's 8 took a third of decode
// attention's time at a 4096-token f16 cache).
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void convert_avx512_impl(DType t, const uint8_t* src,
                                                                                          float* dst, int64_t n) {
  const auto* h = reinterpret_cast<const uint16_t*>(src);
  int64_t i = 0;
  if (t == DType::F16) {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
    for (; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
    return;
  }
  FATHOM_CHECK(t == DType::BF16);
  for (; i + 16 <= n; i += 16) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
}

}  // namespace

TileFn tile_avx512() { return tile_avx512_impl; }
ConvertFn convert_avx512() { return convert_avx512_impl; }

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
TileFn tile_avx512() { return nullptr; }
ConvertFn convert_avx512() { return nullptr; }
}  // namespace fathom::cpu::detail

#endif
