// The SwiGLU activation: every ISA's kernel against the scalar reference (std::exp), over the
// range the FFN sees, the tails where e^-g under- and overflows, and lengths with partial vectors.
#include "backend/cpu/activations.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <cstring>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "quant/quant.h"

namespace fathom::cpu {
namespace {

TEST(Swiglu, EveryIsaMatchesTheReferenceWithin4Ulp) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> wide(-40.f, 40.f);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::vector<float> gate, up;
  for (int i = 0; i < 5000; ++i) {
    gate.push_back(i % 2 ? wide(rng) : normal(rng));
    up.push_back(normal(rng));
  }
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 88.5f, -88.5f, 89.0f, -89.0f, 100.0f, -100.0f, 1e30f, -1e30f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    gate.push_back(g);
    up.push_back(1.5f);
  }
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    const SwigluFn kernel = swiglu_kernel(isa);
    for (int64_t n : {static_cast<int64_t>(gate.size()), int64_t{1}, int64_t{15}, int64_t{17}}) {
      std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n), -7.f);
      swiglu_reference(gate.data(), up.data(), n, want.data());
      kernel(gate.data(), up.data(), n, got.data());
      for (int64_t i = 0; i < n; ++i) {
        const float w = want[static_cast<size_t>(i)], g = got[static_cast<size_t>(i)];
        if (std::isnan(w)) {
          EXPECT_TRUE(std::isnan(g)) << isa_name(isa) << " gate " << gate[static_cast<size_t>(i)];
          continue;
        }
        if (std::isinf(w)) {
          EXPECT_EQ(g, w) << isa_name(isa) << " gate " << gate[static_cast<size_t>(i)];
          continue;
        }
        const float ulp = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
        ASSERT_NEAR(g, w, 4 * ulp + 1e-37f) << isa_name(isa) << " gate " << gate[static_cast<size_t>(i)] << " up "
                                            << up[static_cast<size_t>(i)];
      }
    }
  }
}

// RMS normalization: every ISA's row kernel against the f64 definition and the f32 reference
// (within 2e-5 relative: an f32 sum of 7168 squares in either order), over rows of the widths models use, partial vectors, and rows with outliers.
TEST(RmsNormRow, EveryIsaMatchesTheDefinition) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{33}, int64_t{1536}, int64_t{2049}, int64_t{7168}}) {
    std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = normal(rng) * (i % 97 == 3 ? 300.f : 1.f);
      w[static_cast<size_t>(i)] = 0.5f + std::fabs(normal(rng));
    }
    double sum = 0.0;
    for (float v : x) sum += static_cast<double>(v) * v;
    const double inv = 1.0 / std::sqrt(sum / static_cast<double>(n) + 1e-6);
    std::vector<float> ref(static_cast<size_t>(n));
    rms_norm_row_reference(x.data(), w.data(), n, 1e-6f, ref.data());
    for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
      if (!isa_supported(isa)) continue;
      std::vector<float> got(static_cast<size_t>(n) + 1, -7.f);
      rms_norm_row_kernel(isa)(x.data(), w.data(), n, 1e-6f, got.data());
      for (int64_t i = 0; i < n; ++i) {
        const double want = x[static_cast<size_t>(i)] * inv * w[static_cast<size_t>(i)];
        ASSERT_NEAR(got[static_cast<size_t>(i)], want, 2e-5 * std::fabs(want) + 1e-30) << isa_name(isa) << " n " << n << " i " << i;
        ASSERT_NEAR(got[static_cast<size_t>(i)], ref[static_cast<size_t>(i)], 2e-5 * std::fabs(want) + 1e-30) << isa_name(isa);
      }
      EXPECT_EQ(got[static_cast<size_t>(n)], -7.f) << isa_name(isa) << ": wrote past the row";
    }
  }
}

// The f16/bf16 rows of the KV cache: every ISA's kernel bit-identical with the reference
// quantizer over random bit patterns (NaNs with payloads, infinities, subnormals of both widths,
// the overflow and rounding boundaries) and lengths with partial vectors.
TEST(HalfRow, EveryIsaMatchesTheReferenceQuantizerBitForBit) {
  std::mt19937 rng(11);
  std::vector<uint32_t> bits;
  for (int i = 0; i < 20000; ++i) bits.push_back(static_cast<uint32_t>(rng()));
  for (uint32_t b : {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x33000000u, 0x33000001u, 0x337fffffu,
                     0x38800000u, 0x387fffffu, 0x38000000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u,
                     0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu,
                     0x3f801000u, 0x3f803000u, 0x3f808000u, 0x3f818000u, 0x3f7f8000u})
    bits.push_back(b);
  for (int i = 0; i < 4000; ++i) bits.push_back(static_cast<uint32_t>(rng()) & 0x807fffffu);            // f32 subnormals
  for (int i = 0; i < 4000; ++i) bits.push_back((static_cast<uint32_t>(rng()) & 0x83ffffffu) | 0x30000000u);  // f16 subnormals
  std::vector<float> src(bits.size());
  std::memcpy(src.data(), bits.data(), bits.size() * sizeof(float));
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> want(src.size());
    quant::quantize_row_ref(t, src.data(), want.data(), static_cast<int64_t>(src.size()));
    for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
      if (!isa_supported(isa)) continue;
      const HalfRowFn kernel = half_row_kernel(isa);
      for (int64_t n : {static_cast<int64_t>(src.size()), int64_t{1}, int64_t{15}, int64_t{17}}) {
        std::vector<uint16_t> got(static_cast<size_t>(n) + 1, 0xabcd);
        kernel(t, src.data(), got.data(), n);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(got[static_cast<size_t>(i)], want[static_cast<size_t>(i)])
              << isa_name(isa) << " " << dtype_name(t) << " input bits 0x" << std::hex << bits[static_cast<size_t>(i)];
        EXPECT_EQ(got[static_cast<size_t>(n)], 0xabcd) << isa_name(isa) << ": wrote past the row";
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
