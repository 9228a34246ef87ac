// CPU attention over the paged KV cache, flash-attention style: for each sequence and KV head,
// a work item takes a chunk of that sequence's query tokens with all the query heads of the
// GQA group (rows = tokens x heads) and streams the cache blocks once, 16 positions at a time,
// keeping a running max, denominator and output per row (online softmax), so no [n_ctx] score
// buffer exists and each K/V block is read once per item instead of once per (token, head).
// MLA (deepseek2) is the same computation with one "KV head" whose cache row is the key
// ([latent | k_pe]) and whose first kv_lora_rank values are the value.
// A cache stored as f16, bf16, q8_0 or q4_0 is read through a per-thread tile buffer: each
// 16-position tile of the item's KV head is converted (its covering 32-value blocks for the
// block formats) just before the tile kernel runs, so no f32 copy of the cache is made.
//
// The inner tile kernel has generic, AVX2 and AVX-512 versions (per-function target attributes,
// chosen by the caller's Isa); head widths the vector code does not cover fall back to a
// narrower ISA. With Isa::kAmx, prefill rows (sequences with 64+ tokens in the batch) run on bf16
// AMX tiles over a per-call packed copy of their KV heads instead (attention_amx.cpp). Reference
// twins (attention_ref, mla_attention_ref) are the naive per-(token, head) loops, used by tests only.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "backend/cpu/vec_dot.h"
#include "core/threadpool.h"

namespace fathom::cpu {

// How Isa::kAmx runs its tiles: the instructions (the process holds the AMX permission), or
// their C++ emulation (amx_tiles.h), which tests run on any AVX-512 CPU.
enum class TileExec { kHardware, kEmulated };

// Causal GQA attention of each token over its sequence's cached positions [0, pos].
// q: [n_tokens, n_head, head_dim_k]; out: [n_tokens, n_head, head_dim_v]; kv head = h / (n_head / n_head_kv).
// `isa` picks the tile kernel (its vector ISA must be supported by this CPU). With Isa::kAmx, the
// rows of a sequence with kTileMinTokens (64) or more tokens in the batch run on bf16 AMX
// tiles when dk and dv are multiples of 32: within a stated bound of the f32 kernels, not bit-equal
// (docs/decisions.md); a row's result does not depend on the rest of the batch.
void attention(ThreadPool& pool, Isa isa, const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch,
               int64_t n_head, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out,
               TileExec exec = TileExec::kHardware);

// MLA attention in latent space: cache rows [latent (kv_lora_rank), k_pe (n_rot)] shared by all
// heads. q_abs: [n_tokens, n_head, kv_lora_rank]; q_pe: [n_tokens, n_head, n_rot];
// out: [n_tokens, n_head, kv_lora_rank].
void mla_attention(ThreadPool& pool, Isa isa, const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer,
                   const AttentionBatch& batch, int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale,
                   float* out, TileExec exec = TileExec::kHardware);

// The most bytes one attention call packs for the AMX tile path (and the calling thread keeps for
// its next call): every sequence with kTileMinTokens or more of the step's tokens, up to n_ctx
// positions (rounded up to 32) of each of its n_head_kv KV heads, dk + dv bf16 values per
// position; 0 when dk or dv is not a multiple of 32. MLA: n_head_kv 1, dk = kv_lora_rank + n_rot,
// dv = kv_lora_rank. memory_need() counts it with the scratch. -1 when it overflows int64.
inline constexpr int64_t kTileMinTokens = 64;
int64_t tile_pack_bytes_max(int64_t step_tokens, int64_t n_seq, int64_t n_ctx, int64_t n_head_kv, int64_t dk, int64_t dv);

// Scalar references: one (token, head) at a time, position by position, each cached row
// converted whole to f32 (KvCache::load_k/load_v).
void attention_ref(ThreadPool& pool, const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                   int64_t n_head, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out);
void mla_attention_ref(ThreadPool& pool, const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer,
                       const AttentionBatch& batch, int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale,
                       float* out);

}  // namespace fathom::cpu
