// Flash-style attention driver (work items, query gathering, threading), the generic tile
// kernel, and the naive reference twins. See attention.h.
#include "backend/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cpu/aligned_scratch.h"
#include "backend/cpu/attention_internal.h"
#include "core/status.h"
#include "quant/quant.h"

namespace fathom::cpu {

namespace detail {

// Dot product with 8 independent partial sums (the compiler can keep them in one vector
// register; a single running sum is one long dependency chain).
float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) partial[u] += a[i + u] * b[i + u];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float p : partial) sum += p;
  return sum;
}

void tile_generic(const KeyTile& tile, const RowTile& rows) {
  const int64_t dk = rows.dk, dv = rows.dv;
  float scores[kTileKeys];  // [n_visible] scores of one row
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const int n_visible = rows.n_visible[r];
    if (n_visible <= 0) continue;
    const float* q = rows.q + r * dk;
    float block_max = -INFINITY;
    for (int j = 0; j < n_visible; ++j) {
      scores[j] = dot(q, tile.k + j * tile.k_stride, dk) * rows.scale;
      block_max = std::max(block_max, scores[j]);
    }
    const float m_new = std::max(rows.m[r], block_max);
    const float correction = std::exp(rows.m[r] - m_new);  // 0 for the first tile (m = -inf)
    float* __restrict o = rows.o + r * dv;
    for (int64_t i = 0; i < dv; ++i) o[i] *= correction;
    float sum = 0.0f;
    for (int j = 0; j < n_visible; ++j) {
      const float p = std::exp(scores[j] - m_new);
      sum += p;
      const float* __restrict v = tile.v + j * tile.v_stride;
      for (int64_t i = 0; i < dv; ++i) o[i] += p * v[i];
    }
    rows.l[r] = rows.l[r] * correction + sum;
    rows.m[r] = m_new;
  }
}

}  // namespace detail

namespace {

using detail::KeyTile;
using detail::kTileKeys;
using detail::RowTile;
using detail::TileFn;
using detail::ConvertFn;
using detail::kTileItemRows;
using detail::kPackPositions;

// Scratch per work item is about this many floats ([rows, dk] queries + [rows, dv] outputs),
// so an item's rows stay in L2 while the cache streams past.
constexpr int64_t kItemFloats = 32768;
constexpr int64_t kMaxRows = 64;

// One attention problem in the shape the driver runs: MHA/GQA or MLA.
struct Problem {
  const float* q_main = nullptr;  // [n_tokens, n_head, d_main] first part of each query row
  int64_t d_main = 0;
  const float* q_tail = nullptr;  // [n_tokens, n_head, d_tail] rest of the row (MLA q_pe), or nullptr
  int64_t d_tail = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t dk = 0;        // d_main + d_tail: query/key width
  int64_t dv = 0;        // value/output width
  float scale = 1.0f;
  bool latent = false;   // MLA: values are the first dv floats of the key rows (v_width = 0)
  float* out = nullptr;  // [n_tokens, n_head, dv]
};

// The batch tokens of one sequence, in batch order (positions ascending).
struct SeqTokens {
  int32_t seq_id = 0;
  std::vector<int64_t> tokens;  // batch indices
};

// Rows [tok_begin, +n_tok) x heads [head_begin, +n_heads) of kv heads [kv_head, +n_kv_heads) of
// one sequence, over the cached positions [kv_begin, kv_end); rows are ordered kv head, token,
// head. An item that covers only part of its rows' positions (a split) leaves its unnormalised
// softmax state in a partial slot; merge_partials() combines the slots of one split into the
// output.
struct WorkItem {
  int32_t seq = 0;  // index into the SeqTokens list
  int64_t kv_head = 0;
  int64_t n_kv_heads = 1;  // more than 1 only with whole groups (head_begin 0, n_heads the group)
  int64_t head_begin = 0;  // within the GQA group
  int64_t n_heads = 0;
  int64_t tok_begin = 0;   // within SeqTokens::tokens
  int64_t n_tok = 0;
  int64_t kv_begin = 0;    // first position read
  int64_t kv_end = 0;      // one past the last position read: the rows' longest context
  int64_t partial = -1;    // first float of this item's state in the partial buffer; -1: writes the output
  double cost = 0;         // rows x positions, for largest-first scheduling
  bool tiles = false;      // runs on AMX tiles over the packed head (never split)

