// Causal attention over the paged KV cache, softmax computed online (one pass over the keys).
//
// One work-group per (token, head). The query sits in local memory; each round the WG lanes
// score WG consecutive positions (one key row each), the round's maximum rescales the running
// sum, and then every lane accumulates its own output dims (lid, lid + WG, ...) over the round's
// positions, so value rows are read by consecutive lanes.
//
// The cache is [n_blocks, block_size, row bytes] per layer, rows in the cache's stored type
// (KvCacheShape k_type/v_type): f32, f16, or q8_0 (32-value blocks of an f16 scale and 32 int8
// running over the whole row, so a head may start inside a block). Values are converted to
// f32 as they are read and every sum is f32. Position p of the token's sequence is in block
// tables[t * max_blocks + p / block_size], slot p % block_size. The same kernel serves MLA:
// keys are the latent rows [c_kv | k_pe] (head_dim_k = kv_lora_rank + n_rot, one kv head for
// all heads) and values the c_kv part of the same rows.

#define ATT_MAX_QUERY 1024     // head_dim_k limit (query in local memory)
#define ATT_DIMS_PER_LANE 8    // head_dim_v limit is WG * ATT_DIMS_PER_LANE

// Stored types of a cache row (the kernel names' suffixes).
#define KV_F32 0
#define KV_F16 1
#define KV_Q8_0 2

// Value e of a cache row stored as `type`. The row starts at a multiple of 2 bytes (of 4 for f32).
inline float kv_value(global const uchar* row, int e, const int type) {
  if (type == KV_F32) return ((global const float*)row)[e];
  if (type == KV_F16) return vload_half(e, (global const half*)row);
  global const uchar* block = row + (e / 32) * 34;  // q8_0: f16 scale, then 32 int8
  return vload_half(0, (global const half*)block) * (float)((global const char*)block)[2 + e % 32];
}

// q: [n_tokens, n_head, head_dim_k]; out: [n_tokens, n_head, head_dim_v]; k_offset/v_offset:
// byte offset of the layer's block 0 in k/v; k_row_bytes/v_row_bytes: bytes per cached token
// row. q_local [ATT_MAX_QUERY] and scores [WG] are the kernel's local memory.
inline void attend_rows(global const float* q, global const uchar* k, global const uchar* v, global const int* tables,
                        int max_blocks, global const int* positions, int n_head, int group, int head_dim_k,
                        int head_dim_v, ulong k_row_bytes, ulong v_row_bytes, int block_size, float scale,
                        global float* out, local float* q_local, local float* scores, const int k_type, const int v_type) {
  const int lid = get_local_id(0);
  const int t = get_group_id(0) / n_head;
  const int h = get_group_id(0) % n_head;
  const int kv_head = h / group;
  global const int* table = tables + (ulong)t * max_blocks;
  for (int i = lid; i < head_dim_k; i += WG) q_local[i] = q[((ulong)t * n_head + h) * head_dim_k + i];
  barrier(CLK_LOCAL_MEM_FENCE);

  const int n_kv = positions[t] + 1;
  const int k_first = kv_head * head_dim_k, v_first = kv_head * head_dim_v;  // the head's first value in a row
  float max_score = -INFINITY, denom = 0.0f;
  float acc[ATT_DIMS_PER_LANE];
  for (int j = 0; j < ATT_DIMS_PER_LANE; ++j) acc[j] = 0.0f;

  for (int p0 = 0; p0 < n_kv; p0 += WG) {
    const int p = p0 + lid;
    float s = -INFINITY;
    if (p < n_kv) {
      const ulong row = (ulong)table[p / block_size] * block_size + p % block_size;
      global const uchar* kr = k + row * k_row_bytes;
      float d = 0.0f;
      for (int i = 0; i < head_dim_k; ++i) d += q_local[i] * kv_value(kr, k_first + i, k_type);
      s = d * scale;
    }
    scores[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    const int n_round = min(WG, n_kv - p0);
    float round_max = max_score;
    for (int j = 0; j < n_round; ++j) round_max = fmax(round_max, scores[j]);
    const float correction = exp(max_score - round_max);  // 0 on the first round
    denom *= correction;
    for (int j = 0; j < ATT_DIMS_PER_LANE; ++j) acc[j] *= correction;
    for (int j = 0; j < n_round; ++j) {
      const float w = exp(scores[j] - round_max);
      denom += w;
      const int pos = p0 + j;
      const ulong row = (ulong)table[pos / block_size] * block_size + pos % block_size;
      global const uchar* vr = v + row * v_row_bytes;
      for (int jj = 0; jj < ATT_DIMS_PER_LANE; ++jj) {
        const int dim = lid + jj * WG;
        if (dim < head_dim_v) acc[jj] += w * kv_value(vr, v_first + dim, v_type);
      }
    }
    max_score = round_max;
    barrier(CLK_LOCAL_MEM_FENCE);  // scores is rewritten next round
  }
  global float* o = out + ((ulong)t * n_head + h) * head_dim_v;
  const float inv = 1.0f / denom;
  for (int jj = 0; jj < ATT_DIMS_PER_LANE; ++jj) {
    const int dim = lid + jj * WG;
    if (dim < head_dim_v) o[dim] = acc[jj] * inv;
  }
}

// attention_<K type>_<V type>: one kernel per pair of stored types, the type tests folded away.
#define ATTENTION_KERNEL(K, V)                                                                                          \
  kernel void attention_##K##_##V(global const float* q, global const uchar* k, ulong k_offset, global const uchar* v,  \
                                  ulong v_offset, global const int* tables, int max_blocks, global const int* positions, \
                                  int n_head, int group, int head_dim_k, int head_dim_v, ulong k_row_bytes,              \
                                  ulong v_row_bytes, int block_size, float scale, global float* out) {                   \
    local float q_local[ATT_MAX_QUERY];                                                                                 \
    local float scores[WG];                                                                                             \
    attend_rows(q, k + k_offset, v + v_offset, tables, max_blocks, positions, n_head, group, head_dim_k, head_dim_v,   \
                k_row_bytes, v_row_bytes, block_size, scale, out, q_local, scores, KV_##K, KV_##V);                     \
  }

#define KV_f32 KV_F32
#define KV_f16 KV_F16
#define KV_q8_0 KV_Q8_0
ATTENTION_KERNEL(f32, f32)
ATTENTION_KERNEL(f32, f16)
ATTENTION_KERNEL(f32, q8_0)
ATTENTION_KERNEL(f16, f32)
ATTENTION_KERNEL(f16, f16)
ATTENTION_KERNEL(f16, q8_0)
ATTENTION_KERNEL(q8_0, f32)
ATTENTION_KERNEL(q8_0, f16)
ATTENTION_KERNEL(q8_0, q8_0)
