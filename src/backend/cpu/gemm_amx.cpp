// AMX kernels of gemm.h on repacked x16 weights (repack.h), for products of kAmxMinTokens or
// more tokens (prefill and multi-sequence decode), in two paths.
//
// The integer path (kAmxMinTokens .. kAmxBf16MinTokens - 1 tokens), bit-exact with the reference:
// a block's x16 vector g (4 values of 16 rows, 64 bytes) is row g of the B operand of TDPBSUD;
// the tokens' int8 rows, tiled by gemm_many (GemmActivations::qt: 16 tokens x one block, 512
// contiguous bytes), are the A operand. One TDPBSUD per (sub-)block and 16 tokens gives the int32
// sums of every (token, row) pair of the block; the AVX-512 epilogue applies the block's scales as
// gemm_int_generic does (f = sum * xd; acc = fma(f, scale, acc); acc = fma(corr, xs, acc)), so a
// token's result equals the reference's and the VNNI kernels' whatever its batch. Per call the
// group's blocks are decoded once into a per-thread buffer; each 16-token tile then runs over
// them with its 16 accumulators in registers, two blocks in flight (block b + 1's product queued
// before block b's sums are stored and applied). Measured on a Sapphire Rapids-class Xeon: the
// per-block TILESTORED and the 4 vector operations per token and block bound it (the tile unit
// and the epilogue's FP work barely overlap), at about 1.4x the VNNI kernel.
//
// The BF16 path (kAmxBf16MinTokens or more): weights and tokens rounded to bf16, TDPBF16PS sums
// in f32 over the whole row inside the tile; no per-block epilogue. Within a stated bound of the
// reference (gemm.h, tests/kernels/gemm_test.cpp), not bit-exact; a token's result does not
// depend on the other tokens of a batch that takes this path. See bf16_range below. A SwiGLU
// FFN's gate and up matrices run as (gate, up) pairs of groups whose epilogue writes
// swiglu(gate, up) as the down product's bf16 token tiles (swiglu_range, gemm.h gemm_swiglu).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"
#include "quant/quant.h"

#if defined(__x86_64__)
#include "backend/cpu/aligned_scratch.h"
#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/bf16_avx512.h"
#include "backend/cpu/exp_avx512.h"
#include "backend/cpu/gemm_x16_avx512.h"
#include "backend/cpu/repack.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

constexpr int kTile = kTileMaxRows;  // tokens per tile
constexpr int kC = 0, kA = 2, kB = 4;   // tmm0/1: sums, tmm2/3: token tiles, tmm4/5: weights

// Token tiles of 16 tokens against one group's weight blocks of `block` values (32, or q6_K's
// 16), two blocks in flight.
TileConfig tile_config(int64_t block) {
  TileConfig c;
  for (int t : {kC, kC + 1}) {
    c.rows[t] = kTile;
    c.colsb[t] = kTileMaxColsb;  // 16 int32 sums: the 16 rows of the group
  }
  for (int t : {kA, kA + 1}) {
    c.rows[t] = kTile;
    c.colsb[t] = static_cast<uint16_t>(block);  // one block of each token's int8 values
  }
  for (int t : {kB, kB + 1}) {
    c.rows[t] = static_cast<uint8_t>(block / 4);
    c.colsb[t] = kTileMaxColsb;
  }
  return c;
}

// Per-thread scratch, grown as needed and 64-byte aligned.
using Scratch = AlignedScratch<uint8_t>;

// A decoded group: block b's B tile at w + b * wbytes, its scale and corr at s/c + 16 b.
struct Decoded {
  const uint8_t* w = nullptr;
  const float* s = nullptr;
  const float* c = nullptr;
  int64_t wbytes = 0;
};

// flatten: the per-block decoding inlined whole, as in the VNNI kernels (gemm_avx512.cpp).
__attribute__((flatten)) FATHOM_AMX Decoded decode_group(DType type, const uint8_t* grp, int64_t n, int64_t block,
                                                         Scratch& scratch) {
  const int64_t nb = n / block, wbytes = block * kGemmRows;
  uint8_t* base = scratch.get(static_cast<size_t>(nb * (wbytes + 2 * 64)));
  uint8_t* w = base;
  float* s = reinterpret_cast<float*>(base + nb * wbytes);
  float* c = s + nb * 16;
  for_each_x16_block(type, grp, n, kDecodePrefetchBytes, [&](const __m512i* v, auto ng, __m512 sv, __m512 cv, int64_t b) FATHOM_AMX {
    for (int g = 0; g < ng; ++g) _mm512_store_si512(w + b * wbytes + 64 * g, v[g]);
    _mm512_store_ps(s + 16 * b, sv);
    _mm512_store_ps(c + 16 * b, cv);
  });
  return {w, s, c, wbytes};
}