  int64_t rows_per_kv_head() const { return n_tok * n_heads; }
  int64_t rows() const { return n_kv_heads * n_tok * n_heads; }
};

// The items of one split (consecutive in the split list): the same rows over consecutive
// position ranges.
struct Split {
  size_t first = 0;  // index into the split items
  int n_parts = 0;
};

TileFn pick_tile(Isa isa, int64_t dk, int64_t dv) {
  FATHOM_CHECK_MSG(isa_supported(isa), std::string("attention kernels for ") + isa_name(isa) + " need instructions this CPU lacks");
  if (isa == Isa::kAvx512 && dk % 16 == 0 && dv % 16 == 0)
    if (TileFn f = detail::tile_avx512()) return f;
  if ((isa == Isa::kAvx512 || isa == Isa::kAvx2) && dk % 8 == 0 && dv % 8 == 0)
    if (TileFn f = detail::tile_avx2()) return f;
  return detail::tile_generic;
}

std::vector<SeqTokens> group_by_sequence(const AttentionBatch& batch) {
  std::vector<SeqTokens> seqs;
  std::unordered_map<int32_t, size_t> index;  // seq id -> position in seqs
  for (int64_t t = 0; t < batch.n_tokens; ++t) {
    auto [it, fresh] = index.emplace(batch.seq_ids[t], seqs.size());
    if (fresh) seqs.push_back({batch.seq_ids[t], {}});
    seqs[it->second].tokens.push_back(t);
  }
  return seqs;
}

// Positions a split part reads at the least: below this the partial state and its merge cost
// more than the second thread saves.
constexpr int64_t kMinSplitPositions = 512;

// The work of one attention call: items for the dynamic scheduler, largest first, and the
// splits whose parts are merged afterwards.
struct Plan {
  std::vector<WorkItem> items;
  std::vector<WorkItem> split_items;  // the same items, grouped by split (Split::first indexes this)
  std::vector<Split> splits;
  int64_t partial_floats = 0;  // size of the partial buffer
};

// Splits the rows into items of at most `rows_per_item` rows: heads of a group first (so a
// group shares the cache reads), then tokens of a sequence. Short contexts spread the rows over
// the threads. Long ones keep a group's heads in one item (the cache is read once per item),
// join the whole groups of the same tokens across KV heads (whole cache rows per item) and,
// when that leaves threads idle (decode: one item per token), split each item's positions into
// parts, one per idle thread, merged afterwards as flash-decoding does. Items are returned
// largest first for the dynamic scheduler.
// Sequences with tiles[s] take the tile path: items of up to kTileItemRows rows, never split.
Plan make_plan(const std::vector<SeqTokens>& seqs, const std::vector<bool>& tiles, const AttentionBatch& batch,
               const Problem& p, int n_threads) {
  const int64_t group = p.n_head / p.n_head_kv;
  const int64_t budget = std::clamp<int64_t>(kItemFloats / (p.dk + p.dv), 1, kMaxRows);
  const int64_t total_rows = batch.n_tokens * p.n_head;
  int64_t longest = 0;
  for (int64_t t = 0; t < batch.n_tokens; ++t) longest = std::max<int64_t>(longest, batch.positions[t] + 1);
  const bool long_context = n_threads > 1 && longest >= 2 * kMinSplitPositions;
  const int64_t rows = long_context ? budget : std::clamp<int64_t>((total_rows + n_threads - 1) / n_threads, 1, budget);
  Plan plan;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t seq_rows = tiles[s] ? kTileItemRows : rows;
    const int64_t n_heads = std::min(group, seq_rows);
    const int64_t n_tok = std::max<int64_t>(1, seq_rows / n_heads);
    const std::vector<int64_t>& toks = seqs[s].tokens;
    for (int64_t t0 = 0; t0 < static_cast<int64_t>(toks.size()); t0 += n_tok) {
      const int64_t nt = std::min<int64_t>(n_tok, static_cast<int64_t>(toks.size()) - t0);
      int64_t max_kv = 0;
      for (int64_t i = 0; i < nt; ++i) max_kv = std::max<int64_t>(max_kv, batch.positions[toks[static_cast<size_t>(t0 + i)]] + 1);
      for (int64_t hk = 0; hk < p.n_head_kv; ++hk)
        for (int64_t h0 = 0; h0 < group; h0 += n_heads) {
          const int64_t nh = std::min(n_heads, group - h0);
          plan.items.push_back({static_cast<int32_t>(s), hk, 1, h0, nh, t0, nt, 0, max_kv, -1,
                                static_cast<double>(nt * nh) * static_cast<double>(max_kv), tiles[s]});
        }
    }
  }
  if (long_context) {
    // One item for every KV head of the same rows (decode: the token's whole GQA groups), so a
    // thread reads whole cache rows, consecutive in memory, instead of one head's columns of
    // each: two threads each reading every other 256 bytes of the rows streamed a 4096-token
    // f16 cache at 8.6 GB/s, whole rows at 11.5 (Sapphire Rapids-class Xeon).
    std::vector<WorkItem> merged;
    for (const WorkItem& item : plan.items) {
      if (!merged.empty()) {
        WorkItem& last = merged.back();
        if (!item.tiles && !last.tiles && item.head_begin == 0 && item.n_heads == group && last.n_heads == group &&
            item.seq == last.seq && item.tok_begin == last.tok_begin && item.n_tok == last.n_tok &&
            last.kv_head + last.n_kv_heads == item.kv_head && last.rows() + item.rows() <= budget) {
          ++last.n_kv_heads;
          last.cost += item.cost;
          continue;
        }
      }
      merged.push_back(item);
    }
    plan.items.swap(merged);
  }
  const auto n_items = static_cast<int64_t>(plan.items.size());
  if (long_context && n_items < n_threads) {
    std::vector<WorkItem> whole;
    whole.swap(plan.items);
    for (const WorkItem& item : whole) {
      const int64_t wanted = (n_threads + n_items - 1) / n_items;
      const int64_t n_parts = item.tiles ? 1 : std::clamp<int64_t>(item.kv_end / kMinSplitPositions, 1, wanted);
      if (n_parts == 1) {
        plan.items.push_back(item);
        continue;
      }
      // Part boundaries on whole tiles; the last part takes the rest.
      const int64_t step = (item.kv_end / n_parts + detail::kTileKeys - 1) / detail::kTileKeys * detail::kTileKeys;
      plan.splits.push_back({plan.split_items.size(), static_cast<int>(n_parts)});
      for (int64_t part = 0; part < n_parts; ++part) {
        WorkItem piece = item;
        piece.kv_begin = part * step;
        piece.kv_end = part + 1 == n_parts ? item.kv_end : (part + 1) * step;
        piece.partial = plan.partial_floats;
        plan.partial_floats += piece.rows() * (p.dv + 2);
        piece.cost = static_cast<double>(piece.rows()) * static_cast<double>(piece.kv_end - piece.kv_begin);
        plan.split_items.push_back(piece);
        plan.items.push_back(piece);
      }
    }
  }
  std::stable_sort(plan.items.begin(), plan.items.end(), [](const WorkItem& a, const WorkItem& b) { return a.cost > b.cost; });
  return plan;
}

