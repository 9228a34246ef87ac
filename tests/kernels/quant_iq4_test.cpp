// Reference kernels of iq4_nl, iq4_xs, tq1_0 and tq2_0: hand-built blocks whose values are worked
// out by hand from the format's rules, bytes ggml itself writes for the same input, round-trip
// error bounds, importance weighting and the reference dot products.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant_test_util.h"

namespace fathom::quant {
namespace {

using testing::gaussian;
using testing::relative_rmse;

constexpr DType kTypes[] = {DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0};

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, const float* importance = nullptr) {
  std::vector<uint8_t> q(row_size(t, static_cast<int64_t>(x.size())));
  quantize_row_ref(t, x.data(), q.data(), static_cast<int64_t>(x.size()), importance);
  return q;
}

std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

// ---- hand-built blocks ----

TEST(QuantKnownValues, Iq4nlIndexesTheTableWithQ4_0NibbleOrder) {
  block_iq4_nl b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(DType::IQ4_NL, &b, y, 32);
  EXPECT_EQ(y[0], -63.5f);   // index 0 -> -127, low nibble of qs[0]
  EXPECT_EQ(y[7], -5.0f);    // index 7 -> -10
  EXPECT_EQ(y[8], 0.5f);     // index 8 -> 1
  EXPECT_EQ(y[15], 56.5f);   // index 15 -> 113
  EXPECT_EQ(y[16], 56.5f);   // high nibble of qs[0] = 15
  EXPECT_EQ(y[20], 19.f);     // high nibble of qs[4] = 11 -> 38
  EXPECT_EQ(y[31], -63.5f);  // high nibble of qs[15] = 0
}

TEST(QuantKnownValues, Iq4xsSixBitScalesSplitOverScalesLAndScalesH) {
  // Stored 6-bit scales 0, 63, 32, 33, 1, 47, 16, 31 (signed: -32, 31, 0, 1, -31, 15, -16, -1).
  // Low nibbles 0,F,0,1,1,F,0,F pair up per byte, low sub-block first; high 2 bits 0,3,2,2,0,2,1,1
  // at bits 2j of scales_h: 0xC | 0x20 | 0x80 | 0x800 | 0x1000 | 0x4000.
  block_iq4_xs b;
  b.d = 0x3C00;  // 1.0
  b.scales_h = 0x58AC;
  const uint8_t scales_l[4] = {0xF0, 0x10, 0xF1, 0xF0};
  std::memcpy(b.scales_l, scales_l, 4);
  for (int j = 0; j < 128; ++j) b.qs[j] = static_cast<uint8_t>((j % 16) | ((15 - j % 16) << 4));
  float y[256];
  dequantize_row(DType::IQ4_XS, &b, y, 256);
  EXPECT_EQ(y[0], -32.f * -127.f);       // sub-block 0, index 0
  EXPECT_EQ(y[32], 31.f * -127.f);       // sub-block 1 starts at qs[16]
  EXPECT_EQ(y[32 + 16], 31.f * 113.f);   // its high nibbles: qs[16] >> 4 = 15
  EXPECT_EQ(y[64 + 5], 0.f);             // scale 0
  EXPECT_EQ(y[96 + 9], 13.f);            // scale 1, index 9
  EXPECT_EQ(y[128 + 18], -31.f * 69.f);  // sub-block 4, high nibble of its qs[2] = 13 -> 69
  EXPECT_EQ(y[160 + 15], 15.f * 113.f);
  EXPECT_EQ(y[192 + 31], -16.f * -127.f);
  EXPECT_EQ(y[224 + 8], -1.f * 1.f);
}

// A tq1_0 byte is ceil(v * 256 / 243) for the base-3 number v of its trits (most significant first;
// qh bytes hold 4 trits and a zero fifth). Worked by hand: trits 2,0,1,2,1 -> v = 178 -> 188;
// trits 0,2,2,1 -> v = 25 * 3 = 75 -> 80; all trits 1 -> 121 -> 128 (and 40 * 3 = 120 -> 127).
TEST(QuantKnownValues, Tq1_0BaseThreeTritsAndQhTail) {
  block_tq1_0 b;
  std::memset(b.qs, 128, sizeof b.qs);
  std::memset(b.qh, 128, sizeof b.qh);
  b.qs[5] = 188;       // values 5, 37, 69, 101, 133
  b.qs[32 + 3] = 188;  // values 163, 179, 195, 211, 227
  b.qh[2] = 80;        // values 242, 246, 250, 254
  b.d = 0x4000;        // 2.0
  float y[256];
  dequantize_row(DType::TQ1_0, &b, y, 256);
  std::vector<float> expect(256, 0.f);
  for (int v : {5, 101, 163, 211, 246, 250}) expect[v] = 2.f;
  for (int v : {37, 179, 242}) expect[v] = -2.f;
  for (int v = 0; v < 256; ++v) EXPECT_EQ(y[v], expect[v]) << "value " << v;

  // The quantizer writes exactly these bytes back (absmax scale 2, values in {-2, 0, 2}).
  block_tq1_0 q;
  quantize_row_ref(DType::TQ1_0, expect.data(), &q, 256);
  EXPECT_EQ(q.d, 0x4000);
  EXPECT_EQ(q.qs[5], 188);
  EXPECT_EQ(q.qs[35], 188);
  EXPECT_EQ(q.qh[2], 80);
  EXPECT_EQ(q.qs[0], 128);
  EXPECT_EQ(q.qh[0], 127);
}

TEST(QuantKnownValues, Tq2_0TwoBitFieldsLowBitsFirst) {
  block_tq2_0 b;
  std::memset(b.qs, 0x55, sizeof b.qs);  // every field 1 -> 0
  b.qs[33] = 0x92;  // fields (low first) 2, 0, 1, 2 -> values 129, 161, 193, 225
  b.qs[0] = 0x57;   // field 0 is 3: decodes to +2d, a level quantizers never write
  b.d = 0x3800;     // 0.5
  float y[256];
  dequantize_row(DType::TQ2_0, &b, y, 256);
  std::vector<float> expect(256, 0.f);
  expect[0] = 1.f;
  expect[129] = 0.5f;
  expect[161] = -0.5f;
  expect[225] = 0.5f;
  for (int v = 0; v < 256; ++v) EXPECT_EQ(y[v], expect[v]) << "value " << v;

  expect[0] = 0.f;
  block_tq2_0 q;
  quantize_row_ref(DType::TQ2_0, expect.data(), &q, 256);
  EXPECT_EQ(q.qs[33], 0x92);
  EXPECT_EQ(q.qs[0], 0x55);
  EXPECT_EQ(q.d, 0x3800);
}

TEST(QuantKnownValues, Iq4nlQuantizerPutsTheLargestMagnitudeOnMinus127) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 12) / 8.f;
  x[3] = 10.f;
  block_iq4_nl b;
  quantize_row_ref(DType::IQ4_NL, x.data(), &b, 32);
  EXPECT_EQ(b.qs[3] & 0xF, 0);  // index 0 (-127) with a negative scale
  EXPECT_LT(fp16_to_fp32(b.d), 0.f);
  float y[32];
  dequantize_row(DType::IQ4_NL, &b, y, 32);
  EXPECT_NEAR(y[3], 10.f, 0.3f);
}