// One tile of 16 tokens in the tiled layout (gemm.h, GemmActivations::qt): block b's int8 rows
// at q + b * 16 * block, its scales at xd/xs + 16 b; m of the 16 are real tokens.
struct TokenTile {
  const int8_t* q = nullptr;
  const float* xd = nullptr;
  const float* xs = nullptr;
  int m = 0;
  float* y = nullptr;  // the first token's output row
};

// acc[i] (token i of the tile, the group's 16 rows in lanes) += block b's contribution, from the
// stored int32 sums, in gemm_int_generic's order.
FATHOM_AMX inline void apply(const int32_t (*sums)[16], const Decoded& d, const TokenTile& tk, int64_t b, __m512* acc) {
  const __m512 s = _mm512_load_ps(d.s + 16 * b), c = _mm512_load_ps(d.c + 16 * b);
  const float* xd = tk.xd + kTile * b;
  const float* xs = tk.xs + kTile * b;
#pragma GCC unroll 16
  for (int i = 0; i < kTile; ++i) {
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[i])), _mm512_set1_ps(xd[i]));
    acc[i] = _mm512_fmadd_ps(f, s, acc[i]);
    acc[i] = _mm512_fmadd_ps(c, _mm512_set1_ps(xs[i]), acc[i]);
  }
}

// Block b's tile product into sums register C (A, B its operands).
template <int C, int A, int B, class Tiles>
FATHOM_AMX inline void product(Tiles& tiles, const Decoded& d, const TokenTile& tk, int64_t a_bytes, int64_t block,
                               int64_t b) {
  tiles.template load<A>(tk.q + b * a_bytes, block);
  tiles.template load<B>(d.w + b * d.wbytes, kTileMaxColsb);
  tiles.template zero<C>();
  tiles.template dpbsud<C, A, B>();
}

// One token tile against one group, over every block, software-pipelined: block b + 1's tile
// product is queued (tmm0/tmm1 alternate, with tmm2/3 and tmm4/5 their operands) before block b's
// sums are stored and applied, so the tile unit and the vector epilogue run side by side. The 16
// accumulators stay in registers; y is written once at the end.
template <class Tiles>
FATHOM_AMX void tile_group(Tiles& tiles, const Decoded& d, int64_t nb, int64_t block, const TokenTile& tk,
                           __mmask16 rows, float* y, int64_t y_stride) {
  alignas(64) int32_t sums[2][kTile][16];
  __m512 acc[kTile];
#pragma GCC unroll 16
  for (int i = 0; i < kTile; ++i) acc[i] = _mm512_setzero_ps();
  const int64_t a_bytes = kTile * block;
  product<kC, kA, kB>(tiles, d, tk, a_bytes, block, 0);
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    product<kC + 1, kA + 1, kB + 1>(tiles, d, tk, a_bytes, block, b + 1);
    tiles.template store<kC>(sums[0], kTileMaxColsb);
    apply(sums[0], d, tk, b, acc);
    if (b + 2 < nb) product<kC, kA, kB>(tiles, d, tk, a_bytes, block, b + 2);
    tiles.template store<kC + 1>(sums[1], kTileMaxColsb);
    apply(sums[1], d, tk, b + 1, acc);
  }
  if (b < nb) {  // odd block count: the last product is in tmm0
    tiles.template store<kC>(sums[0], kTileMaxColsb);
    apply(sums[0], d, tk, b, acc);
  }
#pragma GCC unroll 16
  for (int i = 0; i < kTile; ++i)
    if (i < tk.m) _mm512_mask_storeu_ps(y + i * y_stride, rows, acc[i]);
}

// ---- The BF16 path (kAmxBf16MinTokens or more tokens) ----
// Weights and tokens rounded to bf16; TDPBF16PS sums their products in f32 over the whole row
// inside the tile, so there is no per-block epilogue: a 16-token x 16-row tile costs one
// TDPBF16PS per 32 values instead of a TDPBSUD, a TILESTORED and 16 x 4 vector operations.
// Registers: tmm0..3 the sums of 2 token tiles x 2 groups, tmm4/5 the token tiles, tmm6/7 the
// groups' weights (16 pairs of 16 rows: row p holds values 2p and 2p + 1 of every row).
constexpr int kStep = 32;  // values per TDPBF16PS

TileConfig bf16_tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = kTile;
    c.colsb[t] = kTileMaxColsb;
  }
  return c;
}