// Per-thread buffers of one work item's rows.
struct ItemScratch {
  std::vector<float> q;            // [rows, dk] queries
  std::vector<float> o;            // [rows, dv] unnormalised outputs
  std::vector<float> m, l;         // [rows] running max and denominator
  std::vector<int32_t> n_kv;       // [rows] positions visible to the row: its position + 1
  std::vector<int32_t> n_visible;  // [rows] visible keys of the current tile
  std::vector<float> k_tile, v_tile;  // [kTileKeys, span] keys / values of a converted tile
};

// The columns [first, first + n) of a cache row in a type with `block`-value blocks: the
// whole blocks covering them, and where the columns start within those.
struct RowSpan {
  int64_t begin = 0;   // first value of the first covering block
  int64_t n = 0;       // values of the covering blocks
  int64_t offset = 0;  // first - begin
};

RowSpan covering_blocks(DType t, int64_t first, int64_t n) {
  const int64_t block = traits(t).block_size;
  RowSpan span;
  span.begin = first / block * block;
  span.n = (first + n + block - 1) / block * block - span.begin;
  span.offset = first - span.begin;
  return span;
}

// Converts the covering blocks `span` of one stored row to f32 at dst (span.n values): f16/bf16
// through `convert` when there is one, the rest through the reference dequantizer.
// n values at src (whole blocks) to f32 at dst.
void convert_values(DType t, const uint8_t* src, int64_t n, ConvertFn convert, float* dst) {
  if (convert && (t == DType::F16 || t == DType::BF16)) convert(t, src, dst, n);
  else quant::dequantize_row(t, src, dst, n);
}

void convert_row(DType t, const uint8_t* row, const RowSpan& span, ConvertFn convert, float* dst) {
  convert_values(t, row + row_size(t, span.begin), span.n, convert, dst);
}

// Converts a tile's rows to f32: row j of `n_keys` rows `row_bytes` apart starting at `data`,
// covering blocks `span`, into dst[j * span.n ...]. Returns the tile's first column in dst.
const float* convert_tile(DType t, const uint8_t* data, size_t row_bytes, const RowSpan& span, int n_keys,
                          ConvertFn convert, std::vector<float>& dst) {
  dst.resize(static_cast<size_t>(kTileKeys * span.n));
  data += row_size(t, span.begin);  // once per tile, not per row
  for (int j = 0; j < n_keys; ++j) convert_values(t, data + static_cast<size_t>(j) * row_bytes, span.n, convert, dst.data() + j * span.n);
  return dst.data() + span.offset;
}

