// Context shift (`serve --context-shift`): a sequence that reaches the end of its context keeps
// its first n_keep tokens, discards half of the rest (as llama.cpp's context shift does), and
// continues. The cache follows one of two paths:
//   rotate:    the rows after the discarded window move down; each moved key is re-rotated by
//              the position delta (RoPE is a rotation, so the rotated key is the key computed at
//              its new position). For K caches stored as f32, f16 or bf16 on an all-CPU
//              placement, MHA (llama, qwen2, deepseek) and the MLA latent cache's k_pe (deepseek2).
//   recompute: the whole blocks below n_keep stay, everything after them is prefilled again.
//              For q8_0/q4_0 K (re-rotating would quantize each moved key a second time, an
//              error that grows with every shift), for accelerator placements (the device's
//              cache mirror does not see rows changed on the host), and when the rotate path
//              would need more free blocks than the pool has.
// Either way the values and deeper layers of the kept tokens were computed with the discarded
// tokens in view: the shifted sequence is an approximation of a fresh prefill of the kept
// tokens, exact only for what the rotate path rotates (the first layer's keys).
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "kv/kv_cache.h"
#include "model/model.h"

namespace fathom {

struct ContextShift {
  int64_t n_keep = 0;     // leading tokens kept
  int64_t n_discard = 0;  // tokens dropped after them
};

// The shift of a sequence with n_cached tokens cached that keeps n_keep (< n_cached): half of
// the n_cached - n_keep after them are discarded, at least one.
ContextShift plan_context_shift(int64_t n_cached, int64_t n_keep);

enum class ShiftPath { kRotate, kRecompute };
const char* shift_path_name(ShiftPath path);  // "rotate", "recompute"
// The path a shift takes for this model and cache (see above; the pool may still turn a
// rotate into a recompute).
ShiftPath context_shift_path(const Model& model, const KvCache& kv);

// Applies the shift to sequence seq_id, whose tokens[0, n_cached) are cached: tokens loses the
// discarded window, the cache follows the path. Returns the tokens now cached (the new
// n_computed) and the path taken in *taken.
int64_t apply_context_shift(Model& model, KvCache& kv, int32_t seq_id, std::vector<int32_t>& tokens, int64_t n_cached,
                            const ContextShift& shift, ShiftPath* taken);

}  // namespace fathom