FATHOM_AMX inline __m512 float_values(DType type, const uint8_t* p) {
  if (type == DType::F16) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Values [0, n) of one group (grp: its first value's block) as bf16 B tiles at out, one of
// kTile x 64 bytes per 32 values.
template <bool kNative>
__attribute__((flatten)) FATHOM_AMX void decode_group_bf16(DType type, const uint8_t* grp, int64_t n, uint8_t* out) {
  constexpr int64_t kTileBytes = kTile * kTileMaxColsb;
  if (type == DType::F16 || type == DType::BF16) {
    for (int64_t i = 0; i < n; i += 2) {
      const __m512i v = bf16_pairs<kNative>(float_values(type, grp + i * 2 * kGemmRows), float_values(type, grp + (i + 1) * 2 * kGemmRows));
      _mm512_store_si512(out + (i / kStep) * kTileBytes + (i % kStep) / 2 * kTileMaxColsb, v);
    }
    return;
  }
  const int64_t block = gemm_block(type);
  const __m512i byte = _mm512_set1_epi32(0xff);
  for_each_x16_block(type, grp, n, kDecodePrefetchBytes, [&](const __m512i* w, auto ng, __m512 s, __m512 c, int64_t b) FATHOM_AMX {
    const int64_t first = b * block;  // the block's first value
    uint8_t* tile = out + (first / kStep) * kTileBytes + (first % kStep) / 2 * kTileMaxColsb;
    for (int g = 0; g < ng; ++g) {
      __m512 f[4];
      for (int j = 0; j < 4; ++j)
        f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(w[g], 8 * j), byte)), s, c);
      _mm512_store_si512(tile + (2 * g) * kTileMaxColsb, bf16_pairs<kNative>(f[0], f[1]));
      _mm512_store_si512(tile + (2 * g + 1) * kTileMaxColsb, bf16_pairs<kNative>(f[2], f[3]));
    }
  });
}

// Tokens [t0, t1) (their rows at x) as bf16 into the tiled layout (GemmActivations::bt).
template <bool kNative>
FATHOM_AMX void bf16_tokens(const float* x, int64_t n_tokens, int64_t n, int64_t t0, int64_t t1, uint16_t* bt) {
  const int64_t steps = n / kStep;
  const int64_t end = t1 == n_tokens ? (n_tokens + kTile - 1) / kTile * kTile : t1;
  for (int64_t t = t0; t < end; ++t) {
    uint16_t* row = bt + ((t / kTile) * steps * kTile + t % kTile) * kStep;
    for (int64_t j = 0; j < steps; ++j) {
      uint16_t* dst = row + j * kTile * kStep;
      if (t >= n_tokens) {
        std::memset(dst, 0, kStep * sizeof(uint16_t));
        continue;
      }
      const float* v = x + (t - t0) * n + j * kStep;
      if constexpr (kNative) {
        _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(v + 16), _mm512_loadu_ps(v))));
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), bf16_row16<false>(_mm512_loadu_ps(v)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16), bf16_row16<false>(_mm512_loadu_ps(v + 16)));
      }
    }
  }
}

// A sums tile's start: zero for a row's first chunk, else its partial sums.
template <int C, class Tiles>
FATHOM_AMX inline void sums_begin(Tiles& tiles, bool first, const float* acc) {
  if (first) tiles.template zero<C>();
  else tiles.template load<C>(acc, kTileMaxColsb);
}

// A sums tile's end: its partial sums kept, or after the last chunk its m x rows results in y.
template <int C, class Tiles>
FATHOM_AMX inline void sums_end(Tiles& tiles, bool last, float* acc, float* y, int m, int64_t rows, int64_t y_stride) {
  if (!last) return tiles.template store<C>(acc, kTileMaxColsb);
  if (m == kTile && rows == kGemmRows) return tiles.template store<C>(y, y_stride * static_cast<int64_t>(sizeof(float)));
  alignas(64) float buf[kTile][16];
  tiles.template store<C>(&buf[0][0], kTileMaxColsb);
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
  for (int i = 0; i < m; ++i) _mm512_mask_storeu_ps(y + i * y_stride, mask, _mm512_load_ps(buf[i]));
}

// Where the sums of one (token tile, group) pair go: the partial sums between chunks, the
// results in y after the last.
struct SumsOut {
  float* acc;
  float* y;
  int m;
  int64_t rows;
};

// Where a SwiGLU pair's results go (gemm_swiglu_range): the bf16 token tiles of the next
// product, h = bt layout of n_ff values per token; tile k's 16 values of row group rg for token i
// at h + ((k * n_ff / 32 + rg / 2) * 16 + i) * 32 + 16 (rg % 2).
struct SwigluDst {
  uint16_t* h;
  int64_t n_ff;
  int64_t first_row_group;  // the row group of the batch's first (gate, up) pair
};

