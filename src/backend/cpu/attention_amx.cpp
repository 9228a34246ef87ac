// AMX attention (attention_internal.h): flash attention over a packed KV head with bf16 tiles.
//
// A work item's query rows (up to kTileItemRows, padded to pairs of 16-row tiles) are rounded to
// bf16 once, as A tiles. The positions are then taken kBlock at a time:
//   S = Q K^T     TDPBF16PS, 2 row tiles x 2 groups of 16 positions per pass (tmm0..3 the sums,
//                 tmm4/5 the queries, tmm6/7 the keys), stored as f32 [rows, kBlock];
//   softmax       per row in AVX-512: scale, causal mask, running max, e^x (exp_avx512.h), the
//                 weights rounded to bf16 as P [rows, kBlock], the running denominator summed from
//                 the rounded weights (so it normalises exactly the weights the product uses), and
//                 the row's output rescaled when its max grew;
//   O += P V      TDPBF16PS, 2 row tiles x 2 groups of 16 output columns per pass, the outputs
//                 loaded into tmm0..3 from the f32 [rows, dv] buffer and stored back per block.
// Every row's result depends only on its own query, its visible positions and the fixed block
// boundaries (multiples of kBlock from position 0), never on the other rows of the item or of the
// batch. The error against the f32 reference comes from the bf16 roundings of q, k, p and v (each
// 2^-9 relative) and is bounded in tests/kernels/attention_test.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/cpu/attention_internal.h"

#if defined(__x86_64__)
#include "backend/cpu/aligned_scratch.h"
#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/bf16_avx512.h"
#include "backend/cpu/exp_avx512.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

constexpr int64_t kTileValues = kTileMaxRows * kTileMaxColsb / 2;  // bf16 values per tile (512)
constexpr int64_t kBlock = 128;  // positions per softmax step; a multiple of kPackPositions
static_assert(kBlock % kPackPositions == 0 && kTileItemRows % 32 == 0);

TileConfig full_tiles() {
  TileConfig c;
  for (int t = 0; t < kTileRegisters; ++t) {
    c.rows[t] = kTileMaxRows;
    c.colsb[t] = kTileMaxColsb;
  }
  return c;
}

FATHOM_AMX void pack_impl(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t dk, int64_t dv,
                          uint16_t* keys, uint16_t* values) {
  // Keys: row i of tile (g, c) pairs values 32c + 2i and 32c + 2i + 1 of the group's 16 positions.
  for (int64_t g = 0; g < kPackPositions / 16; ++g)
    for (int64_t c = 0; c < dk / 32; ++c)
      bf16_pairs_tile<false>(k + g * 16 * k_stride + 32 * c, k_stride, keys + (g * (dk / 32) + c) * kTileValues);
  // Values: row i of tile d pairs positions 2i and 2i + 1 over 16 columns.
  for (int64_t d = 0; d < dv / 16; ++d) {
    uint16_t* tile = values + d * kTileValues;
    for (int64_t i = 0; i < 16; ++i) {
      const __m512 f0 = _mm512_loadu_ps(v + 2 * i * v_stride + 16 * d), f1 = _mm512_loadu_ps(v + (2 * i + 1) * v_stride + 16 * d);
      _mm512_store_si512(tile + i * 32, bf16_pairs<false>(f0, f1));
    }
  }
}

