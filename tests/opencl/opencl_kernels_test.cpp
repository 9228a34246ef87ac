// Every OpenCL kernel against the CPU reference by normalized mean squared error, on whatever
// OpenCL device is present (PoCL on the CPU in CI; skipped without one): the checks every
// accelerator backend passes (../backend_op_checks.h) with this backend's thresholds. Matmul is
// also held to the f32 dot of the dequantized weights, which it computes exactly up to summation
// order: the CPU backend quantizes activations to 8 bits, so its own NMSE to the kernels is larger.
// The fused ops (rms_norm_matmul_batch, swiglu_matmul) and matmul_batch are held to the unfused
// CPU ops the same way, including batches that mix kernel types with types the CPU delegate runs.
// The kernel variants are in opencl_variants_test.cpp.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../backend_op_checks.h"
#include "backend/cpu/cpu_backend.h"
#include "opencl_test_util.h"

namespace fathom {
namespace {

// One backend for the suite: bringing PoCL up and building the program is the slow part.
class OpenClKernels : public test::SharedBackendTest<OpenClBackend> {
 protected:
  static void SetUpTestSuite() { keep(test::make_test_backend()); }
  void SetUp() override { require_backend("OpenCL", "; install pocl-opencl-icd to run these tests"); }
};

struct MatmulCase {
  DType type;
  double max_nmse_vs_cpu;  // the CPU path rounds activations to 8 bits (none for f32/f16)
};

class OpenClMatmul : public OpenClKernels, public ::testing::WithParamInterface<MatmulCase> {};

TEST_P(OpenClMatmul, MatchesCpuAndDequantizedReference) {
  const MatmulCase c = GetParam();
  ASSERT_TRUE(backend_->on_device(Op::kMatmul, c.type));
  const test::TestMatrix m = test::make_matrix(c.type, 512, 72, 1);
  for (int64_t n_tokens : {1, 5, 19}) {
    const test::MatmulError e = test::matmul_error(*backend_, cpu_, m, n_tokens);
    EXPECT_LT(e.vs_cpu, c.max_nmse_vs_cpu) << dtype_name(c.type) << " n_tokens " << n_tokens;
    EXPECT_LT(e.vs_exact, 1e-10) << dtype_name(c.type) << " n_tokens " << n_tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, OpenClMatmul,
                         ::testing::Values(MatmulCase{DType::Q4_0, 1e-4}, MatmulCase{DType::Q8_0, 1e-4},
                                           MatmulCase{DType::Q4_K, 1e-4}, MatmulCase{DType::IQ4_NL, 1e-4},
                                           MatmulCase{DType::IQ4_XS, 1e-4}, MatmulCase{DType::F16, 1e-10},
                                           MatmulCase{DType::F32, 1e-10}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST_F(OpenClKernels, UncoveredWeightTypeRunsOnTheCpuDelegate) {
  EXPECT_FALSE(backend_->on_device(Op::kMatmul, DType::Q6_K));
  test::check_uncovered_matmul_runs_on_cpu(*backend_, cpu_, DType::Q6_K);
}

// The fused ops and matmul_batch against the unfused CPU ops (../backend_op_checks.h), for every
// weight type with a kernel and two without (those products run on the CPU delegate, so they
// match the CPU exactly). Each case has its own backend: the delegate caches repacked weights by
// address. The kernels never multiply in f16 (half_from past every case).
constexpr int64_t kNoHalfProducts = INT64_MAX;

class OpenClFused : public ::testing::TestWithParam<test::FusedCase> {};

TEST_P(OpenClFused, MatchUnfusedCpuOps) {
  auto b = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(b);
  const test::FusedCase c = GetParam();
  EXPECT_EQ((*b)->on_device(Op::kMatmul, c.type), c.on_device);
  test::check_fused_ops(**b, c, kNoHalfProducts);
}

// The CPU path rounds activations to 8 bits (none for f32/f16): up to ~1.3e-4 on 40 outputs.
INSTANTIATE_TEST_SUITE_P(Types, OpenClFused,
                         ::testing::Values(test::FusedCase{DType::Q4_0, 3e-4, true}, test::FusedCase{DType::Q8_0, 3e-4, true},
                                           test::FusedCase{DType::Q4_K, 3e-4, true}, test::FusedCase{DType::IQ4_NL, 3e-4, true},
                                           test::FusedCase{DType::IQ4_XS, 3e-4, true}, test::FusedCase{DType::F16, 1e-10, true},
                                           test::FusedCase{DType::F32, 1e-10, true}, test::FusedCase{DType::Q6_K, 0.0, false},
                                           test::FusedCase{DType::Q5_K, 0.0, false}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST(OpenClFusedMixed, DeviceAndCpuProductsInOneBatch) {
  auto b = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(b);
  OpenClBackend& device = **b;
  test::check_mixed_batch(device,
                          {DType::Q4_0, DType::Q6_K, DType::F32, DType::Q8_0, DType::Q5_K, DType::Q4_K, DType::IQ4_XS, DType::F16,
                           DType::IQ4_NL},
                          [&](DType t) { return device.on_device(Op::kMatmul, t); }, 3e-4, kNoHalfProducts);
}

TEST_F(OpenClKernels, RmsNorm) { test::check_rms_norm(*backend_, cpu_, 1e-12); }

TEST_F(OpenClKernels, SwigluAndAdd) { test::check_swiglu_and_add(*backend_, cpu_, 1e-12); }
TEST_F(OpenClKernels, BiasAndStridedCopy) { test::check_bias_and_strided_copy(*backend_, cpu_); }
TEST_F(OpenClKernels, TopCandidates) { test::check_top_candidates(*backend_, cpu_); }
TEST_F(OpenClKernels, MoeOps) { test::check_moe_ops(*backend_); }
TEST_F(OpenClKernels, OpsChainWithoutSyncs) { test::check_op_chain(*backend_, cpu_, 1e-10); }

class OpenClRope : public OpenClKernels, public ::testing::WithParamInterface<test::RopeCase> {};

TEST_P(OpenClRope, MatchesCpu) { test::check_rope(*backend_, cpu_, GetParam(), 1e-9); }

INSTANTIATE_TEST_SUITE_P(Modes, OpenClRope, ::testing::ValuesIn(test::kRopeCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(OpenClKernels, AttentionGqaOverPagedCache) { test::check_attention_gqa(*backend_, cpu_, 1e-10); }

TEST_F(OpenClKernels, MlaAttentionOverLatentCache) {
  test::check_mla_attention(*backend_, cpu_, 128, 32, 1e-10);
  test::check_mla_attention(*backend_, cpu_, 512, 64, 1e-10);  // DeepSeek-V2/V3 widths
}

// KV caches stored as f16 and q8_0 (../backend_op_checks.h kv_types_cases) attend in the
// kernels, none of it on the CPU delegate; bf16 (no kernel) does, and matches the CPU exactly.
class OpenClKvTypes : public OpenClKernels, public ::testing::WithParamInterface<test::KvTypesCase> {};

TEST_P(OpenClKvTypes, AttentionReadsTheStoredRows) { test::check_kv_types_on_device(*backend_, cpu_, GetParam()); }

INSTANTIATE_TEST_SUITE_P(Types, OpenClKvTypes, ::testing::ValuesIn(test::kv_types_cases()), test::kv_types_case_name);

TEST_F(OpenClKernels, UncoveredKvTypeAttendsOnTheCpuDelegate) { test::check_uncovered_kv_type_on_cpu(*backend_, cpu_); }

TEST(OpenClProgramCache, SecondStartLoadsTheCompiledBinary) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/opencl-cache-roundtrip";
  std::filesystem::remove_all(dir);
  auto first = test::make_test_backend(dir);
  FATHOM_OPENCL_OR_SKIP(first);
  EXPECT_FALSE((*first)->program_from_cache());
  size_t n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n_files += entry.path().extension() == ".bin";
  EXPECT_EQ(n_files, 1u) << "one binary per device, driver and source";
  auto second = test::make_test_backend(dir);
  ASSERT_TRUE(second) << second.status().to_string();
  EXPECT_TRUE((*second)->program_from_cache());
  // A corrupt cache entry is ignored and rebuilt, not an error.
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::FILE* f = std::fopen(entry.path().c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not a program binary", f);
    std::fclose(f);
  }
  auto third = test::make_test_backend(dir);
  ASSERT_TRUE(third) << third.status().to_string();
  EXPECT_FALSE((*third)->program_from_cache());
}

TEST(OpenClDevice, ReportsWhatItOffers) {
  auto b = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(b);
  const OpenClDeviceInfo& d = (*b)->device();
  EXPECT_FALSE(d.name.empty());
  EXPECT_FALSE(d.platform.empty());
  EXPECT_GT(d.compute_units, 0);
  EXPECT_GT(d.max_alloc_bytes, 0u);
  EXPECT_STREQ((*b)->name(), "opencl");
  std::printf("[ device   ] %s (%s), driver %s, %d compute units, unified memory %d, fp16 %d, subgroups %d, int dot %d\n",
              d.name.c_str(), d.platform.c_str(), d.driver_version.c_str(), d.compute_units, d.host_unified, d.fp16,
              d.subgroups, d.int_dot);
}

TEST(OpenClDevice, MissingDeviceIndexIsNotFound) {
  OpenClOptions o;
  o.device = "opencl:999";
  auto b = OpenClBackend::create(o);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status().code(), ErrorCode::kNotFound) << b.status().to_string();
  o.device = "opencl:x";
  auto bad = OpenClBackend::create(o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
}

TEST(OpenClDevice, BrokenBuildFailsWithTheCompilerLog) {
  OpenClOptions o;
  o.inject_build_error = true;
  auto b = OpenClBackend::create(o);
  ASSERT_FALSE(b);
  if (b.status().code() == ErrorCode::kNotFound) GTEST_SKIP() << "no OpenCL device here: " << b.status().message();
  EXPECT_EQ(b.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(b.status().message().find("injected on purpose"), std::string::npos) << b.status().message();
}

}  // namespace
}  // namespace fathom
