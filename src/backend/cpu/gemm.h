// Matrix multiplication on repacked weights, for decode (one token: bound by memory bandwidth)
// and prefill (hundreds of tokens: bound by arithmetic) alike. Weights and tokens meet in an
// integer form made for the int8 dot-product instructions:
//
//   weights  w[r, i] = scale[r, b] * u[r, i] + corr[r, b]   (u unsigned 8-bit, b = block of i)
//   tokens   x[t, i] ~ xd[t, b] * q[t, i]                     (q signed 8-bit, per block of i)
//   dot      sum_b  xd[t,b] * scale[r,b] * sum_i u*q  +  corr[r,b] * xd[t,b] * sum_i q
//
// Every GGUF block format with 32- or 16-value (sub-)blocks maps onto (u, scale, corr) exactly:
// q4_0 (u = nibble, corr = -8d), q8_0 (u = q + 128, corr = -128d), q4_K/q5_K (scale = d*sc,
// corr = -dmin*m), q6_K (16-value blocks, corr = -32 d sc), q4_1/q5_0/q5_1 likewise; the
// codebook types through their table: iq4_nl (u = value + 128, corr = -128d), iq4_xs (scale =
// d*(sc-32), corr = -128 scale), and the ternary tq1_0/tq2_0 (u = t in 0..3, corr = -d).
//
// The fast path reads weights repacked at load time into an interleaved x16 layout (repack.h)
// that holds exactly these (u, scale, corr) in compressed form; the SIMD kernels compute, for
// every row and token, the same float operations in the same order as the scalar reference
// below, so results are bit-identical to it and do not depend on the number of tokens.
//
// Reference tile layout (rows are the SIMD lanes, so no horizontal sums are needed):
//   u[b][g][r][4]  (block b, group g of 4 values, row r: 4 consecutive bytes), then
//   scale[b][r] and corr[b][r] as f32.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/aligned_scratch.h"
#include "core/tensor.h"
#include "core/threadpool.h"

