// Matrix-vector and matrix-matrix products of GGUF block-format weights with f32 activations.
// Weights are read in their on-disk block layout (src/quant/blocks.h), in place from the mapped
// file; activations stay f32, so results match the f32 dot of the dequantized weights.
//
// Work split: one work-group of WG lanes per output row; lanes take the row's blocks in turn and
// the partial sums meet in local memory, where after one barrier lane t adds up token t's.
// matvec_* serve one token; matmat_* take MM_TOKENS tokens per work-group, so every weight
// block fetched feeds MM_TOKENS dot products.

#define MM_TOKENS 8

// Each dot_* multiplies one weight block with the QK activations it covers.

// q4_0: 32 values, x = (nibble - 8) * d; value j < 16 is the low nibble of qs[j], j >= 16 the high one.
inline float dot_q4_0(global const uchar* b, global const float* x) {
  const float d = load_half(b);
  float s = 0.0f;
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[2 + j];
    s += (float)((int)(q & 15) - 8) * x[j] + (float)((int)(q >> 4) - 8) * x[j + 16];
  }
  return s * d;
}

// q8_0: 32 values, x = q * d with q signed 8-bit.
inline float dot_q8_0(global const uchar* b, global const float* x) {
  const float d = load_half(b);
  global const char* q = (global const char*)(b + 2);
  float s = 0.0f;
  for (int j = 0; j < 32; ++j) s += (float)q[j] * x[j];
  return s * d;
}

// Scale and min j (6 bits each) of a q4_K super-block (see unpack_scale_min_k4 in blocks.h).
inline float2 scale_min_k4(int j, global const uchar* q) {
  if (j < 4) return (float2)((float)(q[j] & 63), (float)(q[j + 4] & 63));
  return (float2)((float)((q[j + 4] & 15) | ((q[j - 4] >> 6) << 4)), (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4)));
}

// q4_K: 256 values in 8 sub-blocks of 32, x = d * scale[j] * q - dmin * min[j]. Chunk c of 64
// values: the low nibbles of qs[32c..32c+31], then their high nibbles.
inline float dot_q4_K(global const uchar* b, global const float* x) {
  const float d = load_half(b), dmin = load_half(b + 2);
  global const uchar* scales = b + 4;
  global const uchar* qs = b + 16;
  float s = 0.0f;
  for (int c = 0; c < 4; ++c) {
    const float2 sm_lo = scale_min_k4(2 * c, scales), sm_hi = scale_min_k4(2 * c + 1, scales);
    float dot_lo = 0.0f, dot_hi = 0.0f, sum_lo = 0.0f, sum_hi = 0.0f;
    for (int l = 0; l < 32; ++l) {
      const uchar q = qs[32 * c + l];
      const float x_lo = x[64 * c + l], x_hi = x[64 * c + 32 + l];
      dot_lo += (float)(q & 15) * x_lo;
      dot_hi += (float)(q >> 4) * x_hi;
      sum_lo += x_lo;
      sum_hi += x_hi;
    }
    s += d * (sm_lo.x * dot_lo + sm_hi.x * dot_hi) - dmin * (sm_lo.y * sum_lo + sm_hi.y * sum_hi);
  }
  return s;
}

// f32 and f16 rows, taken 4 values at a time.
inline float dot_f32(global const uchar* b, global const float* x) {
  const float4 w = vload4(0, (global const float*)b);
  return dot(w, vload4(0, x));
}

inline float dot_f16(global const uchar* b, global const float* x) {
  const float4 w = vload_half4(0, (global const half*)b);
  return dot(w, vload4(0, x));
}

// y[t, row] = W[row, :] . x[t, :]. Global size: (n_out * WG, ceil(n_tokens / TOKENS)); local (WG, 1).
// w_offset: byte offset of row 0 in w; row_bytes: bytes per weight row.
#define DEFINE_MATMUL(NAME, QK, BLOCK_BYTES, DOT, TOKENS)                                                      \
  kernel void NAME(global const uchar* w, ulong w_offset, ulong row_bytes, int n_in, int n_out,                \
                   global const float* x, global float* y, int n_tokens) {                                    \
    local float partial[TOKENS * WG]; /* [token][lane] partial sums */                                          \
    const int row = get_group_id(0);                                                                           \
    const int lid = get_local_id(0);                                                                           \
    const int t0 = get_group_id(1) * TOKENS;                                                                   \
    const int n_here = min(TOKENS, n_tokens - t0);                                                             \
    global const uchar* w_row = w + w_offset + (ulong)row * row_bytes;                                         \
    const int n_blocks = n_in / QK;                                                                            \
    float acc[TOKENS];                                                                                         \
    for (int t = 0; t < TOKENS; ++t) acc[t] = 0.0f;                                                            \
    for (int blk = lid; blk < n_blocks; blk += WG) {                                                           \
      global const uchar* wb = w_row + (ulong)blk * BLOCK_BYTES;                                               \
      global const float* xb = x + (ulong)t0 * n_in + (ulong)blk * QK;                                         \
      for (int t = 0; t < n_here; ++t) acc[t] += DOT(wb, xb + (ulong)t * n_in);                                \
    }                                                                                                          \
    for (int t = 0; t < TOKENS; ++t) partial[t * WG + lid] = acc[t];                                          \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                              \
    if (lid < n_here) {                                                                                        \
      float total = 0.0f;                                                                                      \
      for (int i = 0; i < WG; ++i) total += partial[lid * WG + i];                                             \
      y[(ulong)(t0 + lid) * n_out + row] = total;                                                              \
    }                                                                                                          \
  }

DEFINE_MATMUL(matvec_q4_0, 32, 18, dot_q4_0, 1)
DEFINE_MATMUL(matmat_q4_0, 32, 18, dot_q4_0, MM_TOKENS)
DEFINE_MATMUL(matvec_q8_0, 32, 34, dot_q8_0, 1)
DEFINE_MATMUL(matmat_q8_0, 32, 34, dot_q8_0, MM_TOKENS)
DEFINE_MATMUL(matvec_q4_K, 256, 144, dot_q4_K, 1)
DEFINE_MATMUL(matmat_q4_K, 256, 144, dot_q4_K, MM_TOKENS)
DEFINE_MATMUL(matvec_f32, 4, 16, dot_f32, 1)
DEFINE_MATMUL(matmat_f32, 4, 16, dot_f32, MM_TOKENS)
DEFINE_MATMUL(matvec_f16, 4, 8, dot_f16, 1)
DEFINE_MATMUL(matmat_f16, 4, 8, dot_f16, MM_TOKENS)