// The end of a (gate, up) pair of groups after the last chunk: tmm0/1 the gate and up sums of
// token tile A0, tmm2/3 those of A1; h = swiglu(gate, up) for each token, rounded to bf16 as
// bf16_tokens rounds, at dst[ti] (token i's 16 values at dst[ti] + 32 i). All 16 tokens of a tile
// are written: padding tokens have zero sums and give 0.
template <int NT, bool kNative, class Tiles>
FATHOM_AMX void swiglu_end(Tiles& tiles, uint16_t* const* dst) {
  alignas(64) float buf[2 * NT][kTile][16];
  tiles.template store<0>(&buf[0][0][0], kTileMaxColsb);
  tiles.template store<1>(&buf[1][0][0], kTileMaxColsb);
  if constexpr (NT == 2) {
    tiles.template store<2>(&buf[2][0][0], kTileMaxColsb);
    tiles.template store<3>(&buf[3][0][0], kTileMaxColsb);
  }
  for (int ti = 0; ti < NT; ++ti)
    for (int i = 0; i < kTile; ++i) {
      const __m512 h = swiglu16(_mm512_load_ps(buf[2 * ti][i]), _mm512_load_ps(buf[2 * ti + 1][i]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[ti] + i * kStep), bf16_row16<kNative>(h));
    }
}

template <int T, bool kStream, class Tiles>
FATHOM_AMX inline void load_weights(Tiles& tiles, const uint8_t* p) {
  if constexpr (kStream) tiles.template stream_load<T>(p, kTileMaxColsb);
  else tiles.template load<T>(p, kTileMaxColsb);
}

// NT token tiles (1 or 2) x NG groups (1 or 2) over `steps` steps of 32 values: the sums stay in
// tmm0..3 over the chunk. kStreamWeights: the weight tiles are loaded with the hint that they are
// not reused soon (TILELOADDT1), for loops that keep the tokens in L1 and stream the weights.
// swiglu (NG == 2: group 0 the gate rows, group 1 the up rows): after the last chunk the pair's
// SwiGLU goes to swiglu[ti] (swiglu_end) instead of the sums to y.
template <int NT, int NG, bool kStreamWeights, class Tiles>
FATHOM_AMX void bf16_block(Tiles& tiles, const uint8_t* const* w, int64_t steps, const uint16_t* const* a,
                           const SumsOut (*out)[2], bool first, bool last, int64_t y_stride, uint16_t* const* swiglu) {
  constexpr int64_t kTileBytes = kTile * kTileMaxColsb, kTileValues = kTile * kStep;
  sums_begin<0>(tiles, first, out[0][0].acc);
  if constexpr (NG == 2) sums_begin<1>(tiles, first, out[0][1].acc);
  if constexpr (NT == 2) sums_begin<2>(tiles, first, out[1][0].acc);
  if constexpr (NT == 2 && NG == 2) sums_begin<3>(tiles, first, out[1][1].acc);
  for (int64_t j = 0; j < steps; ++j) {
    tiles.template load<4>(a[0] + j * kTileValues, kTileMaxColsb);
    load_weights<6, kStreamWeights>(tiles, w[0] + j * kTileBytes);
    tiles.template dpbf16ps<0, 4, 6>();
    if constexpr (NG == 2) {
      load_weights<7, kStreamWeights>(tiles, w[1] + j * kTileBytes);
      tiles.template dpbf16ps<1, 4, 7>();
    }
    if constexpr (NT == 2) {
      tiles.template load<5>(a[1] + j * kTileValues, kTileMaxColsb);
      tiles.template dpbf16ps<2, 5, 6>();
    }
    if constexpr (NT == 2 && NG == 2) tiles.template dpbf16ps<3, 5, 7>();
  }
  if constexpr (NG == 2) {
    if (last && swiglu != nullptr) return swiglu_end<NT, std::is_same_v<Tiles, AmxTiles>>(tiles, swiglu);
  }
  const SumsOut& o00 = out[0][0];
  sums_end<0>(tiles, last, o00.acc, o00.y, o00.m, o00.rows, y_stride);
  if constexpr (NG == 2) sums_end<1>(tiles, last, out[0][1].acc, out[0][1].y, out[0][1].m, out[0][1].rows, y_stride);
  if constexpr (NT == 2) sums_end<2>(tiles, last, out[1][0].acc, out[1][0].y, out[1][0].m, out[1][0].rows, y_stride);
  if constexpr (NT == 2 && NG == 2)
    sums_end<3>(tiles, last, out[1][1].acc, out[1][1].y, out[1][1].m, out[1][1].rows, y_stride);
}

// Token tile k's values from v0 on in the tiled layout (GemmActivations::bt).
inline const uint16_t* token_tile(const GemmActivations& x, int64_t k, int64_t v0) {
  return x.bt + (k * (x.n / kStep) + v0 / kStep) * kTile * kStep;
}