// The lanes [0, 16) of a 16-value chunk starting `first` values into a row with n_visible
// visible values.
inline __mmask16 visible_lanes(int64_t first, int64_t n_visible) {
  const int64_t n = std::clamp<int64_t>(n_visible - first, 0, 16);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// C tiles 0..3 = (row tile 0, 1) x (column group 0, 1) over `steps` steps of 32 summed values:
// A tiles of the two row tiles at a[0/1] + step * a_step (stride a_stride bytes), B tiles of the
// two column groups at b[0/1] + step * b_step (64-byte rows).
template <class Tiles>
FATHOM_AMX inline void product_2x2(Tiles& tiles, const uint16_t* const* a, int64_t a_step, int64_t a_stride,
                                   const uint16_t* const* b, int64_t b_step, int64_t steps) {
  for (int64_t j = 0; j < steps; ++j) {
    tiles.template load<4>(a[0] + j * a_step, a_stride);
    tiles.template load<6>(b[0] + j * b_step, kTileMaxColsb);
    tiles.template dpbf16ps<0, 4, 6>();
    tiles.template load<7>(b[1] + j * b_step, kTileMaxColsb);
    tiles.template dpbf16ps<1, 4, 7>();
    tiles.template load<5>(a[1] + j * a_step, a_stride);
    tiles.template dpbf16ps<2, 5, 6>();
    tiles.template dpbf16ps<3, 5, 7>();
  }
}

// Stores (or loads) C tiles 0..3 of a 32 x 32 block at c (f32, `stride` floats per row).
template <class Tiles>
FATHOM_AMX inline void store_2x2(Tiles& tiles, float* c, int64_t stride) {
  const int64_t bytes = stride * static_cast<int64_t>(sizeof(float));
  tiles.template store<0>(c, bytes);
  tiles.template store<1>(c + 16, bytes);
  tiles.template store<2>(c + 16 * stride, bytes);
  tiles.template store<3>(c + 16 * stride + 16, bytes);
}
template <class Tiles>
FATHOM_AMX inline void load_2x2(Tiles& tiles, const float* c, int64_t stride) {
  const int64_t bytes = stride * static_cast<int64_t>(sizeof(float));
  tiles.template load<0>(c, bytes);
  tiles.template load<1>(c + 16, bytes);
  tiles.template load<2>(c + 16 * stride, bytes);
  tiles.template load<3>(c + 16 * stride + 16, bytes);
}

// Softmax of one row's scores over a block: s (f32 raw q.k, nk values), n_visible of them
// visible; writes the bf16 weights to p and updates the running max, denominator and output.
FATHOM_AMX inline void softmax_row(float* s, uint16_t* p, int64_t nk, int64_t n_visible, float scale, float& m, float& l,
                                   float* o, int64_t dv) {
  if (n_visible <= 0) {
    std::memset(p, 0, static_cast<size_t>(nk) * sizeof(uint16_t));
    return;
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < nk; j += 16) {
    const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s + j), vscale);
    _mm512_storeu_ps(s + j, x);
    mx = _mm512_mask_max_ps(mx, visible_lanes(j, n_visible), mx, x);
  }
  const float m_new = std::max(m, _mm512_reduce_max_ps(mx));
  const float correction = std::exp(m - m_new);  // 0 for the first visible block (m = -inf)
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < nk; j += 32) {
    const __m512 e0 = _mm512_maskz_mov_ps(visible_lanes(j, n_visible), exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm)));
    const __m512 e1 = _mm512_maskz_mov_ps(visible_lanes(j + 16, n_visible), exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), vm)));
    const __m512i b0 = bf16_bits(e0), b1 = bf16_bits(e1);
    sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(b0, 16)));
    sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(b1, 16)));
    _mm512_storeu_si512(p + j, bf16_concat(b0, b1));
  }
  l = l * correction + _mm512_reduce_add_ps(sum);
  m = m_new;
  if (correction != 1.0f) {
    const __m512 c = _mm512_set1_ps(correction);
    for (int64_t d = 0; d < dv; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), c));
  }
}

