#include "runtime/context_shift.h"

#include <algorithm>

namespace fathom {

ContextShift plan_context_shift(int64_t n_cached, int64_t n_keep) {
  FATHOM_CHECK(n_keep >= 0 && n_keep < n_cached);
  return {n_keep, std::max<int64_t>(1, (n_cached - n_keep) / 2)};
}

const char* shift_path_name(ShiftPath path) { return path == ShiftPath::kRotate ? "rotate" : "recompute"; }

ShiftPath context_shift_path(const Model& model, const KvCache& kv) {
  const DType k = kv.shape().k_type;
  const bool float_keys = k == DType::F32 || k == DType::F16 || k == DType::BF16;
  return float_keys && model.can_rotate_keys() ? ShiftPath::kRotate : ShiftPath::kRecompute;
}

int64_t apply_context_shift(Model& model, KvCache& kv, int32_t seq_id, std::vector<int32_t>& tokens, int64_t n_cached,
                            const ContextShift& shift, ShiftPath* taken) {
  int64_t n_computed = -1;
  *taken = context_shift_path(model, kv);
  if (*taken == ShiftPath::kRotate) {
    const int32_t delta = static_cast<int32_t>(-shift.n_discard);
    const Status st = kv.discard_positions(seq_id, tokens, n_cached, shift.n_keep, shift.n_discard,
                                           [&](float* rows, int64_t n_rows) { model.rotate_keys(rows, n_rows, delta); });
    if (st.is_ok()) n_computed = n_cached - shift.n_discard;
    else *taken = ShiftPath::kRecompute;  // the pool has no room for the private copies
  }
  if (*taken == ShiftPath::kRecompute) n_computed = kv.truncate_to_blocks(seq_id, tokens, shift.n_keep);
  const auto first = tokens.begin() + static_cast<std::ptrdiff_t>(shift.n_keep);
  tokens.erase(first, first + static_cast<std::ptrdiff_t>(shift.n_discard));
  return n_computed;
}

}  // namespace fathom
