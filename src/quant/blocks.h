// On-disk block layouts of the GGUF quantized types. They must be byte-for-byte ggml's layouts
// (ggml-common.h) so files from the ecosystem load as-is; the static_asserts pin the sizes.
// Half-precision fields are raw IEEE binary16 bits (decode with fp16_to_fp32).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/host_device.h"

namespace fathom::quant {

constexpr int kQK4_0 = 32;  // values per q4_0 block
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK8_1 = 32;
constexpr int kQK = static_cast<int>(kQK_K);  // values per K-quant super-block (256)
constexpr int kKScaleBytes = 12;             // packed 6-bit scales+mins of q4_K/q5_K; 4-bit+2-bit of q3_K

// x = (q - 8) * d. Value j < 16 is the low nibble of qs[j], value j >= 16 the high nibble of qs[j-16].
struct block_q4_0 {
  uint16_t d;       // fp16 scale
  uint8_t qs[16];   // 32 x 4-bit quants, layout above
};
static_assert(sizeof(block_q4_0) == 18);

// x = q * d + m, nibbles laid out as q4_0.
struct block_q4_1 {
  uint16_t d;       // fp16 scale
  uint16_t m;       // fp16 minimum (offset)
  uint8_t qs[16];   // 32 x 4-bit quants
};
static_assert(sizeof(block_q4_1) == 20);

// x = (q - 16) * d with q = nibble | (bit j of qh) << 4; nibbles laid out as q4_0.
struct block_q5_0 {
  uint16_t d;       // fp16 scale
  uint8_t qh[4];    // little-endian uint32: bit j = 5th bit of value j
  uint8_t qs[16];   // low 4 bits of 32 values
};
static_assert(sizeof(block_q5_0) == 22);

// x = q * d + m, 5-bit q as in q5_0.
struct block_q5_1 {
  uint16_t d;       // fp16 scale
  uint16_t m;       // fp16 minimum
  uint8_t qh[4];    // 5th bits, as q5_0
  uint8_t qs[16];   // low 4 bits
};
static_assert(sizeof(block_q5_1) == 24);

// x = q * d.
struct block_q8_0 {
  uint16_t d;       // fp16 scale
  int8_t qs[32];    // quants
};
static_assert(sizeof(block_q8_0) == 34);

// x = q * d; s caches d * sum(qs) so q4_1/q5_1 dots can add their offset without a second pass.
struct block_q8_1 {
  uint16_t d;       // fp16 scale
  uint16_t s;       // fp16 d * sum(qs)
  int8_t qs[32];    // quants
};
static_assert(sizeof(block_q8_1) == 36);

// 16 sub-blocks of 16: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in 0..3.
// Value i of 128-chunk c: qs[32c + i % 32] >> (2 * (i / 32)) & 3.
struct block_q2_K {
  uint8_t scales[16];  // low nibble: 4-bit scale, high nibble: 4-bit min, per sub-block
  uint8_t qs[64];      // 2-bit quants
  uint16_t d;          // fp16 super-block scale of the scales
  uint16_t dmin;       // fp16 super-block scale of the mins
};
static_assert(sizeof(block_q2_K) == 84);

// 16 sub-blocks of 16: x = d * (sc[j] - 32) * (q - 4), q = 2 low bits (qs, as q2_K) | hmask bit << 2.
// Value i's high bit is bit (i / 32) of hmask[i % 32].
struct block_q3_K {
  uint8_t hmask[32];   // high (3rd) bit of each quant
  uint8_t qs[64];      // low 2 bits
  uint8_t scales[12];  // 16 x 6-bit scales: low 4 bits in bytes 0..7 (nibbles), high 2 bits in 8..11
  uint16_t d;          // fp16 super-block scale
};
static_assert(sizeof(block_q3_K) == 110);

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in 0..15. Chunk c of 64 values:
// values 64c..64c+31 are the low nibbles of qs[32c..], the next 32 the high nibbles.
struct block_q4_K {
  uint16_t d;          // fp16 super-block scale of the scales
  uint16_t dmin;       // fp16 super-block scale of the mins
  uint8_t scales[12];  // 8 x 6-bit scales and 8 x 6-bit mins, packed (see unpack_scale_min_k4)
  uint8_t qs[128];     // 4-bit quants
};
static_assert(sizeof(block_q4_K) == 144);

// As q4_K with a 5th bit: value 64c + i (i < 32) has it in bit 2c of qh[i], value 64c + 32 + i
// in bit 2c + 1.
struct block_q5_K {
  uint16_t d;          // fp16 super-block scale of the scales
  uint16_t dmin;       // fp16 super-block scale of the mins
  uint8_t scales[12];  // packed 6-bit scales/mins, as q4_K
  uint8_t qh[32];      // 5th bits
  uint8_t qs[128];     // low 4 bits, as q4_K
};
static_assert(sizeof(block_q5_K) == 176);

// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6-bit. In 128-chunk c (ql += 64c,
// qh += 32c), for l < 32: value l = ql[l] & 15 | (qh[l] & 3) << 4, value 32 + l = ql[32 + l] & 15
// | (qh[l] >> 2 & 3) << 4, value 64 + l = ql[l] >> 4 | (qh[l] >> 4 & 3) << 4, value 96 + l =
// ql[32 + l] >> 4 | (qh[l] >> 6) << 4.
struct block_q6_K {
  uint8_t ql[128];     // low 4 bits
  uint8_t qh[64];      // high 2 bits
  int8_t scales[16];   // 8-bit sub-block scales
  uint16_t d;          // fp16 super-block scale
};
static_assert(sizeof(block_q6_K) == 210);

// Activations for K-quant dot products: x = d * q; bsums lets the mins of q2_K/q4_K/q5_K be
// applied per sub-block without touching qs again.
struct block_q8_K {
  float d;             // f32 scale (negative when the largest-magnitude value is positive)
  int8_t qs[256];      // quants
  int16_t bsums[16];   // sum of qs[16j .. 16j+15]
};
static_assert(sizeof(block_q8_K) == 292);

// ---- i-quants and ternary types. Layouts only; the codebook grids and the
// decoding rules are documented where the reference kernels implement them.

// 2.0625 bpw: per 32 values, 4 bytes of grid indices (8 values each) then 4 bytes holding four
// 7-bit sign patterns and a 4-bit block scale.
struct block_iq2_xxs {
  uint16_t d;
  uint16_t qs[32];
};
static_assert(sizeof(block_iq2_xxs) == 66);

// 2.3125 bpw: qs = 9-bit grid index | 7-bit sign pattern; two 4-bit scales per 32 values.
struct block_iq2_xs {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};
static_assert(sizeof(block_iq2_xs) == 74);

// 2.5625 bpw: 10-bit grid indices (low 8 bits in qs, 2 high bits per index in qh), explicit signs.
struct block_iq2_s {
  uint16_t d;
  uint8_t qs[64];      // 32 grid indices (low bits), then 32 sign bytes
  uint8_t qh[8];
  uint8_t scales[8];
};
static_assert(sizeof(block_iq2_s) == 82);

// 3.0625 bpw: 64 grid indices (4 values each), then per 32 values a 32-bit word of four 7-bit
// sign patterns and a 4-bit scale.
struct block_iq3_xxs {
  uint16_t d;
  uint8_t qs[96];
};
static_assert(sizeof(block_iq3_xxs) == 98);

// 3.4375 bpw: 9-bit grid indices (8 low bits in qs, 9th in qh), explicit signs, 4-bit scales.
struct block_iq3_s {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};
static_assert(sizeof(block_iq3_s) == 110);

// 1.5625 bpw: 11-bit grid indices (8 low bits in qs, 3 high bits in qh), per 32 values a 3-bit
// scale and the sign of a shared +-delta in qh.
struct block_iq1_s {
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
};
static_assert(sizeof(block_iq1_s) == 50);

// 1.75 bpw: like iq1_s with a delta sign per 8 values and 3-bit scales per 16 values; the fp16
// super-block scale is spread over the top nibbles of the four scale words.
struct block_iq1_m {
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];
};
static_assert(sizeof(block_iq1_m) == 56);