namespace fathom::cpu {

struct Kernels;

constexpr int64_t kGemmRows = 16;  // weight rows per tile (one 512-bit register of f32/i32 lanes)
// q6_Kx16 (repack.h): the bytes of one pair of 16-value sub-blocks, 4 x 64 B of low nibbles and
// 2 x 64 B of high 2-bit fields.
constexpr int64_t kQ6PairBytes = 6 * 4 * kGemmRows;
// Products of this many tokens or more take the AMX tiles where the AMX path is active (fewer
// go through the AVX-512 kernels; both give the same bits). Measured on the Sapphire Rapids-class
// Xeon (one thread, 1536 x 8960 Q4_0, GMAC/s): VNNI ~150 at any count; int8 tiles 85 at 8 tokens
// (a half-empty tile), 156 at 16, 200 at 32; BF16 tiles 136 at 16, 235 at 32, 279 at 48, 338 at
// 64. So the int8 tiles from 16 tokens. The BF16 tiles would pay from 32, but they start at 64:
// below it every product stays bit-exact, so prompts and batches of up to 63 tokens give the same
// logits however they are split (Forward.ChunkedPrefillMatchesOneBatch and
// TwoSequencesInOneBatchMatchEachAlone fail with 32).
constexpr int64_t kAmxMinTokens = 16;
// Products of this many tokens or more take the AMX BF16 tiles instead (gemm_amx.cpp): weights
// (scale * u + corr, or f16/bf16) and activations rounded to bf16, products summed in f32 by
// TDPBF16PS over the whole row, no per-block epilogue. Not bit-identical with the integer
// reference: within the bound tests/kernels/gemm_test.cpp states (docs/decisions.md, "AMX").
constexpr int64_t kAmxBf16MinTokens = 64;

// Activations of a batch quantized for the int tile: q[t][i] int8, xd[t][b] scale, xs[t][b] =
// xd * sum of the block's q.
// For float weights (f16/bf16/f32) only f is used: the activations as they are.
struct GemmActivations {
  const int8_t* q = nullptr;
  const float* xd = nullptr;
  const float* xs = nullptr;
  int64_t n_tokens = 0;
  int64_t n = 0;         // values per token
  int64_t block = 32;    // values per block (32 or 16)
  const float* f = nullptr;  // [n_tokens, n] f32
  // The same q/xd/xs in tiles of kGemmTokenTile tokens, for kernels that ask for them
  // (Kernels::gemm_token_tiles; AMX): tile k's block b is qt + (k * nb + b) * 16 * block (16
  // token rows of `block` bytes), its scales xdt/xst + (k * nb + b) * 16; the tokens past
  // n_tokens in the last tile are zero (q and scales). Null otherwise.
  const int8_t* qt = nullptr;
  const float* xdt = nullptr;
  const float* xst = nullptr;
  // The tokens as bf16 in tiles of 16 (Kernels::gemm_bf16_tokens; AMX, kAmxBf16MinTokens or more
  // tokens): tile k's values [32 j, 32 j + 32) are bt + ((k * n / 32 + j) * 16 + i) * 32 for its
  // token i; the tokens past n_tokens are zero. When set, q/xd/xs are not filled.
  const uint16_t* bt = nullptr;
};
constexpr int64_t kGemmTokenTile = 16;

// One unpacked tile of kGemmRows rows (rows past the matrix end are zero).
struct GemmIntTile {
  const uint8_t* u = nullptr;  // [n_blocks][block/4][kGemmRows][4]
  const float* scale = nullptr;  // [n_blocks][kGemmRows]
  const float* corr = nullptr;   // [n_blocks][kGemmRows]
  int64_t n_blocks = 0;
  int64_t block = 32;
};

// y[t * y_stride + r] = dot(row r of one repacked 16-row group, token t) for t < x.n_tokens,
// r < n_rows (<= kGemmRows). `type` is the source GGUF type of the repacked group.
using GemmX16Fn = void (*)(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                           int64_t y_stride);
// The same for n_groups consecutive groups of one matrix (group g at first + g * group_bytes,
// its rows at y + 16 g; n_rows counts the rows of all of them): kernels that block over several
// groups (AMX: two groups share each token tile) take this entry; a table without it gets one
// gemm_x16 call per group.
using GemmX16RangeFn = void (*)(DType type, const uint8_t* first, size_t group_bytes, int64_t n_groups,
                                const GemmActivations& x, int64_t n_rows, float* y, int64_t y_stride);
// The first half of a SwiGLU FFN on the BF16 tiles (x.bt set): for the n_groups 16-row groups
// [g0, g0 + n_groups) of the gate and up matrices (group g at gate + (g - g0) * gate_group_bytes,
// likewise up), h = swiglu(gate . x, up . x) rounded to bf16 into h, which holds the [tokens,
// n_ff] products as bf16 token tiles (GemmActivations::bt's layout with n = n_ff): the tokens of
// the next product, never written as f32. The tokens past x.n_tokens in the last tile get 0.
using GemmSwigluRangeFn = void (*)(DType gate_type, const uint8_t* gate, size_t gate_group_bytes, DType up_type,
                                   const uint8_t* up, size_t up_group_bytes, int64_t g0, int64_t n_groups,
                                   const GemmActivations& x, uint16_t* h, int64_t n_ff);
// Quantizes n_tokens rows of x ([n_tokens, n]) into q/xd/xs with blocks of `block` values.
using GemmQuantizeFn = void (*)(const float* x, int64_t n_tokens, int64_t n, int64_t block, int8_t* q, float* xd,
                                float* xs);

// Decode reads each weight once per step, and the nibble and K-quant kernels spend enough time
// per byte that the hardware prefetcher falls behind: the first pass over a 16-row group (its
// first tokens) prefetches the weight stream this many bytes ahead (on into the next group,
// which is next in memory); later passes over the group find it in cache. Measured on the
// 2-core AVX-512 VM, 1.5B shape, 2 threads, at 4 KiB: one token Q4_K +45%, Q4_0 +4..17%, V2-Lite
// Q4_K +13..68%; 8 sequences per step (Q4_0) 81 -> 139..149 tok/s; pp512 unchanged. On the
// Sapphire Rapids-class Xeon, once every matrix sat in huge pages and each thread streamed one
// contiguous share (2026-12-06), 2 KiB beat 4 KiB on all four issue-22 files, tg64 2 threads,
// two runs each: Q4_0 29.9-30.7 -> 31.2-32.1, Q8_0 17.4-17.6 -> 18.3-18.5, Q4_K_M 22.7-23.2 ->
// 25.1-25.2, V2-Lite 50.0-53.4 -> 58.4-59.0 tok/s; 1.5 KiB was within noise of 2, 3 KiB lower on
// Q4_K_M and V2-Lite, 8 KiB lower everywhere (gate-shaped Q4_0 on one thread 14.2-14.5 -> 10.7-11.0 GB/s).
constexpr int64_t kDecodePrefetchBytes = 2048;

inline void prefetch_weights(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 3);
}