// The products of token tiles k, k + 1 (when there: nt) and groups g, g + 1 (ng) over one chunk
// or slice of `steps` steps: sums from and to the partial sums at acc (tile (ti, gi) at
// acc + (ti * acc_groups + g + gi) * 256 floats; nullptr when first and last), the results into y
// after the last.
// sw: the batch's groups are (gate, up) pairs and the results go to sw (y unused).
template <bool kStreamWeights, class Tiles>
FATHOM_AMX void bf16_pairs(Tiles& tiles, const GemmActivations& x, int64_t k, int nt, int64_t g, int ng,
                           const uint8_t* const* w, const uint16_t* const* a, int64_t steps, float* acc,
                           int64_t acc_groups, bool first, bool last, int64_t n_rows, float* y, int64_t y_stride,
                           const SwigluDst* sw) {
  SumsOut out[2][2] = {};
  for (int ti = 0; ti < nt; ++ti)
    for (int gi = 0; gi < ng; ++gi) {
      const int64_t t0 = (k + ti) * kTile, row0 = (g + gi) * kGemmRows;
      out[ti][gi] = {acc == nullptr ? nullptr : acc + (ti * acc_groups + g + gi) * kTile * 16,
                     sw != nullptr ? nullptr : y + t0 * y_stride + row0,
                     static_cast<int>(std::min<int64_t>(kTile, x.n_tokens - t0)), std::min(kGemmRows, n_rows - row0)};
    }
  uint16_t* h[2] = {nullptr, nullptr};
  if (sw != nullptr) {
    FATHOM_CHECK_MSG(ng == 2 && g % 2 == 0, "a SwiGLU batch pairs each gate group with its up group");
    const int64_t rg = sw->first_row_group + g / 2;
    for (int ti = 0; ti < nt; ++ti) h[ti] = sw->h + ((k + ti) * (sw->n_ff / kStep) + rg / 2) * kTile * kStep + 16 * (rg % 2);
  }
  uint16_t* const* swiglu = sw != nullptr ? h : nullptr;
  if (nt == 2 && ng == 2) bf16_block<2, 2, kStreamWeights>(tiles, w, steps, a, out, first, last, y_stride, swiglu);
  else if (nt == 2) bf16_block<2, 1, kStreamWeights>(tiles, w, steps, a, out, first, last, y_stride, swiglu);
  else if (ng == 2) bf16_block<1, 2, kStreamWeights>(tiles, w, steps, a, out, first, last, y_stride, swiglu);
  else bf16_block<1, 1, kStreamWeights>(tiles, w, steps, a, out, first, last, y_stride, swiglu);
}

// Rows of up to kChunk values (every product but the down projections), in slices of kSlice
// values. A batch of groups is decoded whole, slice-major (slice s of every group, then slice
// s + 1), and each pair of token tiles runs over the slices, against every pair of groups in
// each: the pair's slice of tokens (2 x 16 x 512 bf16, 32 KiB) is loaded from L1 by all the
// groups, while the weights stream from L2 with TILELOADDT1's hint, so they do not evict it. The
// sums of a token pair and all groups carry over between slices in a per-thread buffer (2 x 16
// x 16 floats per group). Before, each (token pair, group pair) ran the whole row from L2 (2 x
// 48 KiB of tokens and of weights on 1536-value rows): a tile load takes ~2.4 ns per KiB from
// L1 and ~5.9 from L2, one KiB per TDPBF16PS (~5.5 ns alone), and the loads barely overlap the
// products. Sapphire Rapids-class Xeon, 2 threads, 512 tokens x 17920 rows x 1536 values,
// interleaved: Q8_0 16.2-17.7 -> 14.1-15.2 ms, Q4_0 14.7-14.9 -> 13.7-14.0. The slicing depends
// only on n, so a token's result does not depend on the batch.
//
// Rows longer than kChunk take chunks of kLongChunk values, each decoded for a batch of
// kLongGroupBatch groups, every token pair against every group pair per chunk, the partial
// sums of all token tiles kept between chunks: with 2048-value chunks each batch streamed a 2
// MiB chunk of the tokens (512 of them) for 8 groups, 128 bytes per TDPBF16PS; 256-value chunks
// of 16 groups keep a 256 KiB chunk of the tokens and 128 KiB of weights in L2, for partial sums
// reloaded 8 times as often. 2 threads, 512 tokens x 1536 rows x 8960 values, 4 interleaved
// runs: Q8_0 best 7.77 -> 7.30 ms (median 8.9 -> 8.0), Q4_0 7.60 -> 7.35 (7.9 -> 7.5).
constexpr int64_t kChunk = 2048, kLongChunk = 256, kSlice = 512;
constexpr int64_t kLongGroupBatch = 16;
constexpr int64_t kMaxGroupBatch = 16, kBatchWeightBytes = int64_t{768} << 10;