template <class Tiles>
FATHOM_AMX void attention_impl(const PackedKv& kv, const TileRows& rows) {
  const int64_t dk = rows.dk, dv = rows.dv, k_chunks = dk / 32, v_chunks = dv / 16;
  const int64_t padded = (rows.n_rows + 31) / 32 * 32, n_row_tiles = padded / 16;
  // Per-thread buffers, grown as needed.
  static thread_local AlignedScratch<uint16_t> q_buf, p_buf;
  static thread_local AlignedScratch<float> s_buf, o_buf, state_buf;
  static thread_local AlignedScratch<int32_t> n_kv_buf;
  uint16_t* qa = q_buf.get(static_cast<size_t>(padded * dk));  // A tiles: [row tile][chunk][16 x 32]
  uint16_t* p = p_buf.get(static_cast<size_t>(padded * kBlock));
  float* s = s_buf.get(static_cast<size_t>(padded * kBlock));
  float* o = o_buf.get(static_cast<size_t>(padded * dv));
  float* m = state_buf.get(static_cast<size_t>(2 * padded));
  float* l = m + padded;
  int32_t* n_kv = n_kv_buf.get(static_cast<size_t>(padded));
  int64_t kv_end = 0;
  for (int64_t r = 0; r < padded; ++r) {
    n_kv[r] = r < rows.n_rows ? rows.n_kv[r] : 0;
    kv_end = std::max<int64_t>(kv_end, n_kv[r]);
    m[r] = -INFINITY;
    l[r] = 0.0f;
    for (int64_t c = 0; c < k_chunks; ++c) {
      uint16_t* dst = qa + ((r / 16) * k_chunks + c) * kTileValues + (r % 16) * 32;
      if (r >= rows.n_rows) {
        std::memset(dst, 0, 32 * sizeof(uint16_t));
        continue;
      }
      const float* src = rows.q + r * dk + 32 * c;
      _mm512_store_si512(dst, bf16_concat(bf16_bits(_mm512_loadu_ps(src)), bf16_bits(_mm512_loadu_ps(src + 16))));
    }
  }
  std::fill_n(o, padded * dv, 0.0f);
  Tiles tiles;
  tiles.configure(full_tiles());
  for (int64_t p0 = 0; p0 < kv_end; p0 += kBlock) {
    const int64_t nk = std::min(kBlock, (kv_end - p0 + kPackPositions - 1) / kPackPositions * kPackPositions);
    // S = Q K^T over positions [p0, p0 + nk).
    for (int64_t rt = 0; rt < n_row_tiles; rt += 2) {
      const uint16_t* a[2] = {qa + rt * k_chunks * kTileValues, qa + (rt + 1) * k_chunks * kTileValues};
      for (int64_t kg = 0; kg < nk / 16; kg += 2) {
        const int64_t g = p0 / 16 + kg;
        const uint16_t* b[2] = {kv.keys + g * k_chunks * kTileValues, kv.keys + (g + 1) * k_chunks * kTileValues};
        tiles.template zero<0>();
        tiles.template zero<1>();
        tiles.template zero<2>();
        tiles.template zero<3>();
        product_2x2(tiles, a, kTileValues, kTileMaxColsb, b, kTileValues, k_chunks);
        store_2x2(tiles, s + rt * 16 * kBlock + kg * 16, kBlock);
      }
    }
    for (int64_t r = 0; r < padded; ++r)
      softmax_row(s + r * kBlock, p + r * kBlock, nk, n_kv[r] - p0, rows.scale, m[r], l[r], o + r * dv, dv);
    // O += P V over the same positions.
    for (int64_t rt = 0; rt < n_row_tiles; rt += 2) {
      const uint16_t* a[2] = {p + rt * 16 * kBlock, p + (rt + 1) * 16 * kBlock};
      for (int64_t d = 0; d < v_chunks; d += 2) {
        const uint16_t* b[2] = {kv.values + ((p0 / 32) * v_chunks + d) * kTileValues,
                                kv.values + ((p0 / 32) * v_chunks + d + 1) * kTileValues};
        float* c = o + rt * 16 * dv + d * 16;
        load_2x2(tiles, c, dv);
        product_2x2(tiles, a, 32, kBlock * static_cast<int64_t>(sizeof(uint16_t)), b, v_chunks * kTileValues, nk / 32);
        store_2x2(tiles, c, dv);
      }
    }
  }
  tiles.release();
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / l[r]);  // > 0: position 0 is visible to every row
    for (int64_t d = 0; d < dv; d += 16)
      _mm512_storeu_ps(rows.out + r * dv + d, _mm512_mul_ps(_mm512_loadu_ps(o + r * dv + d), inv));
  }
}

}  // namespace

PackFn pack_tiles() { return pack_impl; }
TileAttentionFn tile_attention(bool emulated) {
  return emulated ? attention_impl<EmulatedTiles> : attention_impl<AmxTiles>;
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
PackFn pack_tiles() { return nullptr; }
TileAttentionFn tile_attention(bool) { return nullptr; }
}  // namespace fathom::cpu::detail

#endif