// The batch token and query head of row r of an item (rows ordered kv head, token, head).
struct RowHead {
  int64_t t = 0, h = 0;
};
RowHead row_head(const WorkItem& item, const SeqTokens& seq, const Problem& p, int64_t r) {
  const int64_t c = r / item.rows_per_kv_head(), rr = r % item.rows_per_kv_head();
  return {seq.tokens[static_cast<size_t>(item.tok_begin + rr / item.n_heads)],
          (item.kv_head + c) * (p.n_head / p.n_head_kv) + item.head_begin + rr % item.n_heads};
}

// Where row r of an item writes its output.
float* output_row(const WorkItem& item, const SeqTokens& seq, const Problem& p, int64_t r) {
  const RowHead th = row_head(item, seq, p, r);
  return p.out + (th.t * p.n_head + th.h) * p.dv;
}

// An item's query rows into s.q ([rows, dk], q_main then q_tail) and the positions each sees
// into s.n_kv.
void gather_queries(const WorkItem& item, const SeqTokens& seq, const AttentionBatch& batch, const Problem& p,
                    ItemScratch& s) {
  const int64_t n_rows = item.rows();
  s.q.resize(static_cast<size_t>(n_rows * p.dk));
  s.n_kv.resize(static_cast<size_t>(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto [t, h] = row_head(item, seq, p, r);
    float* dst = s.q.data() + r * p.dk;
    const float* src = p.q_main + (t * p.n_head + h) * p.d_main;
    std::copy(src, src + p.d_main, dst);
    if (p.q_tail) {
      const float* tail = p.q_tail + (t * p.n_head + h) * p.d_tail;
      std::copy(tail, tail + p.d_tail, dst + p.d_main);
    }
    s.n_kv[static_cast<size_t>(r)] = batch.positions[t] + 1;
  }
}

void run_item(const WorkItem& item, const SeqTokens& seq, const AttentionBatch& batch, const Problem& p, KvCache& kv,
              int64_t layer, TileFn tile_fn, ConvertFn convert_fn, ItemScratch& s, float* partials) {
  const int64_t n_rows = item.rows(), per_head = item.rows_per_kv_head();
  gather_queries(item, seq, batch, p, s);
  s.o.assign(static_cast<size_t>(n_rows * p.dv), 0.0f);
  s.m.assign(static_cast<size_t>(n_rows), -INFINITY);
  s.l.assign(static_cast<size_t>(n_rows), 0.0f);
  s.n_visible.resize(static_cast<size_t>(n_rows));
  const std::vector<int32_t>& table = kv.block_table(seq.seq_id);
  const KvCacheShape& shape = kv.shape();
  const int32_t block_size = shape.block_size;
  // f32 rows are read in place; other types are converted a tile (at most 16 rows) at a time,
  // so no f32 copy of the cache exists. V quantized in blocks is converted whole blocks at a
  // time too, then summed like f32 values.
  const bool k_f32 = shape.k_type == DType::F32, v_f32 = p.latent || shape.v_type == DType::F32;
  // A converted cache is converted one KV head's columns at a time, right before that head's
  // rows run over them: both heads of a joined item converted at once (2 x 16 KiB of f32 keys
  // and values) left the tile kernel's queries and outputs little of a 48 KiB L1. Decode, 28
  // layers, f16, 12/2 heads, cold, Sapphire Rapids-class Xeon, 2 threads: 4096 positions
  // 8.8-9.0 -> 8.0-8.8 ms, 16384 positions 40.5-41.8 -> 37.1-38.2 ms.
  for (int64_t pos = item.kv_begin; pos < item.kv_end;) {
    const int32_t block = table[static_cast<size_t>(pos / block_size)];
    const auto slot = static_cast<int32_t>(pos % block_size);
    const int n_keys = static_cast<int>(std::min<int64_t>({kTileKeys, block_size - slot, item.kv_end - pos}));
    for (int64_t r = 0; r < n_rows; ++r)
      s.n_visible[static_cast<size_t>(r)] = static_cast<int32_t>(std::clamp<int64_t>(s.n_kv[static_cast<size_t>(r)] - pos, 0, n_keys));
    for (int64_t c = 0; c < item.n_kv_heads; ++c) {  // each KV head's rows over its columns
      const int64_t kv_head = item.kv_head + c;
      const RowSpan k_span = covering_blocks(shape.k_type, kv_head * p.dk, p.dk);
      const RowSpan v_span = covering_blocks(shape.v_type, kv_head * p.dv, p.dv);
      KeyTile tile;
      if (k_f32) {
        tile.k = kv.k_row(layer, block, slot) + kv_head * p.dk;
        tile.k_stride = shape.k_width;
      } else {
        tile.k = convert_tile(shape.k_type, kv.k_data(layer, block, slot), kv.k_row_bytes(), k_span, n_keys, convert_fn, s.k_tile);
        tile.k_stride = k_span.n;
      }
      if (p.latent) {
        tile.v = tile.k;
        tile.v_stride = tile.k_stride;
      } else if (v_f32) {
        tile.v = kv.v_row(layer, block, slot) + kv_head * p.dv;
        tile.v_stride = shape.v_width;
      } else {
        tile.v = convert_tile(shape.v_type, kv.v_data(layer, block, slot), kv.v_row_bytes(), v_span, n_keys, convert_fn, s.v_tile);
        tile.v_stride = v_span.n;
      }
      tile.n_keys = n_keys;
      const int64_t r0 = c * per_head;
      const RowTile rows{s.q.data() + r0 * p.dk, s.o.data() + r0 * p.dv, s.m.data() + r0, s.l.data() + r0,
                         s.n_visible.data() + r0, per_head, p.dk, p.dv, p.scale};
      tile_fn(tile, rows);
    }
    pos += n_keys;
  }
  if (item.partial >= 0) {
    // [n_rows, dv + 2]: each row's unnormalised output, then its running max and denominator.
    float* state = partials + item.partial;
    for (int64_t r = 0; r < n_rows; ++r, state += p.dv + 2) {
      std::copy_n(s.o.data() + r * p.dv, p.dv, state);
      state[p.dv] = s.m[static_cast<size_t>(r)];
      state[p.dv + 1] = s.l[static_cast<size_t>(r)];
    }
    return;
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    const float inv = 1.0f / s.l[static_cast<size_t>(r)];  // > 0: position 0 is always visible
    const float* o = s.o.data() + r * p.dv;
    float* dst = output_row(item, seq, p, r);
    for (int64_t c = 0; c < p.dv; ++c) dst[c] = o[c] * inv;
  }
}

// Combines the parts of each split: every part's state is rescaled to the largest running max
// of its row (a part a row sees no position of has max -inf and weighs 0).
void merge_partials(const Plan& plan, const std::vector<SeqTokens>& seqs, const Problem& p, const float* partials) {
  for (const Split& split : plan.splits) {
    const WorkItem& first = plan.split_items[split.first];
    const int64_t n_rows = first.rows();
    for (int64_t r = 0; r < n_rows; ++r) {
      float m = -INFINITY;
      for (int part = 0; part < split.n_parts; ++part)
        m = std::max(m, partials[plan.split_items[split.first + static_cast<size_t>(part)].partial + r * (p.dv + 2) + p.dv]);
      float* dst = output_row(first, seqs[static_cast<size_t>(first.seq)], p, r);
      std::fill_n(dst, p.dv, 0.0f);
      float l = 0.0f;
      for (int part = 0; part < split.n_parts; ++part) {
        const float* state = partials + plan.split_items[split.first + static_cast<size_t>(part)].partial + r * (p.dv + 2);
        if (state[p.dv] == -INFINITY) continue;
        const float w = std::exp(state[p.dv] - m);
        l += w * state[p.dv + 1];
        for (int64_t c = 0; c < p.dv; ++c) dst[c] += w * state[c];
      }
      const float inv = 1.0f / l;  // > 0: the first part holds position 0, visible to every row
      for (int64_t c = 0; c < p.dv; ++c) dst[c] *= inv;
    }
  }
}

// The packed heads of the sequences that take the tile path (detail::PackedKv).
struct TilePacks {
  std::vector<int64_t> n_cached;  // per sequence: its longest context in the batch (positions to pack)
  std::vector<int64_t> n_pos;     // per sequence: packed positions (n_cached rounded up); 0 for the f32 path
  std::vector<int64_t> offset;  // per (sequence, KV head): first value of its keys (its values follow)
  uint16_t* data = nullptr;

  uint16_t* keys(const Problem& p, size_t seq, int64_t kv_head) const {
    return data + offset[seq * static_cast<size_t>(p.n_head_kv) + static_cast<size_t>(kv_head)];
  }
  uint16_t* values(const Problem& p, size_t seq, int64_t kv_head) const { return keys(p, seq, kv_head) + n_pos[seq] * p.dk; }
  detail::PackedKv head(const Problem& p, size_t seq, int64_t kv_head) const {
    return {keys(p, seq, kv_head), values(p, seq, kv_head), n_pos[seq]};
  }
};

// Packs every tile sequence's positions [0, its longest context) of every KV head, in jobs of up
// to 8 groups of kPackPositions positions spread over the pool. Rows past the context are zero.
void pack_sequences(ThreadPool& pool, const Problem& p, KvCache& kv, int64_t layer, const std::vector<SeqTokens>& seqs,
                    ConvertFn convert_fn, const TilePacks& packs) {
  struct Job {
    size_t seq;
    int64_t kv_head, g0, g1;  // groups [g0, g1)
  };
  constexpr int64_t kGroupsPerJob = 8;
  std::vector<Job> jobs;
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t hk = 0; hk < p.n_head_kv; ++hk)
      for (int64_t g = 0; g < packs.n_pos[s] / kPackPositions; g += kGroupsPerJob)
        jobs.push_back({s, hk, g, std::min(g + kGroupsPerJob, packs.n_pos[s] / kPackPositions)});
  if (jobs.empty()) return;
  const KvCacheShape& shape = kv.shape();
  const detail::PackFn pack = detail::pack_tiles();
  std::atomic<size_t> next{0};
  pool.run_on_all([&](int) {
    std::vector<float> k_stage, v_stage;
    for (size_t i = next.fetch_add(1, std::memory_order_relaxed); i < jobs.size(); i = next.fetch_add(1, std::memory_order_relaxed)) {
      const Job& job = jobs[i];
      const std::vector<int32_t>& table = kv.block_table(seqs[job.seq].seq_id);
      const int64_t n_cached = packs.n_cached[job.seq];
      // MLA: one latent row per position, its first dv values the value.
      const RowSpan k_span = covering_blocks(shape.k_type, job.kv_head * p.dk, p.dk);
      const RowSpan v_span = p.latent ? k_span : covering_blocks(shape.v_type, job.kv_head * p.dv, p.dv);
      k_stage.resize(static_cast<size_t>(kPackPositions * k_span.n));
      if (!p.latent) v_stage.resize(static_cast<size_t>(kPackPositions * v_span.n));
      uint16_t* keys = packs.keys(p, job.seq, job.kv_head);
      uint16_t* values = packs.values(p, job.seq, job.kv_head);
      for (int64_t g = job.g0; g < job.g1; ++g) {
        for (int64_t j = 0; j < kPackPositions; ++j) {
          const int64_t pos = g * kPackPositions + j;
          float* kd = k_stage.data() + j * k_span.n;
          float* vd = p.latent ? nullptr : v_stage.data() + j * v_span.n;
          if (pos >= n_cached) {
            std::fill_n(kd, k_span.n, 0.0f);
            if (vd) std::fill_n(vd, v_span.n, 0.0f);
            continue;
          }
          const int32_t block = table[static_cast<size_t>(pos / shape.block_size)];
          const auto slot = static_cast<int32_t>(pos % shape.block_size);
          convert_row(shape.k_type, kv.k_data(layer, block, slot), k_span, convert_fn, kd);
          if (vd) convert_row(shape.v_type, kv.v_data(layer, block, slot), v_span, convert_fn, vd);
        }
        const float* k0 = k_stage.data() + k_span.offset;
        const float* v0 = p.latent ? k0 : v_stage.data() + v_span.offset;
        pack(k0, k_span.n, v0, v_span.n, p.dk, p.dv, keys + g * kPackPositions * p.dk, values + g * kPackPositions * p.dv);
      }
    }
  });
}

