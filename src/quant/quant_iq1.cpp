// Reference kernels of the 1-bit i-quants IQ1_S and IQ1_M. Each group of eight values is an entry
// of kIq1SGrid (values -1, 0, +1) picked by an 11-bit index, shifted by +-delta (kIq1SDelta) and
// scaled: x = d * ls * (grid value + delta), ls = 2s + 1 with a 3-bit s.
//   IQ1_S: per 32-value sub-block k, qh[k] holds the top 3 index bits of its four groups
//          (bits 3l..3l+2), s (bits 12..14) and the delta sign (bit 15, set: -delta); d is fp16.
//   IQ1_M: per 16 values a 3-bit s (sub-block k: bits 6(k%2)..+2 and +3..+5 of scale word k/2);
//          per 8 values the top 3 index bits and the delta sign (nibble l%2 of qh[2k + l/2]:
//          bits 0..2 index, bit 3 sign); the fp16 d is the top nibbles of the four scale words.
// The dots against Q8_K sum integers per super-block, the delta part from sums of the
// activations (Q8_K's bsums for IQ1_S), and scale once, as ggml does; the
// per-super-block accumulation is an explicit fma so every kernel (src/backend/cpu) can repeat it
// bit for bit whatever the compiler would contract.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq1_grids.h"
#include "quant/quant_impl.h"

namespace fathom::quant::detail {

namespace {

// One super-block decoded: grid values, integer scale per 16 values, delta sign per 8 values.
struct Iq1Block {
  float d;        // super-block scale
  int8_t q[256];  // grid values -1, 0, +1
  int ls[16];     // odd scale of values 16j..16j+15
  int delta[32];  // +1 or -1: sign of the delta of values 8g..8g+7
};

void put_group(int index, int8_t* q) {
  const uint64_t entry = kIq1SGrid[static_cast<size_t>(index)];
  for (int j = 0; j < 8; ++j) q[j] = static_cast<int8_t>(static_cast<uint8_t>(entry >> (8 * j)));
}

void decode_iq1_s(const block_iq1_s& b, Iq1Block& out) {
  out.d = fp16_to_fp32(b.d);
  for (int k = 0; k < 8; ++k) {
    const unsigned h = b.qh[k];
    out.ls[2 * k] = out.ls[2 * k + 1] = 2 * static_cast<int>((h >> 12) & 7) + 1;
    for (int l = 0; l < 4; ++l) {
      put_group(b.qs[4 * k + l] | static_cast<int>(((h >> (3 * l)) & 7) << 8), out.q + 32 * k + 8 * l);
      out.delta[4 * k + l] = h & 0x8000 ? -1 : 1;
    }
  }
}

void decode_iq1_m(const block_iq1_m& b, Iq1Block& out) {
  uint16_t words[4];
  std::memcpy(words, b.scales, sizeof(words));
  out.d = fp16_to_fp32(iq1_m_scale_bits(words));
  for (int k = 0; k < 8; ++k) {
    const unsigned w = words[k / 2] >> (6 * (k % 2));
    out.ls[2 * k] = 2 * static_cast<int>(w & 7) + 1;
    out.ls[2 * k + 1] = 2 * static_cast<int>((w >> 3) & 7) + 1;
    for (int l = 0; l < 4; ++l) {
      const unsigned nibble = (b.qh[2 * k + l / 2] >> (4 * (l % 2))) & 0xF;
      put_group(b.qs[4 * k + l] | static_cast<int>((nibble & 7) << 8), out.q + 32 * k + 8 * l);
      out.delta[4 * k + l] = nibble & 8 ? -1 : 1;
    }
  }
}

void dequantize_iq1(const Iq1Block& b, float delta, float* dst) {
  for (int i = 0; i < 256; ++i) {
    const float dl = b.d * static_cast<float>(b.ls[i / 16]);
    dst[i] = dl * (static_cast<float>(b.q[i]) + (b.delta[i / 8] < 0 ? -delta : delta));
  }
}

// sum ls * (q . y) over the block.
int32_t grid_sum(const Iq1Block& b, const int8_t* y) {
  int32_t total = 0;
  for (int j = 0; j < 16; ++j) {
    int32_t s = 0;
    for (int i = 16 * j; i < 16 * j + 16; ++i) s += b.q[i] * y[i];
    total += b.ls[j] * s;
  }
  return total;
}

}  // namespace

void dequantize_iq1_s(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_s(x[i], b);
    dequantize_iq1(b, kIq1SDelta, dst + 256 * i);
  }
}

void dequantize_iq1_m(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq1_m*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_m(x[i], b);
    dequantize_iq1(b, kIq1MDelta, dst + 256 * i);
  }
}

float dot_iq1_s_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_s(x[i], b);
    // The delta is shared by a whole 32-value sub-block: its sum of activations is two bsums.
    int32_t delta_sum = 0;
    for (int k = 0; k < 8; ++k) delta_sum += b.ls[2 * k] * b.delta[4 * k] * (y[i].bsums[2 * k] + y[i].bsums[2 * k + 1]);
    const float sums = static_cast<float>(grid_sum(b, y[i].qs)) + kIq1SDelta * static_cast<float>(delta_sum);
    sum = std::fma(b.d * y[i].d, sums, sum);
  }
  return sum;
}

float dot_iq1_m_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_m*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_m(x[i], b);
    int32_t delta_sum = 0;  // per 8 values, finer than Q8_K's bsums: summed from the activations
    for (int g = 0; g < 32; ++g) {
      int32_t s = 0;
      for (int j = 8 * g; j < 8 * g + 8; ++j) s += y[i].qs[j];
      delta_sum += b.ls[g / 2] * b.delta[g] * s;
    }
    const float sums = static_cast<float>(grid_sum(b, y[i].qs)) + kIq1MDelta * static_cast<float>(delta_sum);
    sum = std::fma(b.d * y[i].d, sums, sum);
  }
  return sum;
}

}  // namespace fathom::quant::detail