// The decode prefetch (pf > 0 bytes ahead; 0: none) of a super-block of bb bytes at src, in
// n_sub equal shares, share j requested with sub-block j: the 2.2-4.4 KB of a whole K-quant
// super-block as one burst of prefetches left the line fill buffers full and the stream behind
// (Sapphire Rapids-class Xeon, 2 threads, 930 MB of q4_Kx16: 26.5 -> 30.0 GB/s; 1.5B Q4_K_M tg64
// 23.3-25.0 -> 25.9-26.0 tok/s). The AVX2 kernels (gemm_avx2.cpp), which pass over each group
// in two 8-row halves, keep the whole-super-block prefetch: per sub-block read q4_Kx16 at
// 19.1-19.4 GB/s instead of 22.6-22.7 and q6_Kx16 at 16.6-16.8 instead of 19.9-20.2 there
// (FATHOM_CPU_ISA=avx2, same machine).
inline void prefetch_sub_block(const uint8_t* src, int64_t pf, int64_t bb, int j, int n_sub) {
  if (pf > 0) prefetch_weights(src + pf + j * (bb / n_sub), bb / n_sub);
}

// Float weights (f16, bf16, f32) have no integer form: their canonical dot product is
//   a0 = sum over even i, a1 = sum over odd i (each an FMA chain in order of i), y = a0 + a1,
// which gemm_float_reference computes from the GGUF rows and the SIMD kernels reproduce exactly.
//
// Block size of the (u, scale, corr) form of t: 32 or 16; 0 when t has none.
int64_t gemm_block(DType t);

// Scratch reused across calls (grown as needed).
struct GemmScratch {
  std::vector<int8_t> q;
  AlignedScratch<int8_t> qt;  // the AMX kernels' tile loads read qt and bt
  std::vector<float> xd, xs, xdt, xst;
  AlignedScratch<uint16_t> bt;
};
// Rounds tokens [t0, t1) of a batch of n_tokens to bf16 into the tiled layout of
// GemmActivations::bt (round to nearest even): x holds those tokens' rows ([t1 - t0, n] f32, n a
// multiple of 32). Tokens past n_tokens in the tile of t1 - 1 are zeroed when t1 == n_tokens.
using GemmBf16TokensFn = void (*)(const float* x, int64_t n_tokens, int64_t n, int64_t t0, int64_t t1, uint16_t* bt);
// y[t, r] for n_rows GGUF rows of type t (row r at rows + r * row_bytes, x.n values each) and
// x.n_tokens tokens given as bf16 tiles (x.bt): each row dequantized by the reference dequantizer,
// rounded to bf16 and multiplied on AMX tiles (the BF16 path's bound, gemm_amx.cpp). For types
// without an x16 layout, kAmxBf16MinTokens or more tokens; x.n a multiple of 256.
using GemmRowsBf16Fn = void (*)(DType t, const uint8_t* rows, size_t row_bytes, int64_t n_rows, const GemmActivations& x,
                                float* y, int64_t y_stride);
// Whether weights of type t go through the AMX BF16 tiles for a product of n_tokens tokens.
bool gemm_takes_bf16(DType t, int64_t n, int64_t n_tokens);

struct RepackedMatrix;

