// The 2-bit i-quants IQ2_XXS, IQ2_XS and IQ2_S: the codebooks against the published tables,
// the sign rule, hand-built blocks with known values, the reference dot product against the
// dequantized values, and the vector kernels of every ISA this CPU has against the reference.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq2_grids.h"
#include "quant/iq_signs.h"
#include "quant/quant.h"

namespace fathom {
namespace {

using namespace fathom::quant;

constexpr DType kIq2Types[] = {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S};

// FNV-1a over the entries' little-endian bytes.
template <size_t N>
uint64_t fnv1a(const std::array<uint64_t, N>& grid) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t e : grid)
    for (int b = 0; b < 8; ++b) {
      h ^= (e >> (8 * b)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  return h;
}

template <size_t N>
void check_grid(const std::array<uint64_t, N>& grid, uint64_t published_hash) {
  std::set<uint64_t> distinct(grid.begin(), grid.end());
  EXPECT_EQ(distinct.size(), N) << "entries must be unique";
  std::set<int> levels;
  for (uint64_t e : grid)
    for (int j = 0; j < 8; ++j) levels.insert(static_cast<int>((e >> (8 * j)) & 0xFF));
  EXPECT_EQ(levels, (std::set<int>{8, 25, 43}));
  // Hashes of ggml-common.h's iq2xxs_grid / iq2xs_grid / iq2s_grid, computed from that file.
  EXPECT_EQ(fnv1a(grid), published_hash);
}

TEST(Iq2Grids, MatchThePublishedTables) {
  check_grid(kIq2xxsGrid, 0xbb4ee025b5ac6e8eull);
  check_grid(kIq2xsGrid, 0xc9b1ee61e79909bdull);
  check_grid(kIq2sGrid, 0x123edd38a3b62b90ull);
  // Spot entries as printed in ggml-common.h.
  EXPECT_EQ(kIq2xxsGrid[1], 0x080808080808082bull);
  EXPECT_EQ(kIq2xxsGrid[200], 0x192b081908080808ull);
  EXPECT_EQ(kIq2xsGrid[3], 0x0808080808082b08ull);
  EXPECT_EQ(kIq2sGrid[0x305], 0x192b08082b190808ull);
  EXPECT_EQ(kIq2sGrid[1023], 0x2b2b2b2b2b2b2b2bull);
}

TEST(Iq2Signs, EighthBitMakesTheCountEven) {
  // The first entries of ggml's ksigns_iq2xs table.
  const uint8_t published[16] = {0, 129, 130, 3, 132, 5, 6, 135, 136, 9, 10, 139, 12, 141, 142, 15};
  for (int s = 0; s < 16; ++s) EXPECT_EQ(iq_sign_byte(static_cast<uint8_t>(s)), published[s]) << s;
  for (int s = 0; s < 128; ++s) {
    const uint8_t b = iq_sign_byte(static_cast<uint8_t>(s));
    EXPECT_EQ(b & 0x7F, s);
    EXPECT_EQ(std::popcount(b) % 2, 0) << s;
  }
  EXPECT_EQ(iq_sign_byte(0x80 | 1), 129) << "only the low 7 bits are read";
}

std::vector<float> dequantized(DType t, const void* block) {
  std::vector<float> y(kQK);
  dequantize_row(t, block, y.data(), kQK);
  return y;
}

void expect_values(const std::vector<float>& y, int first, const std::vector<float>& want) {
  for (size_t j = 0; j < want.size(); ++j) EXPECT_EQ(y[first + j], want[j]) << "value " << first + j;
}

TEST(Iq2KnownValues, Iq2xxs) {
  block_iq2_xxs b{};
  b.d = fp32_to_fp16(2.0f);
  auto* bytes = reinterpret_cast<uint8_t*>(b.qs);
  bytes[0] = 1;    // group 0: entry 1 = 43, 8, 8, 8, 8, 8, 8, 8
  bytes[1] = 200;  // group 1: entry 200 = 8, 8, 8, 8, 25, 8, 43, 25
  // Sign patterns 0b0000001 (group 0: values 0 and 7 by parity) and 0b0000011 (group 1: values
  // 0, 1), scale 3 for the unit: 2 * 3.5 / 4 = 1.75.
  const uint32_t packed = 1u | 3u << 7 | 3u << 28;
  std::memcpy(bytes + 4, &packed, 4);
  const std::vector<float> y = dequantized(DType::IQ2_XXS, &b);
  expect_values(y, 0, {-75.25f, 14, 14, 14, 14, 14, 14, -14});
  expect_values(y, 8, {-14, -14, 14, 14, 43.75f, 14, 75.25f, 43.75f});
  expect_values(y, 16, std::vector<float>(16, 14.f));  // entry 0 (all 8), no signs
  expect_values(y, 32, std::vector<float>(224, 2.f));  // scale 0: 2 * 0.5 / 4 * 8
}

TEST(Iq2KnownValues, Iq2xs) {
  block_iq2_xs b{};
  b.d = fp32_to_fp16(1.0f);
  b.qs[0] = 3 | 0x03 << 9;  // entry 3 = 8, 43, 8, ...; signs 0b0000011: values 0, 1
  b.qs[1] = 1 | 0x01 << 9;  // entry 1 = 43, 8, ...; signs 0b0000001: values 0 and 7
  b.scales[0] = 0x52;       // values 0..15: scale 2 (0.625), 16..31: scale 5 (1.375)
  const std::vector<float> y = dequantized(DType::IQ2_XS, &b);
  expect_values(y, 0, {-5, -26.875f, 5, 5, 5, 5, 5, 5});
  expect_values(y, 8, {-26.875f, 5, 5, 5, 5, 5, 5, -5});
  expect_values(y, 16, std::vector<float>(16, 11.f));
  expect_values(y, 32, std::vector<float>(224, 1.f));
}

TEST(Iq2KnownValues, Iq2s) {
  block_iq2_s b{};
  b.d = fp32_to_fp16(1.0f);
  b.qs[0] = 0x05;
  b.qs[1] = 0x05;
  b.qh[0] = 1 | 3 << 2;  // group 0: index 0x105 = 43, 8, 8, 43, 25, 8, 25, 8; group 1: 0x305
  b.qs[32] = 0xFF;       // every sign stored: all of group 0 negative
  b.qs[33] = 0x80;       // an odd count is allowed here: only value 15
  b.scales[0] = 0x31;    // values 0..15: scale 1 (0.375), 16..31: scale 3 (0.875)
  const std::vector<float> y = dequantized(DType::IQ2_S, &b);
  expect_values(y, 0, {-16.125f, -3, -3, -16.125f, -9.375f, -3, -9.375f, -3});
  expect_values(y, 8, {3, 3, 9.375f, 16.125f, 3, 3, 16.125f, -9.375f});
  expect_values(y, 16, std::vector<float>(16, 7.f));
  expect_values(y, 32, std::vector<float>(224, 1.f));
}

// Random bits in every field, the fp16 super-block scales replaced by sane values.
std::vector<uint8_t> random_row(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> row(row_size(t, n));
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.01f, 0.01f);
  for (size_t b = 0; b < row.size(); b += traits(t).type_size) {
    const uint16_t d = fp32_to_fp16(scale(rng));
    std::memcpy(row.data() + b, &d, 2);  // d is the first field of all three blocks
  }
  return row;
}

std::vector<uint8_t> q8_K_activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  x[5] = 40.f;  // one large value per row: many activations near +-127 in its block
  std::vector<uint8_t> q(row_size(DType::Q8_K, n));
  quantize_row_ref(DType::Q8_K, x.data(), q.data(), n);
  return q;
}