// 4.5 bpw, 32 values: 4-bit indices into a fixed non-linear table, nibbles laid out as q4_0.
constexpr int kQK4_NL = 32;
struct block_iq4_nl {
  uint16_t d;      // fp16 scale
  uint8_t qs[16];  // 32 x 4-bit indices into kIq4nlValues: x = d * kIq4nlValues[index]
};
static_assert(sizeof(block_iq4_nl) == 18);

// The iq4_nl/iq4_xs codebook: normative GGUF format data (the 16 int8 levels a 4-bit index
// selects), which must stay byte for byte what the format defines.
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// 4.25 bpw: iq4_nl's table with a 6-bit scale per 32 values (4 low bits in scales_l, 2 high bits
// in scales_h).
// Sub-block j (32 values) is x = d * (scale(j) - 32) * kIq4nlValues[index], its indices in
// qs[16j..16j+15] laid out as q4_0's nibbles.
struct block_iq4_xs {
  uint16_t d;           // fp16 super-block scale
  uint16_t scales_h;    // bits 2j, 2j+1: the top 2 bits of sub-block j's 6-bit scale
  uint8_t scales_l[4];  // low nibbles of the scales: sub-block j in the (j % 2) nibble of byte j / 2
  uint8_t qs[128];      // 256 x 4-bit indices into kIq4nlValues
};
static_assert(sizeof(block_iq4_xs) == 136);