// A tile item: its queries through the tile kernel over its sequence's packed KV head.
void run_tile_item(const WorkItem& item, const SeqTokens& seq, const AttentionBatch& batch, const Problem& p,
                   const detail::PackedKv& packed, detail::TileAttentionFn fn, ItemScratch& s) {
  const int64_t n_rows = item.n_tok * item.n_heads;
  gather_queries(item, seq, batch, p, s);
  s.o.resize(static_cast<size_t>(n_rows * p.dv));
  fn(packed, {s.q.data(), s.n_kv.data(), n_rows, p.dk, p.dv, p.scale, s.o.data()});
  for (int64_t r = 0; r < n_rows; ++r) std::copy_n(s.o.data() + r * p.dv, p.dv, output_row(item, seq, p, r));
}

void run(ThreadPool& pool, Isa isa, TileExec exec, const Problem& p, KvCache& kv, int64_t layer, const AttentionBatch& batch) {
  if (batch.n_tokens == 0) return;
  FATHOM_CHECK(p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0);
  const Isa vec = vector_isa(isa);
  const TileFn tile_fn = pick_tile(vec, p.dk, p.dv);
  const ConvertFn convert_fn = vec == Isa::kAvx512 ? detail::convert_avx512() : vec == Isa::kAvx2 ? detail::convert_avx2() : nullptr;
  const std::vector<SeqTokens> seqs = group_by_sequence(batch);
  // The tile path: Isa::kAmx, widths of whole 32-value chunks, and enough rows per sequence.
  const bool tiles_ok = isa == Isa::kAmx && p.dk % 32 == 0 && p.dv % 32 == 0 && detail::pack_tiles() != nullptr;
  std::vector<bool> tiles(seqs.size(), false);
  TilePacks packs;
  packs.n_cached.assign(seqs.size(), 0);
  packs.n_pos.assign(seqs.size(), 0);
  int64_t packed_values = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (!tiles_ok || static_cast<int64_t>(seqs[s].tokens.size()) < kTileMinTokens) continue;
    tiles[s] = true;
    for (int64_t t : seqs[s].tokens) packs.n_cached[s] = std::max<int64_t>(packs.n_cached[s], batch.positions[t] + 1);
    packs.n_pos[s] = (packs.n_cached[s] + kPackPositions - 1) / kPackPositions * kPackPositions;
  }
  packs.offset.assign(seqs.size() * static_cast<size_t>(p.n_head_kv), 0);
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t hk = 0; hk < p.n_head_kv; ++hk) {
      packs.offset[s * static_cast<size_t>(p.n_head_kv) + static_cast<size_t>(hk)] = packed_values;
      packed_values += packs.n_pos[s] * (p.dk + p.dv);
    }
  // The calling thread's buffer, kept across calls (each engine calls from its own thread).
  static thread_local AlignedScratch<uint16_t> pack_buffer;
  if (packed_values > 0) {
    packs.data = pack_buffer.get(static_cast<size_t>(packed_values));
    pack_sequences(pool, p, kv, layer, seqs, convert_fn, packs);
  }
  const detail::TileAttentionFn tile_attention = tiles_ok ? detail::tile_attention(exec == TileExec::kEmulated) : nullptr;
  const Plan plan = make_plan(seqs, tiles, batch, p, pool.n_threads());
  const std::vector<WorkItem>& items = plan.items;
  std::vector<float> partials(static_cast<size_t>(plan.partial_floats));
  // Dynamic scheduling: causal items differ in length, so threads take the next item when done.
  std::atomic<size_t> next{0};
  pool.run_on_all([&](int) {
    static thread_local ItemScratch scratch;  // kept across calls: no allocation per layer
    for (size_t i = next.fetch_add(1, std::memory_order_relaxed); i < items.size(); i = next.fetch_add(1, std::memory_order_relaxed)) {
      const WorkItem& item = items[i];
      const SeqTokens& seq = seqs[static_cast<size_t>(item.seq)];
      if (item.tiles) run_tile_item(item, seq, batch, p, packs.head(p, static_cast<size_t>(item.seq), item.kv_head), tile_attention, scratch);
      else run_item(item, seq, batch, p, kv, layer, tile_fn, convert_fn, scratch, partials.data());
    }
  });
  merge_partials(plan, seqs, p, partials.data());
}