TEST(Iq2Reference, DotIsDequantizedWeightsTimesActivations) {
  for (DType t : kIq2Types) {
    for (int64_t n : {256, 2048}) {
      const std::vector<uint8_t> w = random_row(t, n, 3), xq = q8_K_activations(n, 4);
      std::vector<float> wv(static_cast<size_t>(n)), xv(static_cast<size_t>(n));
      dequantize_row(t, w.data(), wv.data(), n);
      dequantize_row(DType::Q8_K, xq.data(), xv.data(), n);
      double want = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        want += double(wv[i]) * xv[i];
        magnitude += std::fabs(double(wv[i]) * xv[i]);
      }
      EXPECT_NEAR(vec_dot_ref(t, n, w.data(), xq.data()), want, 1e-6 * magnitude) << dtype_name(t) << " n=" << n;
    }
  }
}

TEST(Iq2Reference, DecodeDotAndQuantizer) {
  for (DType t : kIq2Types) {
    EXPECT_TRUE(can_dequantize(t)) << dtype_name(t);
    EXPECT_TRUE(can_quantize(t)) << dtype_name(t);
    EXPECT_EQ(vec_dot_type(t), DType::Q8_K);
  }
}

class Iq2Kernels : public ::testing::TestWithParam<cpu::Isa> {};

// The integer sums are exact and the float accumulation follows the reference's order, so the
// kernels must agree bit for bit.
TEST_P(Iq2Kernels, BitExactWithReference) {
  const cpu::Isa isa = GetParam();
  if (!cpu::isa_supported(isa)) GTEST_SKIP() << "CPU without " << cpu::isa_name(isa);
  const cpu::Kernels& k = cpu::kernels_for(isa);
  for (DType t : kIq2Types) {
    EXPECT_EQ(cpu::has_fast_path(k, t), isa != cpu::Isa::kGeneric) << dtype_name(t);
    for (int64_t n : {256, 4096, 11008}) {
      constexpr int kRows = 5;
      std::vector<uint8_t> matrix;
      for (int r = 0; r < kRows; ++r) {
        const std::vector<uint8_t> row = random_row(t, n, static_cast<uint32_t>(n + r));
        matrix.insert(matrix.end(), row.begin(), row.end());
      }
      const size_t row_bytes = row_size(t, n);
      const std::vector<uint8_t> xq = q8_K_activations(n, 9);
      std::vector<float> out(kRows, -1.f);
      cpu::vec_dot_rows(k, t, n, matrix.data(), row_bytes, kRows, xq.data(), out.data());
      for (int r = 0; r < kRows; ++r)
        EXPECT_EQ(out[r], vec_dot_ref(t, n, matrix.data() + r * row_bytes, xq.data()))
            << cpu::isa_name(isa) << " " << dtype_name(t) << " n=" << n << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, Iq2Kernels,
                         ::testing::Values(cpu::Isa::kGeneric, cpu::Isa::kAvx2, cpu::Isa::kAvx512, cpu::Isa::kAmx),
                         [](const ::testing::TestParamInfo<cpu::Isa>& info) { return cpu::isa_name(info.param); });

}  // namespace
}  // namespace fathom
