// Shared by the attention driver and its per-ISA tile kernels (internal to
// src/backend/cpu/attention*.cpp).
#pragma once

#include <cstdint>

#include "backend/cpu/attention.h"
#include "core/dtype.h"

namespace fathom::cpu::detail {

// Keys per tile: one AVX-512 register of scores per query row. A tile never crosses a cache
// block, so its keys are equally spaced in memory.
inline constexpr int kTileKeys = 16;

// Up to kTileKeys consecutive cached positions of one KV head.
struct KeyTile {
  const float* k = nullptr;  // key of the tile's first position; key j at k + j * k_stride
  const float* v = nullptr;  // value of the first position; value j at v + j * v_stride
  int64_t k_stride = 0;      // floats between consecutive keys (the cache row width)
  int64_t v_stride = 0;      // floats between consecutive values
  int n_keys = 0;            // valid positions in the tile, 1..kTileKeys
};

// The running state of a work item's query rows (flash attention): for each row r,
// q[r] the query, m[r] the largest score (scale * q.k) seen, l[r] the sum of exp(score - m[r]),
// o[r] the sum of exp(score - m[r]) * value. n_visible[r] keys of the tile (a prefix, 0..n_keys)
// are at or before row r's position (causal mask).
struct RowTile {
  const float* q = nullptr;          // [n_rows, dk] queries
  float* o = nullptr;                // [n_rows, dv] unnormalised outputs
  float* m = nullptr;                // [n_rows] running max score (-inf before the first key)
  float* l = nullptr;                // [n_rows] running softmax denominator
  const int32_t* n_visible = nullptr;  // [n_rows] visible keys of the current tile
  int64_t n_rows = 0;
  int64_t dk = 0;  // query/key width
  int64_t dv = 0;  // value/output width
  float scale = 1.0f;  // softmax scale, applied to q.k (not folded into q, to round like the reference)
};

// Folds one key tile into the rows' state (online softmax with rescaling).
using TileFn = void (*)(const KeyTile& tile, const RowTile& rows);

void tile_generic(const KeyTile& tile, const RowTile& rows);
// nullptr when the build has no x86 vector code. AVX2 needs dk and dv multiples of 8, AVX-512
// multiples of 16.
TileFn tile_avx2();
TileFn tile_avx512();

// Converts n stored f16 or bf16 values to f32 (exactly, as fp16_to_fp32/bf16_to_fp32 do). The
// scalar conversion would cost more than the tile's arithmetic; the block formats' reference
// dequantizers are already cheaper than reading f32. nullptr without x86 vector code; the
// AVX2 version needs F16C (part of Isa::kAvx2).
using ConvertFn = void (*)(DType t, const uint8_t* src, float* dst, int64_t n);
ConvertFn convert_avx2();
ConvertFn convert_avx512();  // the same with AVX-512 (Isa::kAvx512)

// The AMX path (attention_amx.cpp): bf16 tiles for QK^T and PV, for the rows of sequences with
// kTileMinTokens or more tokens in a batch (prefill), so decode and short chunks keep the f32
// kernels. Each call first packs every such sequence's cached keys and values of one KV head
// into the B-operand layouts below, once, so the work items of that head (up to kTileItemRows
// query rows each) run on tiles without converting or transposing the cache themselves.
using cpu::kTileMinTokens;  // attention.h
inline constexpr int64_t kTileItemRows = 256;
inline constexpr int64_t kPackPositions = 32;  // positions are packed (and padded) in groups of 32

// One KV head's positions [0, n_pos) of one sequence (n_pos a multiple of kPackPositions), bf16:
//   keys:   per 16 positions, per 32 values of dk, a 16 x 64-byte tile whose row i holds, for each
//           of the 16 positions n, its values 2i and 2i + 1 of the chunk (B of S = Q K^T);
//           tile (g, c) of position group g and chunk c at keys + (g * dk / 32 + c) * 512.
//   values: per 32 positions, per 16 values of dv, a tile whose row i holds, for each of the 16
//           columns, the values of positions 2i and 2i + 1 (B of O += P V); tile (g, d) at
//           values + (g * dv / 16 + d) * 512.
struct PackedKv {
  const uint16_t* keys = nullptr;
  const uint16_t* values = nullptr;
  int64_t n_pos = 0;
};

// Packs kPackPositions positions: key j's dk values at k + j * k_stride, value j's dv values at
// v + j * v_stride (f32; zero rows for padding), into `keys` and `values` at that group's tiles.
using PackFn = void (*)(const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t dk, int64_t dv,
                        uint16_t* keys, uint16_t* values);

// The query rows of a tile work item: row r sees positions [0, n_kv[r]) of the packed head.
struct TileRows {
  const float* q = nullptr;        // [n_rows, dk]
  const int32_t* n_kv = nullptr;   // [n_rows], each <= the packed n_pos
  int64_t n_rows = 0;              // <= kTileItemRows
  int64_t dk = 0, dv = 0;          // multiples of 32
  float scale = 1.0f;
  float* out = nullptr;            // [n_rows, dv], normalised
};
using TileAttentionFn = void (*)(const PackedKv& kv, const TileRows& rows);

// nullptr when the build has no x86 code. `emulated`: the tile instructions in C++ (amx_tiles.h),
// for tests on any AVX-512 CPU; otherwise the caller holds the AMX permission (Isa::kAmx).
PackFn pack_tiles();
TileAttentionFn tile_attention(bool emulated);

}  // namespace fathom::cpu::detail