// y[t, r] = dot(W row r, x[t, :]) for all n_tokens and rows, W repacked (repack.h). Same
// contract as cpu::matmul; the result for a token does not depend on n_tokens.
void gemm(ThreadPool& pool, const Kernels& kernels, const RepackedMatrix& w, const float* x, int64_t n_tokens,
          float* y, GemmScratch& scratch);

// Several products in one pass over the pool (one wake-up, groups handed out dynamically):
// e.g. the gate/up projections of every routed expert, or all per-head matrices of MLA.
// scratch: one per job.
struct GemmJob {
  const RepackedMatrix* w;
  const float* x;     // [n_tokens, w->n]
  int64_t n_tokens;
  float* y;           // [n_tokens, w->n_rows]
  // Non-null: the product's input is swiglu(x, up) (x the gate, up [n_tokens, w->n]), made a
  // slice of tokens at a time where the tokens are quantized or rounded to bf16, so no pass
  // writes it whole. Quantized weights only (gemm_block(w->type) != 0).
  const float* up = nullptr;
};
void gemm_many(ThreadPool& pool, const Kernels& kernels, const GemmJob* jobs, size_t n_jobs, GemmScratch* scratch);

// A SwiGLU FFN, y = W_down · swiglu(W_gate · x, W_up · x), on the AMX BF16 tiles in two passes
// over the pool, the [n_tokens, n_ff] gate and up products never written as f32: the gate/up pass
// applies the activation in its epilogue and writes it as bf16 token tiles
// (Kernels::gemm_swiglu_range), which the down pass reads as its tokens. The same bits as
// gemm(gate), gemm(up) and a GemmJob::up product of the down matrix on the same table. Only
// where gemm_swiglu_fuses says so. scratch: two.
bool gemm_swiglu_fuses(const Kernels& kernels, const RepackedMatrix& gate, const RepackedMatrix& up,
                       const RepackedMatrix& down, int64_t n_tokens);
void gemm_swiglu(ThreadPool& pool, const Kernels& kernels, const RepackedMatrix& gate, const RepackedMatrix& up,
                 const RepackedMatrix& down, const float* x, int64_t n_tokens, float* y, GemmScratch* scratch);

// The scalar reference, exposed for the tests.
// Quantizes activations (the definition the SIMD quantizers match bit for bit).
void gemm_quantize_activations(const float* x, int64_t n_tokens, int64_t n, int64_t block, int8_t* q, float* xd,
                               float* xs);
// Unpacks rows [r0, r0 + n_rows) of a GGUF matrix into a reference tile (buffer of
// gemm_tile_bytes); rows past n_rows are zero.
size_t gemm_tile_bytes(DType t, int64_t n);
void gemm_unpack_tile(const TensorView& w, int64_t r0, int64_t n_rows, uint8_t* buffer, GemmIntTile* tile);
// The same tile from one repacked 16-row group (repack.h) of rows with n values.
void x16_group_to_tile(DType type, const uint8_t* group, int64_t n, uint8_t* buffer, GemmIntTile* tile);
// The canonical float dot products of rows [0, n_rows) of a float GGUF matrix with the tokens.
void gemm_float_reference(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride);

namespace detail {
// The reference product of a tile with all tokens of x.
void gemm_int_generic(const GemmIntTile& tile, const GemmActivations& x, int64_t n_rows, float* y, int64_t y_stride);
// The generic x16 kernel: unpacks the group into a reference tile, then gemm_int_generic.
void gemm_x16_generic(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                      int64_t y_stride);
void install_gemm_avx2(Kernels& k);
void install_gemm_avx512(Kernels& k);
// The AVX-512 kernel, which the AMX table keeps for float weights and small batches.
void gemm_x16_avx512(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                     int64_t y_stride);
// AMX tiles for products of kAmxMinTokens or more tokens (gemm_amx.cpp); `emulated`: the tile
// instructions emulated in C++ (the test hook of amx_emulated_kernels).
void install_gemm_amx(Kernels& k, bool emulated);
}  // namespace detail

}  // namespace fathom::cpu