// The group batch of rows of n values: kLongGroupBatch on long rows; on short rows as many groups
// as keep the batch's decoded weights (n x 32 bytes a group) within kBatchWeightBytes of L2, at
// least 2 and at most kMaxGroupBatch.
int64_t group_batch_for(int64_t n) {
  if (n > kChunk) return kLongGroupBatch;
  return std::clamp<int64_t>(kBatchWeightBytes / (n * kTile * 2), 2, kMaxGroupBatch);
}

// decode(g, v0, kc, dst) writes values [v0, v0 + kc) of group g (16 rows) as kc / 32 B tiles at dst.
template <class Tiles, class Decode>
FATHOM_AMX void bf16_groups_sliced(Decode&& decode, int64_t n_groups, const GemmActivations& x, int64_t n_rows,
                                   float* y, int64_t y_stride, const SwigluDst* sw) {
  constexpr int64_t kTileBytes = kTile * kTileMaxColsb;
  static thread_local Scratch weights, partial;
  const int64_t n = x.n, all_steps = n / kStep, n_tiles = (x.n_tokens + kTile - 1) / kTile;
  uint8_t* wb = weights.get(static_cast<size_t>(n_groups * all_steps * kTileBytes));
  // Slice [v0, v0 + kc) of group g: kc / 32 tiles at slice(v0) + g * kc / 32 tiles.
  auto slice = [&](int64_t v0) { return wb + v0 / kStep * n_groups * kTileBytes; };
  for (int64_t g = 0; g < n_groups; ++g)
    for (int64_t v0 = 0; v0 < n; v0 += kSlice) {
      const int64_t kc = std::min(kSlice, n - v0);
      decode(g, v0, kc, slice(v0) + g * (kc / kStep) * kTileBytes);
    }
  float* acc = n > kSlice ? reinterpret_cast<float*>(partial.get(static_cast<size_t>(2 * n_groups * kTileBytes)))
                          : nullptr;
  Tiles tiles;
  tiles.configure(bf16_tile_config());
  for (int64_t k = 0; k < n_tiles; k += 2) {
    const int nt = k + 1 < n_tiles ? 2 : 1;
    for (int64_t v0 = 0; v0 < n; v0 += kSlice) {
      const int64_t kc = std::min(kSlice, n - v0), steps = kc / kStep;
      const uint16_t* a[2] = {token_tile(x, k, v0), nt == 2 ? token_tile(x, k + 1, v0) : nullptr};
      for (int64_t g = 0; g < n_groups; g += 2) {
        const uint8_t* w[2] = {slice(v0) + g * steps * kTileBytes, slice(v0) + (g + 1) * steps * kTileBytes};
        bf16_pairs<true>(tiles, x, k, nt, g, g + 1 < n_groups ? 2 : 1, w, a, steps, acc, n_groups, v0 == 0,
                         v0 + kc == n, n_rows, y, y_stride, sw);
      }
    }
  }
  tiles.release();
}

template <class Tiles, class Decode>
FATHOM_AMX void bf16_groups_chunked(Decode&& decode, int64_t n_groups, const GemmActivations& x, int64_t n_rows,
                                    float* y, int64_t y_stride, const SwigluDst* sw) {
  constexpr int64_t kTileBytes = kTile * kTileMaxColsb;
  static thread_local Scratch weights, partial;
  const int64_t n = x.n, n_tiles = (x.n_tokens + kTile - 1) / kTile;
  uint8_t* wb = weights.get(static_cast<size_t>(n_groups * (kLongChunk / kStep) * kTileBytes));
  float* acc = reinterpret_cast<float*>(partial.get(static_cast<size_t>(n_tiles * n_groups * kTileBytes)));
  Tiles tiles;
  tiles.configure(bf16_tile_config());
  for (int64_t v0 = 0; v0 < n; v0 += kLongChunk) {
    const int64_t kc = std::min(kLongChunk, n - v0), steps = kc / kStep;
    for (int64_t g = 0; g < n_groups; ++g) decode(g, v0, kc, wb + g * steps * kTileBytes);
    for (int64_t k = 0; k < n_tiles; k += 2) {
      const int nt = k + 1 < n_tiles ? 2 : 1;
      const uint16_t* a[2] = {token_tile(x, k, v0), nt == 2 ? token_tile(x, k + 1, v0) : nullptr};
      for (int64_t g = 0; g < n_groups; g += 2) {
        const uint8_t* w[2] = {wb + g * steps * kTileBytes, wb + (g + 1) * steps * kTileBytes};
        bf16_pairs<false>(tiles, x, k, nt, g, g + 1 < n_groups ? 2 : 1, w, a, steps,
                          acc + k * n_groups * kTile * 16, n_groups, v0 == 0, v0 + kc == n, n_rows, y, y_stride, sw);
      }
    }
  }
  tiles.release();
}

