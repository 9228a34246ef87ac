// CPU dot-product kernels of every ISA this machine supports vs the scalar reference
// (quant::vec_dot_ref), and the fast activation quantizers vs quant::quantize_row_ref.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace fathom::cpu {
namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                              DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
                              DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M,
                              DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0};

// Random bytes for every quant bit, with the fp16 scale fields replaced by sane values, so the
// kernels see bit patterns a quantizer would rarely produce (e.g. -128 in q8_0, extreme scales).
void randomize_blocks(DType t, std::vector<uint8_t>& row, std::mt19937& rng) {
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.01f, 0.01f);
  const size_t bs = traits(t).type_size;
  auto put_half = [&](size_t off) {
    const uint16_t h = fp32_to_fp16(scale(rng));
    std::memcpy(row.data() + off, &h, 2);
  };
  for (size_t b = 0; b < row.size(); b += bs) {
    switch (t) {
      case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: put_half(b); break;
      case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: put_half(b); put_half(b + 2); break;
      case DType::Q4_K: case DType::Q5_K: put_half(b); put_half(b + 2); break;
      case DType::Q2_K: put_half(b + 80); put_half(b + 82); break;
      case DType::Q3_K: put_half(b + 108); break;
      case DType::Q6_K: put_half(b + 208); break;
      case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S: put_half(b); break;
      case DType::IQ1_M: {  // the fp16 scale is the top nibbles of the four scale words
        const uint16_t h = fp32_to_fp16(scale(rng));
        for (int w = 0; w < 4; ++w) {
          uint8_t& top = row[b + 48 + 2 * w + 1];
          top = static_cast<uint8_t>((top & 0x0F) | ((h >> (4 * w)) & 0xF) << 4);
        }
        break;
      }
      case DType::IQ4_NL: case DType::IQ4_XS: put_half(b); break;
      case DType::TQ1_0: put_half(b + 52); break;
      case DType::TQ2_0: put_half(b + 64); break;
      default: break;
    }
  }
}

struct Row {
  std::vector<uint8_t> bytes;  // quantized row
  std::vector<float> values;   // its dequantized values
};

// n_rows weight rows of type t: even rows from quantized N(0,1) data, odd rows random bits.
std::vector<Row> make_weight_rows(DType t, int64_t n, int n_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Row> rows(static_cast<size_t>(n_rows));
  for (int r = 0; r < n_rows; ++r) {
    Row& row = rows[static_cast<size_t>(r)];
    row.bytes.resize(row_size(t, n));
    if ((r % 2 == 0 && quant::can_quantize(t)) || t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_K) {
      const std::vector<float> x = gaussian(n, seed + static_cast<uint32_t>(r));
      quant::quantize_row_ref(t, x.data(), row.bytes.data(), n);
    } else {
      randomize_blocks(t, row.bytes, rng);
    }
    row.values.resize(static_cast<size_t>(n));
    quant::dequantize_row(t, row.bytes.data(), row.values.data(), n);
  }
  return rows;
}

void check_dots(const Kernels& k, DType t, int64_t n) {
  SCOPED_TRACE(std::string(isa_name(k.isa)) + " " + dtype_name(t) + " n=" + std::to_string(n));
  constexpr int kRows = 3;
  const std::vector<Row> rows = make_weight_rows(t, n, kRows, static_cast<uint32_t>(n) + 11);
  const size_t row_bytes = rows[0].bytes.size();
  std::vector<uint8_t> matrix;
  for (const Row& r : rows) matrix.insert(matrix.end(), r.bytes.begin(), r.bytes.end());

  const DType at = quant::vec_dot_type(t);
  const std::vector<float> x = gaussian(n, 99);
  std::vector<uint8_t> xq(row_size(at, n));
  quant::quantize_row_ref(at, x.data(), xq.data(), n);
  std::vector<float> xd(static_cast<size_t>(n));
  quant::dequantize_row(at, xq.data(), xd.data(), n);

  std::vector<float> out(kRows, -1.f);
  vec_dot_rows(k, t, n, matrix.data(), row_bytes, kRows, xq.data(), out.data());
  for (int r = 0; r < kRows; ++r) {
    const float ref = quant::vec_dot_ref(t, n, rows[r].bytes.data(), xq.data());
    double magnitude = 0;  // sum |w_i x_i|: the scale float reordering errors are relative to
    for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(double(rows[r].values[i]) * xd[i]);
    // Identical integer math; only the float summation order differs from the reference.
    EXPECT_NEAR(out[r], ref, 1e-6 * magnitude + 1e-30) << "row " << r;
    EXPECT_EQ(vec_dot(k, t, n, rows[r].bytes.data(), xq.data()), out[r]) << "row " << r;
  }
}