// The signed scale (-32..31) of sub-block j of an iq4_xs block.
FATHOM_HOST_DEVICE inline int iq4_xs_scale(const block_iq4_xs& b, int j) {
  const int low = (b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF;
  const int high = (b.scales_h >> (2 * j)) & 3;
  return (low | (high << 4)) - 32;
}

// 1.6875 bpw ternary: x = d * (t - 1), t a trit in 0..2. A byte b holds its trits as the base-3
// fraction b / 256 (rounded up when written): trit k is tq1_0_trit(b, k), most significant first.
// Value v < 160 is trit v / 32 of qs[v % 32]; 160 <= v < 240 is trit u / 16 of qs[32 + u % 16]
// (u = v - 160); v >= 240 is trit u / 4 of qh[u % 4] (u = v - 240; 4 trits per qh byte).
struct block_tq1_0 {
  uint8_t qs[48];  // 240 values, 5 trits per byte
  uint8_t qh[4];   // the last 16 values, 4 trits per byte
  uint16_t d;      // fp16 scale
};
static_assert(sizeof(block_tq1_0) == 54);

// Trit k (0..4) of a tq1_0 byte: multiplying by 3^k (mod 256) shifts trit k to the top, and
// (q * 3) >> 8 reads the top trit.
FATHOM_HOST_DEVICE inline int tq1_0_trit(uint8_t b, int k) {
  constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const auto q = static_cast<uint8_t>(b * kPow3[k]);
  return (q * 3) >> 8;
}

// 2.0625 bpw ternary: x = d * (t - 1), t the 2-bit field. Value 128c + 32l + m is bits 2l..2l+1
// of qs[32c + m] (c < 2, l < 4, m < 32).
struct block_tq2_0 {
  uint8_t qs[64];  // 256 x 2-bit fields
  uint16_t d;      // fp16 scale
};
static_assert(sizeof(block_tq2_0) == 66);

// Scale j and min j (6 bits each) of q4_K/q5_K: j < 4 sit in the low 6 bits of bytes j and
// j + 4; j >= 4 keep their low nibbles in byte j + 4 and their top 2 bits in the spare top bits
// of bytes j - 4 (scale) and j (min).
FATHOM_HOST_DEVICE inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// All 8 scales and 8 mins of q4_K/q5_K at once (same result as unpack_scale_min_k4 for each j),
// working on 32-bit words so the hot loops of dot products avoid per-j branches.
inline void unpack_scales_mins_k4(const uint8_t* q, uint8_t scales[8], uint8_t mins[8]) {
  uint32_t u[3];
  for (int w = 0; w < 3; ++w)
    u[w] = static_cast<uint32_t>(q[4 * w]) | static_cast<uint32_t>(q[4 * w + 1]) << 8 |
           static_cast<uint32_t>(q[4 * w + 2]) << 16 | static_cast<uint32_t>(q[4 * w + 3]) << 24;
  const uint32_t sc_lo = u[0] & 0x3f3f3f3fu;
  const uint32_t m_lo = u[1] & 0x3f3f3f3fu;
  const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
  const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
  for (int b = 0; b < 4; ++b) {
    scales[b] = static_cast<uint8_t>(sc_lo >> (8 * b));
    scales[b + 4] = static_cast<uint8_t>(sc_hi >> (8 * b));
    mins[b] = static_cast<uint8_t>(m_lo >> (8 * b));
    mins[b + 4] = static_cast<uint8_t>(m_hi >> (8 * b));
  }
}

// Signed 6-bit scale j (-32..31) of q3_K.
inline int q3_K_scale(int j, const uint8_t* scales) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace fathom::quant