// ---- the ecosystem's bytes ----

// FNV-1a of bytes, to pin a whole quantized row in one number.
uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// 1024 values and importances from an integer LCG (exact in float, so any language computes the
// same row), with one all-zero group of 32.
void lcg_row(std::vector<float>& x, std::vector<float>& w) {
  uint64_t state = 12345;
  auto next = [&] {
    state = (state * 1103515245ull + 12345ull) % (1ull << 31);
    return static_cast<float>(state >> 7) / 16777216.f;
  };
  x.resize(1024);
  w.resize(1024);
  for (float& v : x) v = (next() - 0.5f) * 4.f;
  for (float& v : w) v = next() * 8.f;
  for (int i = 256; i < 288; ++i) x[i] = 0.f;
}

TEST(QuantEcosystemBytes, RowsMatchGgmlQuantizeChunk) {
  // Hashes of the rows ggml_quantize_chunk wrote for lcg_row (ggml 0.5.0's libggml-base, as shipped
  // by node-llama-cpp 3.22.1), without and with the importance weights.
  struct Golden {
    DType type;
    uint64_t plain, weighted;
  };
  const Golden golden[] = {
      {DType::IQ4_NL, 0xb44b76d0e3cd3c33ull, 0x48445946b19c502eull},
      {DType::IQ4_XS, 0xbf61851f7015c5daull, 0xc6ea7919058dc13full},
      {DType::TQ1_0, 0x66b3552ccfcb9b5eull, 0x66b3552ccfcb9b5eull},  // ternary ignores importance
      {DType::TQ2_0, 0x92cdcd193eb02d1aull, 0x92cdcd193eb02d1aull},
  };
  std::vector<float> x, w;
  lcg_row(x, w);
  for (const Golden& g : golden) {
    EXPECT_EQ(fnv1a(quantize(g.type, x)), g.plain) << dtype_name(g.type);
    EXPECT_EQ(fnv1a(quantize(g.type, x, w.data())), g.weighted) << dtype_name(g.type) << " with importance";
  }
}

