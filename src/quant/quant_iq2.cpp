// Reference kernels of the 2-bit i-quants IQ2_XXS, IQ2_XS and IQ2_S (decoding and dot products
// as ggml defines them; no quantizer yet). A 256-value super-block is 32 groups of 8 values; a
// group stores a grid index (8 magnitudes, iq2_grids.h) and 8 sign bits, and every 16 or 32
// values share a 4-bit scale s:
//   x = d * (0.5 + s) * 0.25 * grid[j] * sign[j]        (d: the fp16 super-block scale)
// The dot product with Q8_K activations keeps the integer form (0.5 + s) * 0.25 = (2s + 1) / 8:
//   sum over super-blocks of (d * y.d) * sum_k (2 s_k + 1) * sum_{i in k} q_i * y_i,  times 1/8,
// the integer sum per super-block exact, the float accumulation in block order.
//
// Group l of 32-value unit u (values 32u + 8l .. +7):
//   IQ2_XXS: the unit's 8 bytes are two little-endian words w0, w1: index = byte l of w0, 7 sign
//            bits = bits 7l.. of w1, s = w1 >> 28 for all 32 values;
//   IQ2_XS:  qs[4u + l] = 9-bit index | 7 sign bits << 9; s = scales[u] low nibble for groups
//            0-1, high nibble for groups 2-3;
//   IQ2_S:   index = qs[4u + l] | bits 2l, 2l+1 of qh[u] << 8, sign byte = qs[32 + 4u + l] (all
//            8 bits stored); scales as IQ2_XS.
// IQ2_XXS and IQ2_XS store 7 sign bits and derive the 8th (iq_signs.h).
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq2_grids.h"
#include "quant/iq_signs.h"
#include "quant/quant_impl.h"

namespace fathom::quant::detail {

namespace {

// A super-block decoded: signed magnitudes and one 4-bit scale per 16 values.
struct Iq2Decoded {
  int8_t q[kQK];      // grid magnitude with its sign, per value
  uint8_t scale[16];  // s of values 16k .. 16k+15
};

// Group of 8 values from a grid entry and its sign mask.
void put_group(uint64_t entry, uint8_t signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const auto magnitude = static_cast<int8_t>(entry >> (8 * j));
    q[j] = (signs >> j) & 1 ? static_cast<int8_t>(-magnitude) : magnitude;
  }
}

uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // little-endian, as GGUF
}

void decode(const block_iq2_xxs& b, Iq2Decoded& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(b.qs);
  for (int u = 0; u < 8; ++u) {
    const uint32_t indices = load_u32(bytes + 8 * u), signs = load_u32(bytes + 8 * u + 4);
    for (int l = 0; l < 4; ++l)
      put_group(kIq2xxsGrid[(indices >> (8 * l)) & 0xFF], iq_sign_byte(static_cast<uint8_t>(signs >> (7 * l))),
                out.q + 32 * u + 8 * l);
    out.scale[2 * u] = out.scale[2 * u + 1] = static_cast<uint8_t>(signs >> 28);
  }
}

void decode(const block_iq2_xs& b, Iq2Decoded& out) {
  for (int g = 0; g < 32; ++g)
    put_group(kIq2xsGrid[b.qs[g] & 511], iq_sign_byte(static_cast<uint8_t>(b.qs[g] >> 9)), out.q + 8 * g);
  for (int u = 0; u < 8; ++u) {
    out.scale[2 * u] = b.scales[u] & 0xF;
    out.scale[2 * u + 1] = b.scales[u] >> 4;
  }
}

void decode(const block_iq2_s& b, Iq2Decoded& out) {
  for (int g = 0; g < 32; ++g) {
    const int high = (b.qh[g / 4] >> (2 * (g % 4))) & 3;
    put_group(kIq2sGrid[b.qs[g] | high << 8], b.qs[32 + g], out.q + 8 * g);
  }
  for (int u = 0; u < 8; ++u) {
    out.scale[2 * u] = b.scales[u] & 0xF;
    out.scale[2 * u + 1] = b.scales[u] >> 4;
  }
}

template <typename Block>
void dequantize(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const Block*>(src);
  Iq2Decoded dec;
  for (int64_t i = 0; i < n / kQK; ++i) {
    decode(x[i], dec);
    const float d = fp16_to_fp32(x[i].d);
    for (int k = 0; k < 16; ++k) {
      const float dk = d * (0.5f + dec.scale[k]) * 0.25f;
      for (int v = 16 * k; v < 16 * k + 16; ++v) dst[v] = dk * dec.q[v];
    }
    dst += kQK;
  }
}

template <typename Block>
float dot(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  Iq2Decoded dec;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    decode(x[i], dec);
    int32_t block_sum = 0;
    for (int k = 0; k < 16; ++k) {
      int32_t s = 0;
      for (int v = 16 * k; v < 16 * k + 16; ++v) s += dec.q[v] * y[i].qs[v];
      block_sum += (2 * dec.scale[k] + 1) * s;
    }
    // An explicit fused multiply-add, so the result does not depend on whether the compiler
    // contracts (the vector kernels reproduce it bit for bit).
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(block_sum), sum);
  }
  return 0.125f * sum;
}

}  // namespace

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) { dequantize<block_iq2_xxs>(src, dst, n); }
void dequantize_iq2_xs(const void* src, float* dst, int64_t n) { dequantize<block_iq2_xs>(src, dst, n); }
void dequantize_iq2_s(const void* src, float* dst, int64_t n) { dequantize<block_iq2_s>(src, dst, n); }
float dot_iq2_xxs_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_xxs>(w, a, n); }
float dot_iq2_xs_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_xs>(w, a, n); }
float dot_iq2_s_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_s>(w, a, n); }

}  // namespace fathom::quant::detail