// (token, head) items per chunk so a chunk does ~16K multiply-adds at the batch's longest context.
int64_t reference_grain(const AttentionBatch& batch, int64_t width) {
  int64_t max_kv = 1;
  for (int64_t t = 0; t < batch.n_tokens; ++t) max_kv = std::max<int64_t>(max_kv, batch.positions[t] + 1);
  return std::max<int64_t>(1, 16384 / (max_kv * width));
}

}  // namespace

void attention(ThreadPool& pool, Isa isa, const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch,
               int64_t n_head, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out,
               TileExec exec) {
  Problem p;
  p.q_main = q;
  p.d_main = head_dim_k;
  p.n_head = n_head;
  p.n_head_kv = n_head_kv;
  p.dk = head_dim_k;
  p.dv = head_dim_v;
  p.scale = scale;
  p.out = out;
  run(pool, isa, exec, p, kv, layer, batch);
}

void mla_attention(ThreadPool& pool, Isa isa, const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer,
                   const AttentionBatch& batch, int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale,
                   float* out, TileExec exec) {
  Problem p;
  p.q_main = q_abs;
  p.d_main = kv_lora_rank;
  p.q_tail = n_rot > 0 ? q_pe : nullptr;
  p.d_tail = n_rot;
  p.n_head = n_head;
  p.n_head_kv = 1;  // every head reads the same latent rows
  p.dk = kv_lora_rank + n_rot;
  p.dv = kv_lora_rank;
  p.scale = scale;
  p.latent = true;
  p.out = out;
  run(pool, isa, exec, p, kv, layer, batch);
}

