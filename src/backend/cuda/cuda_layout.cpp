#include "backend/cuda/cuda_layout.h"

#include <algorithm>
#include <unordered_map>

#include "backend/backend.h"
#include "core/status.h"

namespace fathom::cuda {

BatchTables pack_block_tables(const KvCache& kv, const AttentionBatch& batch) {
  const int32_t block_size = kv.shape().block_size;
  BatchTables b;
  for (int64_t t = 0; t < batch.n_tokens; ++t) b.max_blocks = std::max<int64_t>(b.max_blocks, batch.positions[t] / block_size + 1);
  std::unordered_map<int32_t, int32_t> row_of;  // seq id -> its row
  b.token_table.resize(static_cast<size_t>(batch.n_tokens));
  for (int64_t t = 0; t < batch.n_tokens; ++t) {
    const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
    FATHOM_CHECK(static_cast<int64_t>(table.size()) > batch.positions[t] / block_size);  // positions [0, pos] are reserved
    const auto [it, added] = row_of.try_emplace(batch.seq_ids[t], static_cast<int32_t>(row_of.size()));
    b.token_table[static_cast<size_t>(t)] = it->second;
    if (!added) continue;
    const size_t used = std::min(table.size(), static_cast<size_t>(b.max_blocks));
    b.tables.resize(b.tables.size() + static_cast<size_t>(b.max_blocks), 0);
    std::copy(table.begin(), table.begin() + static_cast<std::ptrdiff_t>(used), b.tables.end() - b.max_blocks);
  }
  return b;
}

std::vector<int64_t> kv_rows_of_batch(const KvCache& kv, const AttentionBatch& batch) {
  std::vector<int64_t> rows(static_cast<size_t>(batch.n_tokens));
  for (int64_t t = 0; t < batch.n_tokens; ++t) {
    const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
    FATHOM_CHECK(static_cast<int64_t>(table.size()) > batch.positions[t] / kv.shape().block_size);
    rows[static_cast<size_t>(t)] = kv_row_index(table.data(), batch.positions[t], kv.shape().block_size);
  }
  return rows;
}

}  // namespace fathom::cuda
