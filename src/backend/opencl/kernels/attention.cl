// Causal attention over the paged KV cache, softmax computed online (one pass over the keys).
//
// One work-group per (token, head). The query sits in local memory; each round the WG lanes
// score WG consecutive positions (one key row each), the round's maximum rescales the running
// sum, and then every lane accumulates its own output dims (lid, lid + WG, ...) over the round's
// positions, so value rows are read by consecutive lanes.
//
// The cache is [n_blocks, block_size, width] floats per layer; position p of the token's
// sequence is in block tables[t * max_blocks + p / block_size], slot p % block_size. The same
// kernel serves MLA: keys are the latent rows [c_kv | k_pe] (head_dim_k = kv_lora_rank + n_rot,
// one kv head for all heads) and values the c_kv part of the same rows.

#define ATT_MAX_QUERY 1024     // head_dim_k limit (query in local memory)
#define ATT_DIMS_PER_LANE 8    // head_dim_v limit is WG * ATT_DIMS_PER_LANE

// q: [n_tokens, n_head, head_dim_k]; out: [n_tokens, n_head, head_dim_v]; k_offset/v_offset:
// float offset of the layer's block 0 in k/v; k_width/v_width: floats per cached token row.
kernel void attention_f32(global const float* q, global const float* k, ulong k_offset, global const float* v,
                          ulong v_offset, global const int* tables, int max_blocks, global const int* positions,
                          int n_head, int group, int head_dim_k, int head_dim_v, int k_width, int v_width,
                          int block_size, float scale, global float* out) {
  local float q_local[ATT_MAX_QUERY];
  local float scores[WG];
  const int lid = get_local_id(0);
  const int t = get_group_id(0) / n_head;
  const int h = get_group_id(0) % n_head;
  const int kv_head = h / group;
  global const int* table = tables + (ulong)t * max_blocks;
  for (int i = lid; i < head_dim_k; i += WG) q_local[i] = q[((ulong)t * n_head + h) * head_dim_k + i];
  barrier(CLK_LOCAL_MEM_FENCE);

  const int n_kv = positions[t] + 1;
  float max_score = -INFINITY, denom = 0.0f;
  float acc[ATT_DIMS_PER_LANE];
  for (int j = 0; j < ATT_DIMS_PER_LANE; ++j) acc[j] = 0.0f;

  for (int p0 = 0; p0 < n_kv; p0 += WG) {
    const int p = p0 + lid;
    float s = -INFINITY;
    if (p < n_kv) {
      const ulong row = (ulong)table[p / block_size] * block_size + p % block_size;
      global const float* kr = k + k_offset + row * k_width + (ulong)kv_head * head_dim_k;
      float d = 0.0f;
      for (int i = 0; i < head_dim_k; ++i) d += q_local[i] * kr[i];
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
      global const float* vr = v + v_offset + row * v_width + (ulong)kv_head * head_dim_v;
      for (int jj = 0; jj < ATT_DIMS_PER_LANE; ++jj) {
        const int dim = lid + jj * WG;
        if (dim < head_dim_v) acc[jj] += w * vr[dim];
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