template <class Tiles, class Decode>
FATHOM_AMX void bf16_groups(Decode&& decode, int64_t n_groups, const GemmActivations& x, int64_t n_rows, float* y,
                            int64_t y_stride, const SwigluDst* sw = nullptr) {
  if (x.n > kChunk) bf16_groups_chunked<Tiles>(decode, n_groups, x, n_rows, y, y_stride, sw);
  else bf16_groups_sliced<Tiles>(decode, n_groups, x, n_rows, y, y_stride, sw);
}

// Values [v0, v0 + kc) of the repacked group at `group` as bf16 B tiles at dst (decode_group_bf16
// from the block holding value v0), rounded as Tiles' products expect.
template <class Tiles>
FATHOM_AMX void decode_bf16(DType type, const uint8_t* group, int64_t v0, int64_t kc, uint8_t* dst) {
  decode_group_bf16<std::is_same_v<Tiles, AmxTiles>>(type, group + repacked_group_bytes(type, v0), kc, dst);
}

// group_batch_for(n) groups at a time, so their decoded weights (a batch's whole rows, or one
// chunk of them on long rows) stay in L2 while every token tile passes over them.
template <class Tiles>
FATHOM_AMX void bf16_range(DType type, const uint8_t* first, size_t group_bytes, int64_t n_groups,
                           const GemmActivations& x, int64_t n_rows, float* y, int64_t y_stride) {
  const int64_t group_batch = group_batch_for(x.n);
  for (int64_t g0 = 0; g0 < n_groups; g0 += group_batch) {
    const uint8_t* batch = first + g0 * group_bytes;
    auto decode = [&](int64_t g, int64_t v0, int64_t kc, uint8_t* dst) FATHOM_AMX {
      decode_bf16<Tiles>(type, batch + g * group_bytes, v0, kc, dst);
    };
    bf16_groups<Tiles>(decode, std::min(group_batch, n_groups - g0), x, n_rows - g0 * kGemmRows, y + g0 * kGemmRows, y_stride);
  }
}

// GemmSwigluRangeFn: batches of half a group batch of row groups, each decoded as (gate, up)
// pairs of groups, so every group pair of the loops above is one row group's gate and up rows.
template <class Tiles>
FATHOM_AMX void swiglu_range(DType gate_type, const uint8_t* gate, size_t gate_group_bytes, DType up_type,
                             const uint8_t* up, size_t up_group_bytes, int64_t g0, int64_t n_groups,
                             const GemmActivations& x, uint16_t* h, int64_t n_ff) {
  FATHOM_CHECK_MSG(x.bt != nullptr && n_ff % kStep == 0, "gemm_swiglu_range: bf16 token tiles in, n_ff a multiple of 32");
  const int64_t batch = std::max<int64_t>(1, group_batch_for(x.n) / 2);
  for (int64_t b0 = 0; b0 < n_groups; b0 += batch) {
    const int64_t nb = std::min(batch, n_groups - b0);
    auto decode = [&](int64_t d, int64_t v0, int64_t kc, uint8_t* dst) FATHOM_AMX {
      const int64_t g = b0 + d / 2;
      if (d % 2 == 0) decode_bf16<Tiles>(gate_type, gate + g * gate_group_bytes, v0, kc, dst);
      else decode_bf16<Tiles>(up_type, up + g * up_group_bytes, v0, kc, dst);
    };
    const SwigluDst sw{h, n_ff, g0 + b0};
    bf16_groups<Tiles>(decode, 2 * nb, x, 2 * nb * kGemmRows, nullptr, 0, &sw);
  }
}

