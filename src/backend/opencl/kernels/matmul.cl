// Matrix-vector and matrix-matrix products of GGUF block-format weights with f32 activations.
// Weights are read in their on-disk block layout (src/quant/blocks.h), in place from the mapped
// file; activations stay f32, so results match the f32 dot of the dequantized weights (in the
// f16-accumulation variant up to the half roundings inside each block).
//
// Work split: one work-group of WG lanes per output row; lanes take the row's blocks in turn and
// the partial sums meet in local memory (store_lane_sums, common.cl), where lane t adds up token
// t's. matvec_* serve one token; matmat_* take MM_TOKENS tokens per work-group, so every weight
// block fetched feeds MM_TOKENS dot products. x_offset and y_offset (in elements) place one
// product's activations and outputs inside buffers a whole batch of products shares.
//
// The int8 variant (FATHOM_INT_DOT, FATHOM_INT_DOT_EMULATED) adds matvec_/matmat_q4_0_q8,
// q8_0_q8 and iq4_nl_q8 (the types whose CPU dots take q8_0 activations): activations rounded
// to int8 blocks by quantize_q8_act as the CPU backend rounds them, then integer dot products
// per block, so they compute what the CPU backend computes.

#define MM_TOKENS 8

// Each dot_* multiplies one weight block with the activations it covers. Where the block's scale
// goes depends on the accumulation: f32 sums take the raw quantized values and scale the block's
// sum once (a multiply per value fewer, as before the variants existed); half sums take the values
// dequantized, as src/quant's dequantize_row makes them, because a raw q8 value times a large
// activation would overflow half.
#if defined(FATHOM_ACC_F16) || defined(FATHOM_ACC_F16_EMULATED)
#define HALF_SUMS 1
#define SCALE_INSIDE(d) (d)
#define SCALE_OUTSIDE(d) 1.0f
#else
#define SCALE_INSIDE(d) 1.0f
#define SCALE_OUTSIDE(d) (d)
#endif

// q4_0: 32 values, w = (nibble - 8) * d; value j < 16 is the low nibble of qs[j], j >= 16 the high one.
inline float dot_q4_0(global const uchar* b, global const float* x) {
  const float d = load_half(b), d_in = SCALE_INSIDE(d);
  block_acc s = 0;
  for (int j = 0; j < 16; ++j) {
    const uchar q = b[2 + j];
    s = BLOCK_MAD2(s, (float)((int)(q & 15) - 8) * d_in, x[j], (float)((int)(q >> 4) - 8) * d_in, x[j + 16]);
  }
  return (float)s * SCALE_OUTSIDE(d);
}

// q8_0: 32 values, w = q * d with q signed 8-bit.
inline float dot_q8_0(global const uchar* b, global const float* x) {
  const float d = load_half(b), d_in = SCALE_INSIDE(d);
  global const char* q = (global const char*)(b + 2);
  block_acc s = 0;
  for (int j = 0; j < 32; ++j) s = BLOCK_MAD(s, (float)q[j] * d_in, x[j]);
  return (float)s * SCALE_OUTSIDE(d);
}

// Scale and min j (6 bits each) of a q4_K super-block (see unpack_scale_min_k4 in blocks.h).
inline float2 scale_min_k4(int j, global const uchar* q) {
  if (j < 4) return (float2)((float)(q[j] & 63), (float)(q[j + 4] & 63));
  return (float2)((float)((q[j + 4] & 15) | ((q[j - 4] >> 6) << 4)), (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4)));
}

