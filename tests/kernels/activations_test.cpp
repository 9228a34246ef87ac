// The SwiGLU activation: every ISA's kernel against the scalar reference (std::exp), over the
// range the FFN sees, the tails where e^-g under- and overflows, and lengths with partial vectors.
#include "backend/cpu/activations.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/vec_dot.h"

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

}  // namespace
}  // namespace fathom::cpu