// ---- round trips ----

TEST(QuantRoundTrip, Iq4RelativeRmseWithinBound) {
  // Calibrated on N(0,1) rows of 16384 values: measured value in the comment, bound ~10% above.
  const std::vector<float> x = gaussian(256 * 64, 1);
  const double nl = relative_rmse(x, dequantize(DType::IQ4_NL, quantize(DType::IQ4_NL, x), 16384));
  const double xs = relative_rmse(x, dequantize(DType::IQ4_XS, quantize(DType::IQ4_XS, x), 16384));
  RecordProperty("iq4_nl", std::to_string(nl));
  RecordProperty("iq4_xs", std::to_string(xs));
  EXPECT_LT(nl, 0.084);  // 0.0765
  EXPECT_LT(xs, 0.085);  // 0.0771
}

TEST(QuantRoundTrip, TernaryRowsAreExact) {
  std::mt19937 rng(9);
  std::vector<float> x(1024);
  for (float& v : x) v = 0.75f * static_cast<float>(static_cast<int>(rng() % 3) - 1);
  x[0] = 0.75f;  // every block has its absmax at 0.75 (exact in fp16)
  for (int b = 1; b < 4; ++b) x[256 * b] = -0.75f;
  for (DType t : {DType::TQ1_0, DType::TQ2_0}) EXPECT_EQ(dequantize(t, quantize(t, x), 1024), x) << dtype_name(t);
}

TEST(QuantRoundTrip, Iq4ZeroRowsStayZero) {
  const std::vector<float> x(512, 0.f);
  for (DType t : kTypes)
    for (float v : dequantize(t, quantize(t, x), 512)) ASSERT_EQ(v, 0.f) << dtype_name(t);
}

TEST(QuantRoundTrip, Iq4ImportanceLowersWeightedError) {
  const std::vector<float> x = gaussian(256 * 64, 2);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> w(x.size());
  for (float& v : w) v = std::pow(u(rng), 4.f) * 10.f;
  for (DType t : {DType::IQ4_NL, DType::IQ4_XS}) {
    const auto n = static_cast<int64_t>(x.size());
    const double plain = relative_rmse(x, dequantize(t, quantize(t, x), n), w.data());
    const double weighted = relative_rmse(x, dequantize(t, quantize(t, x, w.data()), n), w.data());
    EXPECT_LT(weighted, plain * 0.97) << dtype_name(t);
  }
}

// ---- reference dot ----

TEST(QuantDotRef, Iq4AndTernaryMatchDotOfDequantizedRows) {
  const int64_t n = 4096;
  const std::vector<float> w = gaussian(n, 5), a = gaussian(n, 6);
  for (DType t : kTypes) {
    const DType at = vec_dot_type(t);
    const std::vector<uint8_t> wq = quantize(t, w);
    std::vector<uint8_t> aq(row_size(at, n));
    quantize_row_ref(at, a.data(), aq.data(), n);
    const std::vector<float> wd = dequantize(t, wq, n), ad = dequantize(at, aq, n);
    double expect = 0, magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      expect += double(wd[i]) * ad[i];
      magnitude += std::fabs(double(wd[i]) * ad[i]);
    }
    EXPECT_NEAR(vec_dot_ref(t, n, wq.data(), aq.data()), expect, 2e-6 * magnitude) << dtype_name(t);
  }
}

TEST(QuantDotRef, Iq4AndTernaryVecDotTypes) {
  EXPECT_EQ(vec_dot_type(DType::IQ4_NL), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::IQ4_XS), DType::Q8_K);
  EXPECT_EQ(vec_dot_type(DType::TQ1_0), DType::Q8_K);
  EXPECT_EQ(vec_dot_type(DType::TQ2_0), DType::Q8_K);
  for (DType t : kTypes) {
    EXPECT_TRUE(can_dequantize(t)) << dtype_name(t);
    EXPECT_TRUE(can_quantize(t)) << dtype_name(t);
  }
}

}  // namespace
}  // namespace fathom::quant