// q4_K: 256 values in 8 sub-blocks of 32, w = d * scale[j] * q - dmin * min[j]. Chunk c of 64
// values: the low nibbles of qs[32c..32c+31], then their high nibbles. f32: per sub-block the sums
// of q * x and of x, scaled once; half: each 32-value sub-block is one block_acc sum.
inline float dot_q4_K(global const uchar* b, global const float* x) {
  const float d = load_half(b), dmin = load_half(b + 2);
  global const uchar* scales = b + 4;
  global const uchar* qs = b + 16;
  float s = 0.0f;
  for (int c = 0; c < 4; ++c) {
    const float2 sm_lo = scale_min_k4(2 * c, scales), sm_hi = scale_min_k4(2 * c + 1, scales);
#if defined(HALF_SUMS)
    const float d_lo = d * sm_lo.x, m_lo = dmin * sm_lo.y, d_hi = d * sm_hi.x, m_hi = dmin * sm_hi.y;
    block_acc s_lo = 0, s_hi = 0;
    for (int l = 0; l < 32; ++l) {
      const uchar q = qs[32 * c + l];
      s_lo = BLOCK_MAD(s_lo, d_lo * (float)(q & 15) - m_lo, x[64 * c + l]);
      s_hi = BLOCK_MAD(s_hi, d_hi * (float)(q >> 4) - m_hi, x[64 * c + 32 + l]);
    }
    s += (float)s_lo + (float)s_hi;
#else
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
#endif
  }
  return s;
}

// The 16 levels of iq4_nl and iq4_xs (kIq4nlValues in src/quant/blocks.h, normative format data).
constant char kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Products of 32 iq4 values (q4_0's nibble order: value j < 16 the low nibble of qs[j], j >= 16
// the high one) with their activations, w = dl * kIq4nlValues[nibble].
inline float dot_iq4_group(global const uchar* qs, global const float* x, float dl) {
  const float dl_in = SCALE_INSIDE(dl);
  block_acc s = 0;
  for (int j = 0; j < 16; ++j) {
    const uchar q = qs[j];
    s = BLOCK_MAD2(s, (float)kIq4nlValues[q & 15] * dl_in, x[j], (float)kIq4nlValues[q >> 4] * dl_in, x[j + 16]);
  }
  return (float)s * SCALE_OUTSIDE(dl);
}

// iq4_nl: 32 values, one fp16 scale d.
inline float dot_iq4_nl(global const uchar* b, global const float* x) { return dot_iq4_group(b + 2, x, load_half(b)); }

// iq4_xs: 256 values in 8 sub-blocks of 32 with 6-bit scales (minus 32): the low 4 bits of
// sub-block g in nibble g % 2 of scales_l[g / 2] (bytes 4..7), the high 2 bits at bit 2g of the
// little-endian scales_h (bytes 2, 3); sub-block g's indices in qs[16g..16g+15] (from byte 8).
// Each sub-block is one block_acc sum, its scale d * (scale - 32) as dequantize_row makes it.
inline float dot_iq4_xs(global const uchar* b, global const float* x) {
  const float d = load_half(b);
  const uint scales_h = (uint)b[2] | ((uint)b[3] << 8);
  float s = 0.0f;
  for (int g = 0; g < 8; ++g) {
    const int scale = (int)(((b[4 + g / 2] >> (4 * (g % 2))) & 15) | (((scales_h >> (2 * g)) & 3) << 4)) - 32;
    s += dot_iq4_group(b + 8 + 16 * g, x + 32 * g, d * (float)scale);
  }
  return s;
}

// f32 and f16 rows, taken 4 values at a time. Always f32 sums: these formats are chosen for
// precision, while for the block formats the weights' own rounding dwarfs that of half sums.
inline float dot_f32(global const uchar* b, global const float* x) {
  return dot(vload4(0, (global const float*)b), vload4(0, x));
}

inline float dot_f16(global const uchar* b, global const float* x) {
  return dot(vload_half4(0, (global const half*)b), vload4(0, x));
}

// The body of every matmul kernel: y[y_offset + t * n_out + row] = W[row, :] . (token t0 + t's
// activations) for the TOKENS tokens from t0 = group(1) * TOKENS; lanes take the row's blocks in
// turn. TERM(DOT, QK, wb, t, blk) is weight block wb (block blk of the row) times token t's
// activations, as each kernel family stores them. Global size: (n_out * WG, ceil(n_tokens /
// TOKENS)); local (WG, 1). w_offset: byte offset of row 0 in w; row_bytes: bytes per weight row.
#define MATMUL_BODY(QK, BLOCK_BYTES, DOT, TOKENS, TERM)                                                        \
    local float partial[TOKENS * WG]; /* [token][lane] partial sums */                                          \
    local float scratch[WG];                                                                                   \
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
      for (int t = 0; t < n_here; ++t) acc[t] += TERM(DOT, QK, wb, t, blk);                                    \
    }                                                                                                          \
    store_lane_sums(acc, TOKENS, n_here, partial, scratch, y + y_offset + (ulong)t0 * n_out + row, n_out)