TEST(VecDot, EveryIsaAndTypeMatchesReference) {
  for (Isa isa : available_isas()) {
    const Kernels& k = kernels_for(isa);
    EXPECT_EQ(k.isa, isa);
    for (DType t : kWeightTypes) {
      ASSERT_TRUE(supports(k, t)) << dtype_name(t);
      for (int64_t n : {32, 256, 4096, 11008}) {
        if (n % traits(t).block_size != 0) continue;
        check_dots(k, t, n);
      }
    }
  }
}

TEST(VecDot, FloatRowsOfAnyLength) {
  for (Isa isa : available_isas())
    for (DType t : {DType::F32, DType::F16, DType::BF16})
      for (int64_t n : {1, 7, 37, 100, 1000}) check_dots(kernels_for(isa), t, n);
}

TEST(VecDot, Avx2ForcedMatchesReference) {
  if (!isa_supported(Isa::kAvx2)) GTEST_SKIP() << "CPU without AVX2";
  const Kernels& k = kernels_for(Isa::kAvx2);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16, DType::BF16, DType::F32,
                  DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0}) {
    EXPECT_TRUE(has_fast_path(k, t)) << dtype_name(t);
    check_dots(k, t, 4096);
  }
  EXPECT_FALSE(has_fast_path(k, DType::Q3_K));
}

TEST(VecDot, FastPathsReported) {
  EXPECT_FALSE(has_fast_path(kernels_for(Isa::kGeneric), DType::Q4_0));
  if (isa_supported(Isa::kAvx512)) {
    EXPECT_GE(best_isa(), Isa::kAvx512);  // kAmx on CPUs with tiles
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16, DType::BF16, DType::F32,
                    DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0})
      EXPECT_TRUE(has_fast_path(t)) << dtype_name(t);
  }
  EXPECT_FALSE(supports(best_kernels(), DType::I32));
}

// Activation rows that hit the quantizers' corner cases: half-way rounding ties, equal-magnitude
// values of opposite sign, all-zero blocks, and a huge dynamic range.
std::vector<float> tricky_activations(int64_t n) {
  std::vector<float> x = gaussian(n, 7);
  for (int64_t i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) * 0.5f;   // ties at d = 127/127
  x[0] = 127.f;
  for (int64_t i = 256; i < 512 && i < n; ++i) x[i] = 0.f;                    // zero K block
  if (n >= 1024) {
    x[600] = -9.f;
    x[700] = 9.f;  // same magnitude, later, opposite sign
    x[800] = 1e-20f;
    x[900] = 3e4f;
  }
  return x;
}

TEST(QuantizeActivations, BitExactWithReference) {
  for (Isa isa : available_isas()) {
    const Kernels& k = kernels_for(isa);
    for (DType fmt : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
      for (int64_t n : {256, 4096, 11008}) {
        for (int variant = 0; variant < 2; ++variant) {
          const std::vector<float> x = variant == 0 ? gaussian(n, 5) : tricky_activations(n);
          std::vector<uint8_t> fast(row_size(fmt, n)), ref(row_size(fmt, n));
          quantize_activations(k, fmt, x.data(), fast.data(), n);
          quant::quantize_row_ref(fmt, x.data(), ref.data(), n);
          EXPECT_EQ(std::memcmp(fast.data(), ref.data(), ref.size()), 0)
              << isa_name(isa) << " " << dtype_name(fmt) << " n=" << n << " variant " << variant;
        }
      }
    }
  }
}

TEST(QuantizeActivations, F32IsACopy) {
  const std::vector<float> x = gaussian(100, 8);
  std::vector<float> y(100);
  quantize_activations(DType::F32, x.data(), y.data(), 100);
  EXPECT_EQ(x, y);
}

}  // namespace
}  // namespace fathom::cpu