// GGUF rows of a type without an x16 layout (the codebook i-quants, ...), 16 at a time: each
// slice or chunk is dequantized by the reference dequantizer (quant::dequantize_row) and rounded
// to bf16 B tiles, then multiplied as the repacked types' groups are. kSlice and kLongChunk are
// multiples of every super-block (256 values), so each starts on a block.
template <class Tiles>
FATHOM_AMX void bf16_rows(DType type, const uint8_t* rows, size_t row_bytes, int64_t n_rows, const GemmActivations& x,
                          float* y, int64_t y_stride) {
  static_assert(kSlice % 256 == 0 && kLongChunk % 256 == 0, "a slice or chunk must start on a super-block");
  static thread_local std::vector<float> stage;
  const int64_t n_groups = (n_rows + kGemmRows - 1) / kGemmRows, group_batch = group_batch_for(x.n);
  for (int64_t g0 = 0; g0 < n_groups; g0 += group_batch) {
    auto decode = [&](int64_t g, int64_t v0, int64_t kc, uint8_t* dst) FATHOM_AMX {
      const int64_t row0 = (g0 + g) * kGemmRows, stride = kc;
      stage.resize(static_cast<size_t>(kGemmRows * stride));
      for (int64_t r = 0; r < kGemmRows; ++r) {
        float* out = stage.data() + r * stride;
        if (row0 + r < n_rows) quant::dequantize_row(type, rows + (row0 + r) * row_bytes + row_size(type, v0), out, kc);
        else std::fill_n(out, kc, 0.0f);
      }
      // B tile of step j, row i: values 32 j + 2 i and 32 j + 2 i + 1 of the 16 rows, paired.
      for (int64_t j = 0; j < kc / kStep; ++j)
        bf16_pairs_tile<std::is_same_v<Tiles, AmxTiles>>(stage.data() + kStep * j, stride, dst + j * kTile * kTileMaxColsb);
    };
    bf16_groups<Tiles>(decode, std::min(group_batch, n_groups - g0), x, n_rows - g0 * kGemmRows, y + g0 * kGemmRows, y_stride);
  }
}

template <class Tiles>
FATHOM_AMX void gemm_x16_range_tiles(DType type, const uint8_t* first, size_t group_bytes, int64_t n_groups,
                                     const GemmActivations& x, int64_t n_rows, float* y, int64_t y_stride) {
  if (x.bt != nullptr) return bf16_range<Tiles>(type, first, group_bytes, n_groups, x, n_rows, y, y_stride);
  if (gemm_block(type) == 0 || x.n_tokens < kAmxMinTokens) {
    for (int64_t g = 0; g < n_groups; ++g)
      gemm_x16_avx512(type, first + g * group_bytes, x, std::min(kGemmRows, n_rows - g * kGemmRows),
                      y + g * kGemmRows, y_stride);
    return;
  }
  // gemm_many tiles the tokens for this table (Kernels::gemm_token_tiles); it is the only caller.
  FATHOM_CHECK_MSG(x.qt != nullptr, "the AMX integer kernel needs the tokens tiled (GemmActivations::qt)");
  static thread_local Scratch weights[2];
  const int64_t n = x.n, block = x.block, nb = n / block;
  const int64_t n_tiles = (x.n_tokens + kTile - 1) / kTile;
  auto token_tile = [&](int64_t k) {
    const int m = static_cast<int>(std::min<int64_t>(kTile, x.n_tokens - k * kTile));
    return TokenTile{x.qt + k * kTile * n, x.xdt + k * kTile * nb, x.xst + k * kTile * nb, m, y + k * kTile * y_stride};
  };
  Tiles tiles;
  tiles.configure(tile_config(block));
  for (int64_t g = 0; g < n_groups; g += 2) {
    const bool two_groups = g + 1 < n_groups;
    Decoded d[2];
    __mmask16 rows[2] = {0, 0};
    for (int gi = 0; gi < (two_groups ? 2 : 1); ++gi) {
      d[gi] = decode_group(type, first + (g + gi) * group_bytes, n, block, weights[gi]);
      rows[gi] = static_cast<__mmask16>((1u << std::min(kGemmRows, n_rows - (g + gi) * kGemmRows)) - 1);
    }
    for (int64_t k = 0; k < n_tiles; ++k) {
      const TokenTile tk = token_tile(k);
      for (int gi = 0; gi < (two_groups ? 2 : 1); ++gi)
        tile_group(tiles, d[gi], nb, block, tk, rows[gi], tk.y + (g + gi) * kGemmRows, y_stride);
    }
  }
  tiles.release();
}

template <class Tiles>
void gemm_x16_tiles(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                    int64_t y_stride) {
  gemm_x16_range_tiles<Tiles>(type, group, 0, 1, x, n_rows, y, y_stride);
}

}  // namespace

void install_gemm_amx(Kernels& k, bool emulated) {
  k.gemm_rows_bf16 = emulated ? bf16_rows<EmulatedTiles> : bf16_rows<AmxTiles>;
  k.gemm_x16 = emulated ? gemm_x16_tiles<EmulatedTiles> : gemm_x16_tiles<AmxTiles>;
  k.gemm_x16_range = emulated ? gemm_x16_range_tiles<EmulatedTiles> : gemm_x16_range_tiles<AmxTiles>;
  k.gemm_token_tiles = true;
  k.gemm_bf16_tokens = emulated ? bf16_tokens<false> : bf16_tokens<true>;
  k.gemm_swiglu_range = emulated ? swiglu_range<EmulatedTiles> : swiglu_range<AmxTiles>;
}

}  // namespace fathom::cpu::detail

#else

namespace fathom::cpu::detail {
void install_gemm_amx(Kernels&, bool) {}
}  // namespace fathom::cpu::detail

#endif
