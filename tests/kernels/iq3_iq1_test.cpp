// The 3-bit and 1-bit i-quants (IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): codebook tables against the
// format's published grids, hand-built blocks with known values, the reference dot products
// against the dot of the dequantized rows, and the CPU kernels of every ISA against the reference
// (bit for bit: same integer sums, same float combine per super-block).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq1_grids.h"
#include "quant/iq3_grids.h"
#include "quant/iq_signs.h"
#include "quant/quant.h"

namespace fathom::quant {
namespace {

// FNV-1a 64 of the tables' little-endian bytes; the expected values were computed from the
// grids as published in ggml-common.h (ggml-org/llama.cpp), independently of our compact storage.
template <typename T, size_t N>
uint64_t fnv1a(const std::array<T, N>& table) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (T entry : table)
    for (size_t b = 0; b < sizeof(T); ++b) {
      h ^= (static_cast<uint64_t>(entry) >> (8 * b)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  return h;
}

template <typename T, size_t N>
void expect_grid(const std::array<T, N>& grid, const std::set<int>& values, uint64_t checksum) {
  EXPECT_EQ(std::set<T>(grid.begin(), grid.end()).size(), N) << "entries must be unique";
  for (T entry : grid)
    for (size_t b = 0; b < sizeof(T); ++b) {
      const int v = static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint64_t>(entry) >> (8 * b)));
      const int magnitude = sizeof(T) == 4 ? static_cast<uint8_t>(v) : v;
      ASSERT_TRUE(values.count(magnitude)) << magnitude;
    }
  EXPECT_EQ(fnv1a(grid), checksum);
}

TEST(IqGrids, Iq3XxsEntriesMatchTheFormat) {
  expect_grid(kIq3XxsGrid, {4, 12, 20, 28, 36, 44, 52, 62}, 0xdfa5dc83d6a155d5ull);
  EXPECT_EQ(kIq3XxsGrid[0], 0x04040404u);
  EXPECT_EQ(kIq3XxsGrid[100], 0x1404'0c1cu);  // 28, 12, 4, 20
  EXPECT_EQ(kIq3XxsGrid[255], 0x3e34'1c04u);  // 4, 28, 52, 62
}

TEST(IqGrids, Iq3SEntriesMatchTheFormat) {
  expect_grid(kIq3SGrid, {1, 3, 5, 7, 9, 11, 13, 15}, 0xfa37020c25b44829ull);
  EXPECT_EQ(kIq3SGrid[1], 0x01010103u);
  EXPECT_EQ(kIq3SGrid[256], 0x05090507u);  // 7, 5, 9, 5
  EXPECT_EQ(kIq3SGrid[511], 0x0f0f0101u);
}

TEST(IqGrids, Iq1SEntriesMatchTheFormat) {
  expect_grid(kIq1SGrid, {-1, 0, 1}, 0x6703ed863501ae2eull);
  EXPECT_EQ(kIq1SGrid[0], 0xffffffffffffffffull);
  EXPECT_EQ(kIq1SGrid[1000], 0x00000000ffff00ffull);  // -1, 0, -1, -1, 0, 0, 0, 0
  EXPECT_EQ(kIq1SGrid[2047], 0x0101010101010101ull);
  EXPECT_EQ(kIq1SDelta, 0.125f);
  EXPECT_EQ(kIq1MDelta, 0.125f);
}

TEST(IqGrids, SignByteHasEvenParity) {
  EXPECT_EQ(iq_sign_byte(0), 0);
  EXPECT_EQ(iq_sign_byte(1), 129);
  EXPECT_EQ(iq_sign_byte(3), 3);
  EXPECT_EQ(iq_sign_byte(127), 255);
  for (int s = 0; s < 128; ++s) {
    const uint8_t b = iq_sign_byte(static_cast<uint8_t>(s));
    EXPECT_EQ(b & 0x7F, s);
    EXPECT_EQ(__builtin_popcount(b) % 2, 0) << s;
  }
  // The whole-word form agrees with the per-field one (top 4 bits, the scale, are ignored).
  std::mt19937 rng(9);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t word = rng();
    uint32_t expect = 0;
    for (int l = 0; l < 4; ++l) expect |= static_cast<uint32_t>(iq_sign_byte(static_cast<uint8_t>(word >> (7 * l)))) << (8 * l);
    ASSERT_EQ(iq_sign_bytes(word), expect) << word;
  }
}

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

std::vector<float> decode(DType t, const void* block) {
  std::vector<float> y(256);
  dequantize_row(t, block, y.data(), 256);
  return y;
}

void expect_values(const std::vector<float>& y, int offset, const std::vector<float>& expect) {
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(y[offset + i], expect[i]) << "value " << offset + i;
}

TEST(IqKnownValues, Iq3Xxs) {
  block_iq3_xxs b{};
  b.d = fp32_to_fp16(0.5f);
  const uint8_t indices[8] = {0, 1, 7, 255, 100, 0, 0, 0};
  std::memcpy(b.qs, indices, 8);
  // signs of groups 0..3: 0b0000001 (+ parity bit 7), none, all seven (+ none), 0b0000011; s = 5
  put32(b.qs + 64, 1u | 0u << 7 | 127u << 14 | 3u << 21 | 5u << 28);
  const std::vector<float> y = decode(DType::IQ3_XXS, &b);
  const float dl = 0.5f * 11 / 4;  // d * (2s + 1) / 4
  std::vector<float> e = {-4,  4,   4,  4,   20, 4,  4,  -4, 20, 20, 4, 4, 4, 28, 52, 62,
                          -28, -12, -4, -20, -4, -4, -4, -4, -4, -4, 4, 4, 4, 4,  4,  4};
  for (float& v : e) v *= dl;
  expect_values(y, 0, e);
  expect_values(y, 32, std::vector<float>(224, 0.5f));  // entry 0, s = 0: 0.5 / 4 * 4
}

TEST(IqKnownValues, Iq3S) {
  block_iq3_s b{};
  b.d = fp32_to_fp16(0.25f);
  const uint8_t indices[8] = {0, 1, 7, 100, 255, 0, 0, 0};
  std::memcpy(b.qs, indices, 8);
  b.qh[0] = 0x10;      // index 4 gets its 9th bit: 511
  b.signs[0] = 0x21;   // values 0 and 5 negative
  b.signs[3] = 0x80;   // value 31 negative
  b.scales[0] = 0x23;  // sub-block 0: s = 3, sub-block 1: s = 2
  const std::vector<float> y = decode(DType::IQ3_S, &b);
  std::vector<float> e = {-1, 1, 1,  1,  3, -1, 1, 1, 5, 3, 1, 1, 1, 1, 15, 1,
                          1,  1, 15, 15, 1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 1,  -1};
  for (float& v : e) v *= 0.25f * 7;
  expect_values(y, 0, e);
  expect_values(y, 32, std::vector<float>(32, 0.25f * 5));
  expect_values(y, 64, std::vector<float>(192, 0.25f));
}

TEST(IqKnownValues, Iq1S) {
  block_iq1_s b{};
  b.d = fp32_to_fp16(1.0f);
  const uint8_t indices[4] = {0, 1, 232, 255};  // 232 | 3 << 8 = 1000, 255 | 7 << 8 = 2047
  std::memcpy(b.qs, indices, 4);
  b.qh[0] = static_cast<uint16_t>(3u << 6 | 7u << 9 | 2u << 12 | 0x8000u);  // s = 2, delta -1/8
  const std::vector<float> y = decode(DType::IQ1_S, &b);
  const std::vector<int> grid = {-1, -1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1, -1, -1,
                                 -1, 0,  -1, -1, 0,  0,  0,  0,  1, 1,  1,  1,  1,  1,  1,  1};
  std::vector<float> e;
  for (int g : grid) e.push_back(5 * (g - 0.125f));
  expect_values(y, 0, e);
  expect_values(y, 32, std::vector<float>(224, -0.875f));  // entry 0, s = 0, delta +1/8
}

TEST(IqKnownValues, Iq1M) {
  block_iq1_m b{};
  const uint8_t indices[4] = {232, 1, 255, 2};
  std::memcpy(b.qs, indices, 4);
  b.qh[0] = 0x0B;  // group 0: index bits 3, delta -; group 1: index bits 0, delta +
  b.qh[1] = 0x87;  // group 2: index bits 7, delta +; group 3: index bits 0, delta -
  // fp16 1.0 = 0x3C00 spread over the top nibbles (word 0 bits 0..3 ... word 3 bits 12..15);
  // sub-block 0: s = 1 for values 0..15, s = 4 for values 16..31.
  put16(b.scales + 0, 1u | 4u << 3);
  put16(b.scales + 4, 0xC000);
  put16(b.scales + 6, 0x3000);
  const std::vector<float> y = decode(DType::IQ1_M, &b);
  const std::vector<int> grid = {-1, 0, -1, -1, 0, 0, 0, 0, 1, -1, -1, -1, -1, -1, -1, -1,
                                 1,  1, 1,  1,  1, 1, 1, 1, 0, 0,  -1, -1, -1, -1, -1, -1};
  const float delta[4] = {-0.125f, 0.125f, 0.125f, -0.125f};
  std::vector<float> e;
  for (int i = 0; i < 32; ++i) e.push_back((i < 16 ? 3.f : 9.f) * (grid[i] + delta[i / 8]));
  expect_values(y, 0, e);
  expect_values(y, 32, std::vector<float>(224, -0.875f));
}

// Random bytes in every field, with sane super-block scales (IQ1_M's spread over its scale words).
std::vector<uint8_t> random_row(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> row(row_size(t, n));
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  const size_t bs = traits(t).type_size;
  for (size_t off = 0; off < row.size(); off += bs) {
    const uint16_t d = fp32_to_fp16(std::uniform_real_distribution<float>(-0.02f, 0.02f)(rng));
    if (t == DType::IQ1_M) {
      uint16_t w[4];
      std::memcpy(w, row.data() + off + 48, 8);
      for (int k = 0; k < 4; ++k) w[k] = static_cast<uint16_t>((w[k] & 0x0FFF) | ((d >> (4 * k)) & 0xF) << 12);
      std::memcpy(row.data() + off + 48, w, 8);
    } else {
      put16(row.data() + off, d);
    }
  }
  return row;
}

TEST(IqDotRef, MatchesDotOfDequantizedRows) {
  const int64_t n = 4096;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> a(n);
  for (float& v : a) v = dist(rng);
  for (DType t : {DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M}) {
    EXPECT_TRUE(can_dequantize(t));
    EXPECT_TRUE(can_quantize(t));  // the quantizers: quant_iq3_iq1_test.cpp
    ASSERT_EQ(vec_dot_type(t), DType::Q8_K);
    const std::vector<uint8_t> wq = random_row(t, n, 17);
    std::vector<uint8_t> aq(row_size(DType::Q8_K, n));
    quantize_row_ref(DType::Q8_K, a.data(), aq.data(), n);
    std::vector<float> wd(n), ad(n);
    dequantize_row(t, wq.data(), wd.data(), n);
    dequantize_row(DType::Q8_K, aq.data(), ad.data(), n);
    double expect = 0, magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      expect += double(wd[i]) * ad[i];
      magnitude += std::fabs(double(wd[i]) * ad[i]);
    }
    EXPECT_NEAR(vec_dot_ref(t, n, wq.data(), aq.data()), expect, 2e-6 * magnitude) << dtype_name(t);
  }
}

const DType kIqTypes[] = {DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M};

TEST(IqKernels, EveryIsaIsBitExactWithReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t n : {256, 4096, 11008}) {
    std::vector<float> a(static_cast<size_t>(n));
    for (float& v : a) v = dist(rng);
    a[7] = 50.f;  // one outlier: most activations small, one at +-127
    std::vector<uint8_t> aq(row_size(DType::Q8_K, n));
    quantize_row_ref(DType::Q8_K, a.data(), aq.data(), n);
    for (DType t : kIqTypes) {
      constexpr int kRows = 5;
      std::vector<uint8_t> w;
      for (int r = 0; r < kRows; ++r) {
        const std::vector<uint8_t> row = random_row(t, n, static_cast<uint32_t>(100 * r + n));
        w.insert(w.end(), row.begin(), row.end());
      }
      const size_t row_bytes = row_size(t, n);
      // kAmx: its table has its own IQ1_S rows (vec_dot_iq_vbmi.cpp).
      for (cpu::Isa isa : {cpu::Isa::kGeneric, cpu::Isa::kAvx2, cpu::Isa::kAvx512, cpu::Isa::kAmx}) {
        if (!cpu::isa_supported(isa)) continue;
        const cpu::Kernels& k = cpu::kernels_for(isa);
        EXPECT_EQ(cpu::has_fast_path(k, t), isa != cpu::Isa::kGeneric) << dtype_name(t);
        std::vector<float> out(kRows);
        cpu::vec_dot_rows(k, t, n, w.data(), row_bytes, kRows, aq.data(), out.data());
        for (int r = 0; r < kRows; ++r)
          EXPECT_EQ(out[r], vec_dot_ref(t, n, w.data() + r * row_bytes, aq.data()))
              << cpu::isa_name(isa) << " " << dtype_name(t) << " n=" << n << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace fathom::quant