// f32 activations x[x_offset + t * n_in + ...].
#define F32_TERM(DOT, QK, wb, t, blk) DOT(wb, x + x_offset + (ulong)(t0 + (t)) * n_in + (ulong)(blk) * (QK))
#define DEFINE_MATMUL(NAME, QK, BLOCK_BYTES, DOT, TOKENS)                                                      \
  kernel void NAME(global const uchar* w, ulong w_offset, ulong row_bytes, int n_in, int n_out,                \
                   global const float* x, ulong x_offset, global float* y, ulong y_offset, int n_tokens) {    \
    MATMUL_BODY(QK, BLOCK_BYTES, DOT, TOKENS, F32_TERM);                                                       \
  }

DEFINE_MATMUL(matvec_q4_0, 32, 18, dot_q4_0, 1)
DEFINE_MATMUL(matmat_q4_0, 32, 18, dot_q4_0, MM_TOKENS)
DEFINE_MATMUL(matvec_q8_0, 32, 34, dot_q8_0, 1)
DEFINE_MATMUL(matmat_q8_0, 32, 34, dot_q8_0, MM_TOKENS)
DEFINE_MATMUL(matvec_q4_K, 256, 144, dot_q4_K, 1)
DEFINE_MATMUL(matmat_q4_K, 256, 144, dot_q4_K, MM_TOKENS)
DEFINE_MATMUL(matvec_iq4_nl, 32, 18, dot_iq4_nl, 1)
DEFINE_MATMUL(matmat_iq4_nl, 32, 18, dot_iq4_nl, MM_TOKENS)
DEFINE_MATMUL(matvec_iq4_xs, 256, 136, dot_iq4_xs, 1)
DEFINE_MATMUL(matmat_iq4_xs, 256, 136, dot_iq4_xs, MM_TOKENS)
DEFINE_MATMUL(matvec_f32, 4, 16, dot_f32, 1)
DEFINE_MATMUL(matmat_f32, 4, 16, dot_f32, MM_TOKENS)
DEFINE_MATMUL(matvec_f16, 4, 8, dot_f16, 1)
DEFINE_MATMUL(matmat_f16, 4, 8, dot_f16, MM_TOKENS)

#if defined(FATHOM_INT_DOT) || defined(FATHOM_INT_DOT_EMULATED)
// DOT4_ACC(a, b, acc): acc + the dot product of the four signed bytes packed in a and in b. The
// block sums (at most 32 * 127 * 128) never saturate, so the saturating builtin adds the same.
#if defined(FATHOM_INT_DOT) && defined(__opencl_c_integer_dot_product_input_4x8bit_packed)
#define DOT4_ACC(a, b, acc) dot_acc_sat_4x8packed_ss_int(a, b, acc)
#elif defined(FATHOM_INT_DOT)
#define DOT4_ACC(a, b, acc) ((acc) + dot(as_char4(a), as_char4(b)))
#else
inline int dot4_emulated(uint a, uint b, int acc) {
  const char4 va = as_char4(a), vb = as_char4(b);
  return acc + va.x * vb.x + va.y * vb.y + va.z * vb.z + va.w * vb.w;
}
#define DOT4_ACC(a, b, acc) dot4_emulated(a, b, acc)
#endif