int64_t tile_pack_bytes_max(int64_t step_tokens, int64_t n_seq, int64_t n_ctx, int64_t n_head_kv, int64_t dk, int64_t dv) {
  if (dk % 32 != 0 || dv % 32 != 0) return 0;
  const int64_t seqs = std::min(n_seq, step_tokens / kTileMinTokens);
  if (seqs <= 0) return 0;
  const int64_t positions = (n_ctx + kPackPositions - 1) / kPackPositions * kPackPositions;
  int64_t bytes = 0;
  if (__builtin_mul_overflow(seqs, positions, &bytes) || __builtin_mul_overflow(bytes, n_head_kv, &bytes) ||
      __builtin_mul_overflow(bytes, dk + dv, &bytes) || __builtin_mul_overflow(bytes, int64_t{2}, &bytes))
    return -1;
  return bytes;
}

void attention_ref(ThreadPool& pool, const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                   int64_t n_head, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, float scale, float* out) {
  const int64_t group = n_head / n_head_kv;
  const int32_t block_size = kv.shape().block_size;
  // One work item per (token, head); online softmax over the sequence's blocks, so memory is
  // read once per item and no [n_ctx] score buffer is needed.
  pool.parallel_for(batch.n_tokens * n_head, reference_grain(batch, head_dim_k + head_dim_v), [&](int, int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(head_dim_v));
    std::vector<float> k_row(static_cast<size_t>(kv.shape().k_width)), v_row(static_cast<size_t>(kv.shape().v_width));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / n_head, h = item % n_head, hk = h / group;
      const float* qh = q + (t * n_head + h) * head_dim_k;
      const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
      const int64_t n_kv = static_cast<int64_t>(batch.positions[t]) + 1;
      float max_score = -INFINITY, denom = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t pos = 0; pos < n_kv; ++pos) {
        const int32_t block = table[static_cast<size_t>(pos / block_size)];
        const int32_t slot = static_cast<int32_t>(pos % block_size);
        kv.load_k(layer, block, slot, k_row.data());
        const float* kr = k_row.data() + hk * head_dim_k;
        float s = 0.0f;
        for (int64_t i = 0; i < head_dim_k; ++i) s += qh[i] * kr[i];
        s *= scale;
        kv.load_v(layer, block, slot, v_row.data());
        const float* vr = v_row.data() + hk * head_dim_v;
        if (s > max_score) {
          const float correction = std::exp(max_score - s);
          denom *= correction;
          for (int64_t i = 0; i < head_dim_v; ++i) acc[static_cast<size_t>(i)] *= correction;
          max_score = s;
        }
        const float p = std::exp(s - max_score);
        denom += p;
        for (int64_t i = 0; i < head_dim_v; ++i) acc[static_cast<size_t>(i)] += p * vr[i];
      }
      float* o = out + (t * n_head + h) * head_dim_v;
      const float inv = 1.0f / denom;
      for (int64_t i = 0; i < head_dim_v; ++i) o[i] = acc[static_cast<size_t>(i)] * inv;
    }
  });
}

