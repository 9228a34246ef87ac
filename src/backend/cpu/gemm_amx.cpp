// AMX kernels of gemm.h on repacked x16 weights (repack.h), for products of kAmxMinTokens or
// more tokens: prefill and multi-sequence decode. The x16 layout needs no second copy for the
// tiles: its vector g of a block (4 values of each of 16 rows, 64 bytes) is row g of the B
// operand of TDPBSUD, and the quantized tokens' rows are the A operand as they lie in memory
// (signed bytes, stride n). One TDPBSUD per (sub-)block and 16 tokens gives the int32 sum of
// every (token, row) pair of the block; the AVX-512 epilogue then applies the block's scales
// exactly as gemm_int_generic does (f = sum * xd; acc = fma(f, scale, acc); acc = fma(corr, xs,
// acc)), so the results are bit-identical to the reference and to the VNNI kernels, and a
// token's result still does not depend on its batch. K-quant and nibble blocks are decoded once
// per block by the shared AVX-512 code (gemm_x16_avx512.h) into a 512-byte B tile.
//
// Tiles: tmm0/tmm1 the int32 sums of two 16-token tiles, tmm2/tmm3 their tokens, tmm4 the block's
// weights, shared by both. Tokens are taken 16 at a time in one configuration and the remainder
// (< 16) in a second pass over the group with its own.
#include <cstdint>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"

#if defined(__x86_64__)
#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/gemm_x16_avx512.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

constexpr int kC0 = 0, kC1 = 1, kA0 = 2, kA1 = 3, kB = 4;

// Token tiles of m rows against weight blocks of `block` values (32, or q6_K's 16).
TileConfig tile_config(int m, int64_t block) {
  TileConfig c;
  for (int t : {kC0, kC1}) {
    c.rows[t] = static_cast<uint8_t>(m);
    c.colsb[t] = kTileMaxColsb;  // 16 int32 sums: the 16 rows of the group
  }
  for (int t : {kA0, kA1}) {
    c.rows[t] = static_cast<uint8_t>(m);
    c.colsb[t] = static_cast<uint16_t>(block);  // one block of the token's int8 values
  }
  c.rows[kB] = static_cast<uint8_t>(block / 4);
  c.colsb[kB] = kTileMaxColsb;
  return c;
}

// Token t's row of y (the accumulator, 16 lanes = rows) += block b's contribution from its
// int32 sums, in gemm_int_generic's order.
FATHOM_AMX inline void accumulate(const int32_t* sums, __m512 s, __m512 c, const GemmActivations& x, int64_t t,
                                  int64_t b, __mmask16 rows, float* y_row) {
  const int64_t nb = x.n / x.block;
  const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums)), _mm512_set1_ps(x.xd[t * nb + b]));
  __m512 acc = _mm512_maskz_loadu_ps(rows, y_row);
  acc = _mm512_fmadd_ps(f, s, acc);
  acc = _mm512_fmadd_ps(c, _mm512_set1_ps(x.xs[t * nb + b]), acc);
  _mm512_mask_storeu_ps(y_row, rows, acc);
}

// Tokens [t_begin, t_end) in tiles of m (t_end - t_begin a multiple of m), over every block.
// flatten: the per-block decoding inlined whole, as in the VNNI kernels (gemm_avx512.cpp).
template <class Tiles>
__attribute__((flatten)) FATHOM_AMX void token_pass(Tiles& tiles, DType type, const uint8_t* grp, const GemmActivations& x, int64_t t_begin,
                           int64_t t_end, int m, __mmask16 rows, float* y, int64_t y_stride) {
  tiles.configure(tile_config(m, x.block));
  alignas(64) uint8_t weights[8 * 64];                   // B: block / 4 rows of 64 bytes
  alignas(64) int32_t sums[2][kTileMaxRows][16];         // C0, C1 stored
  const int64_t pf = t_begin == 0 ? kDecodePrefetchBytes : 0;
  for_each_x16_block(type, grp, x.n, pf, [&](const __m512i* w, auto ng, __m512 s, __m512 c, int64_t b) FATHOM_AMX {
    for (int g = 0; g < ng; ++g) _mm512_store_si512(weights + 64 * g, w[g]);
    tiles.template load<kB>(weights, 64);
    for (int64_t t0 = t_begin; t0 < t_end; t0 += 2 * m) {
      const bool two = t0 + m < t_end;
      const int8_t* q = x.q + t0 * x.n + b * x.block;
      tiles.template zero<kC0>();
      tiles.template load<kA0>(q, x.n);
      tiles.template dpbsud<kC0, kA0, kB>();
      if (two) {
        tiles.template zero<kC1>();
        tiles.template load<kA1>(q + m * x.n, x.n);
        tiles.template dpbsud<kC1, kA1, kB>();
      }
      tiles.template store<kC0>(sums[0], 64);
      if (two) tiles.template store<kC1>(sums[1], 64);
      for (int i = 0; i < (two ? 2 * m : m); ++i)
        accumulate(sums[i / m][i % m], s, c, x, t0 + i, b, rows, y + (t0 + i) * y_stride);
    }
  });
}

template <class Tiles>
FATHOM_AMX void gemm_x16_tiles(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                               int64_t y_stride) {
  if (gemm_block(type) == 0 || x.n_tokens < kAmxMinTokens) return gemm_x16_avx512(type, group, x, n_rows, y, y_stride);
  const __mmask16 rows = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int64_t t = 0; t < x.n_tokens; ++t) _mm512_mask_storeu_ps(y + t * y_stride, rows, _mm512_setzero_ps());
  Tiles tiles;
  const int64_t full = x.n_tokens / kTileMaxRows * kTileMaxRows;
  if (full > 0) token_pass(tiles, type, group, x, 0, full, kTileMaxRows, rows, y, y_stride);
  if (full < x.n_tokens)
    token_pass(tiles, type, group, x, full, x.n_tokens, static_cast<int>(x.n_tokens - full), rows, y, y_stride);
  tiles.release();
}

}  // namespace

void install_gemm_amx(Kernels& k, bool emulated) {
  k.gemm_x16 = emulated ? gemm_x16_tiles<EmulatedTiles> : gemm_x16_tiles<AmxTiles>;
}

}  // namespace fathom::cpu::detail

#else

namespace fathom::cpu::detail {
void install_gemm_amx(Kernels&, bool) {}
}  // namespace fathom::cpu::detail

#endif