// x to int8 blocks of 32 as the CPU backend rounds activations (quantize_q8_0 in
// src/quant/quant_legacy.cpp): d = amax / 127 kept at half precision, q = round(x / d). Block i
// of the x_offset.. activations goes to xq[q_offset + 32 i ..] and its scale to xd[q_offset / 32 + i].
// One work item per block.
kernel void quantize_q8_act(global const float* x, ulong x_offset, global char* xq, global float* xd, ulong q_offset,
                            int n_blocks) {
  const int blk = get_global_id(0);
  if (blk >= n_blocks) return;
  global const float* xb = x + x_offset + (ulong)blk * 32;
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmax(amax, fabs(xb[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  global char* q = xq + q_offset + (ulong)blk * 32;
  for (int j = 0; j < 32; ++j) q[j] = (char)round(xb[j] * id);
  xd[q_offset / 32 + blk] = round_to_half(d);
}

// Weight block times 32 int8 activations with scale xd: sum(q_w * q_x) * d_w * xd, as
// dot_q8_0_q8_0 and dot_q4_0_q8_0 in src/quant compute it.
inline float dot_q8_0_q8(global const uchar* b, global const char* xq, float xd) {
  global const char* q = (global const char*)(b + 2);
  int s = 0;
  for (int i = 0; i < 8; ++i) s = DOT4_ACC(as_uint(vload4(i, q)), as_uint(vload4(i, xq)), s);
  return (float)s * (load_half(b) * xd);
}

inline float dot_q4_0_q8(global const uchar* b, global const char* xq, float xd) {
  int s = 0;
  for (int i = 0; i < 4; ++i) {
    const uchar4 q = vload4(i, b + 2);  // values 4i..4i+3 (low nibbles) and 16+4i.. (high)
    const uint lo = as_uint(convert_char4(q & (uchar)15) - (char4)8);
    const uint hi = as_uint(convert_char4(q >> (uchar)4) - (char4)8);
    s = DOT4_ACC(lo, as_uint(vload4(i, xq)), s);
    s = DOT4_ACC(hi, as_uint(vload4(i + 4, xq)), s);
  }
  return (float)s * (load_half(b) * xd);
}

// iq4_nl as q4_0, the nibbles looked up in the codebook (int8 levels), as dot_iq4_nl_q8_0 in
// src/quant computes it.
inline char4 iq4_levels(uchar4 q) {
  return (char4)(kIq4nlValues[q.x], kIq4nlValues[q.y], kIq4nlValues[q.z], kIq4nlValues[q.w]);
}

inline float dot_iq4_nl_q8(global const uchar* b, global const char* xq, float xd) {
  int s = 0;
  for (int i = 0; i < 4; ++i) {
    const uchar4 q = vload4(i, b + 2);  // values 4i..4i+3 (low nibbles) and 16+4i.. (high)
    s = DOT4_ACC(as_uint(iq4_levels(q & (uchar)15)), as_uint(vload4(i, xq)), s);
    s = DOT4_ACC(as_uint(iq4_levels(q >> (uchar)4)), as_uint(vload4(i + 4, xq)), s);
  }
  return (float)s * (load_half(b) * xd);
}

// As DEFINE_MATMUL, on the int8 activations quantize_q8_act left at xq[x_offset..] (scales at
// xd[x_offset / 32..]).
#define Q8_AT(t, blk) (x_offset + (ulong)(t0 + (t)) * n_in + (ulong)(blk) * 32)
#define Q8_TERM(DOT, QK, wb, t, blk) DOT(wb, xq + Q8_AT(t, blk), xd[Q8_AT(t, blk) / 32])
#define DEFINE_MATMUL_Q8(NAME, BLOCK_BYTES, DOT, TOKENS)                                                       \
  kernel void NAME(global const uchar* w, ulong w_offset, ulong row_bytes, int n_in, int n_out,                \
                   global const char* xq, global const float* xd, ulong x_offset, global float* y,             \
                   ulong y_offset, int n_tokens) {                                                             \
    MATMUL_BODY(32, BLOCK_BYTES, DOT, TOKENS, Q8_TERM);                                                        \
  }

DEFINE_MATMUL_Q8(matvec_q4_0_q8, 18, dot_q4_0_q8, 1)
DEFINE_MATMUL_Q8(matmat_q4_0_q8, 18, dot_q4_0_q8, MM_TOKENS)
DEFINE_MATMUL_Q8(matvec_q8_0_q8, 34, dot_q8_0_q8, 1)
DEFINE_MATMUL_Q8(matmat_q8_0_q8, 34, dot_q8_0_q8, MM_TOKENS)
DEFINE_MATMUL_Q8(matvec_iq4_nl_q8, 18, dot_iq4_nl_q8, 1)
DEFINE_MATMUL_Q8(matmat_iq4_nl_q8, 18, dot_iq4_nl_q8, MM_TOKENS)
#endif