void mla_attention_ref(ThreadPool& pool, const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer,
                       const AttentionBatch& batch, int64_t n_head, int64_t kv_lora_rank, int64_t n_rot, float scale,
                       float* out) {
  const int32_t block_size = kv.shape().block_size;
  // One work item per (token, head), online softmax as in attention_ref(): the latent row of
  // each position serves as both key (with k_pe) and value.
  pool.parallel_for(batch.n_tokens * n_head, reference_grain(batch, 2 * kv_lora_rank + n_rot), [&](int, int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(kv_lora_rank));
    std::vector<float> latent_row(static_cast<size_t>(kv.shape().k_width));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / n_head, h = item % n_head;
      const float* qa = q_abs + (t * n_head + h) * kv_lora_rank;
      const float* qp = q_pe + (t * n_head + h) * n_rot;
      const std::vector<int32_t>& table = kv.block_table(batch.seq_ids[t]);
      const int64_t n_kv = static_cast<int64_t>(batch.positions[t]) + 1;
      float max_score = -INFINITY, denom = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t pos = 0; pos < n_kv; ++pos) {
        kv.load_k(layer, table[static_cast<size_t>(pos / block_size)], static_cast<int32_t>(pos % block_size), latent_row.data());
        const float* row = latent_row.data();
        float s = 0.0f;
        for (int64_t i = 0; i < kv_lora_rank; ++i) s += qa[i] * row[i];
        for (int64_t i = 0; i < n_rot; ++i) s += qp[i] * row[kv_lora_rank + i];
        s *= scale;
        if (s > max_score) {
          const float correction = std::exp(max_score - s);
          denom *= correction;
          for (float& a : acc) a *= correction;
          max_score = s;
        }
        const float p = std::exp(s - max_score);
        denom += p;
        for (int64_t i = 0; i < kv_lora_rank; ++i) acc[static_cast<size_t>(i)] += p * row[i];
      }
      float* o = out + (t * n_head + h) * kv_lora_rank;
      for (int64_t i = 0; i < kv_lora_rank; ++i) o[i] = acc[static_cast<size_t>(i)] / denom;
    }
  });
}

}  // namespace fathom::cpu
