// The kernel variants (OpenClKernelVariants), each forced, against the CPU backend and the f64
// products of the dequantized weights: plain matmul batches, the fused ops, and rms_norm (whose
// reduction the subgroup variant changes). The emulated variants run on any device, PoCL
// included, and hold each variant's arithmetic: half sums inside a weight block, the two-level
// subgroup reduction, int8 activations with integer dot products. The native variants need the
// device's extension; PoCL has none of them, so there those cases skip and say so.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "../backend_op_checks.h"
#include "backend/cpu/cpu_backend.h"
#include "opencl_test_util.h"
#include "quant/quant.h"

namespace fathom {
namespace {

using V = OpenClVariant;

struct VariantCase {
  const char* name;
  OpenClKernelVariants variants;
};

// Products on f32 activations against the f64 reference of the dequantized weights: f32 sums
// differ only in summation order (~1e-14), half sums of 32 products by ~1e-6.
constexpr double kMaxNmseF32SumsVsReference = 1e-10;
constexpr double kMaxNmseHalfSumsVsReference = 1e-5;

// Half sums apply to the block formats only; f32 and f16 weights keep f32 sums in every variant.
bool half_sums(const OpenClKernelVariants& v, DType t) {
  return v.f16_accumulation != V::kOff && t != DType::F32 && t != DType::F16;
}

// The int8 kernels compute what src/quant's scalar reference computes (activations rounded by
// quantize_row_ref to q8_0, then vec_dot_ref), up to summation order; the CPU backend's repacked
// kernels keep the activation scales in f32 rather than f16, which moves them ~5e-8 from both. To
// the f64 reference they are as far as the CPU backend's own 8-bit activations (~1e-4).
constexpr double kMaxNmseInt8VsScalarReference = 1e-12;
constexpr double kMaxNmseInt8VsCpu = 1e-6;
constexpr double kMaxNmseInt8VsReference = 3e-4;

// NMSE of the device's products against the scalar reference of the int8 path.
double int8_vs_scalar_reference(Backend& device, const test::TestMatrix& m, int64_t n_tokens) {
  const int64_t n_in = m.w.ne[0], n_out = m.w.ne[1];
  const std::vector<float> x = test::random_floats(static_cast<size_t>(n_tokens * n_in), 130 + static_cast<uint32_t>(n_tokens), 2.0f);
  const DType act_type = quant::vec_dot_type(m.w.dtype);
  std::vector<uint8_t> xq(row_size(act_type, n_in));
  std::vector<float> got(static_cast<size_t>(n_tokens * n_out)), want(got.size());
  device.matmul(m.w, x.data(), n_tokens, got.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    quant::quantize_row_ref(act_type, x.data() + t * n_in, xq.data(), n_in);
    for (int64_t r = 0; r < n_out; ++r)
      want[static_cast<size_t>(t * n_out + r)] = quant::vec_dot_ref(m.w.dtype, n_in, m.w.row(r), xq.data());
  }
  const double e = test::nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] int8 matmul %-5s n_tokens=%-3lld vs scalar reference %.3e\n", dtype_name(m.w.dtype),
              static_cast<long long>(n_tokens), e);
  return e;
}

bool uses_int8(const OpenClKernelVariants& v, DType t) {
  return v.int8_dot != V::kOff && (t == DType::Q4_0 || t == DType::Q8_0 || t == DType::IQ4_NL);
}

// Why the case cannot run here, or empty when it can.
std::string missing_extension(const OpenClKernelVariants& v, const OpenClDeviceInfo& d) {
  if (v.f16_accumulation == V::kNative && !d.fp16) return "cl_khr_fp16";
  if (v.subgroup_reduction == V::kNative && !d.subgroups) return "cl_khr_subgroups / cl_intel_subgroups";
  if (v.int8_dot == V::kNative && !d.int_dot) return "cl_khr_integer_dot_product";
  return "";
}

class OpenClVariants : public ::testing::TestWithParam<VariantCase> {};

TEST_P(OpenClVariants, MatchCpuAndReference) {
  const VariantCase c = GetParam();
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  if (const std::string ext = missing_extension(c.variants, (*probe)->device()); !ext.empty())
    GTEST_SKIP() << (*probe)->device().name << " lacks " << ext << ": this native variant cannot run here (only its emulation)";
  probe->reset();
  auto b = test::make_test_backend(test::opencl_test_cache_dir(), c.variants);
  ASSERT_TRUE(b) << b.status().to_string();
  // Built as asked: a forced variant never falls back to the portable kernels.
  EXPECT_EQ((*b)->variants().f16_accumulation, c.variants.f16_accumulation);
  EXPECT_EQ((*b)->variants().subgroup_reduction, c.variants.subgroup_reduction);
  EXPECT_EQ((*b)->variants().int8_dot, c.variants.int8_dot);

  CpuBackend cpu(2);
  const std::vector<DType> types = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::IQ4_NL, DType::IQ4_XS, DType::F16, DType::F32};
  const std::vector<test::TestMatrix> ms = test::batch_matrices(types, 110);
  std::vector<test::TestMatrix> downs;
  for (DType t : types) downs.push_back(test::make_matrix(t, 512, 40, 120));
  const auto check = [&](const test::MatmulError& e, DType t, int64_t n_tokens) {
    if (uses_int8(c.variants, t)) {
      EXPECT_LT(e.vs_cpu, kMaxNmseInt8VsCpu) << dtype_name(t) << " n_tokens " << n_tokens;
      EXPECT_LT(e.vs_exact, kMaxNmseInt8VsReference) << dtype_name(t) << " n_tokens " << n_tokens;
    } else if (half_sums(c.variants, t)) {
      EXPECT_LT(e.vs_exact, kMaxNmseHalfSumsVsReference) << dtype_name(t) << " n_tokens " << n_tokens;
      // Half sums leave a trace far above f32 rounding (~1e-14): the variant is really in effect.
      EXPECT_GT(e.vs_exact, 1e-9) << dtype_name(t) << " n_tokens " << n_tokens;
    } else {
      EXPECT_LT(e.vs_exact, kMaxNmseF32SumsVsReference) << dtype_name(t) << " n_tokens " << n_tokens;
    }
  };
  for (int64_t n_tokens : {1, 3, 17}) {
    for (size_t i = 0; i < types.size(); ++i) {
      if (!uses_int8(c.variants, types[i])) continue;
      EXPECT_LT(int8_vs_scalar_reference(**b, downs[i], n_tokens), kMaxNmseInt8VsScalarReference) << dtype_name(types[i]);
    }
    const std::vector<test::MatmulError> batch = test::matmul_batch_errors(**b, cpu, ms, n_tokens);
    const std::vector<test::MatmulError> fused = test::rms_norm_matmul_errors(**b, cpu, ms, n_tokens);
    for (size_t i = 0; i < types.size(); ++i) {
      check(batch[i], types[i], n_tokens);
      check(fused[i], types[i], n_tokens);
      check(test::swiglu_matmul_error(**b, cpu, downs[i], n_tokens), types[i], n_tokens);
    }
  }
  test::check_rms_norm(**b, cpu, 1e-12);
}

const OpenClKernelVariants kPortable{V::kOff, V::kOff, V::kOff};

INSTANTIATE_TEST_SUITE_P(Forced, OpenClVariants,
                         ::testing::Values(VariantCase{"portable", kPortable},
                                           VariantCase{"f16_accumulation_emulated", {V::kEmulated, V::kOff, V::kOff}},
                                           VariantCase{"subgroups_emulated", {V::kOff, V::kEmulated, V::kOff}},
                                           VariantCase{"int8_dot_emulated", {V::kOff, V::kOff, V::kEmulated}},
                                           VariantCase{"all_emulated", {V::kEmulated, V::kEmulated, V::kEmulated}},
                                           VariantCase{"f16_accumulation_native", {V::kNative, V::kOff, V::kOff}},
                                           VariantCase{"subgroups_native", {V::kOff, V::kNative, V::kOff}},
                                           VariantCase{"int8_dot_native", {V::kOff, V::kOff, V::kNative}}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(OpenClVariantChoice, AutoFollowsTheDeviceExtensions) {
  auto b = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(b);
  const OpenClDeviceInfo& d = (*b)->device();
  const OpenClKernelVariants& v = (*b)->variants();
  EXPECT_EQ(v.f16_accumulation, d.fp16 ? V::kNative : V::kOff);
  EXPECT_EQ(v.subgroup_reduction, d.subgroups ? V::kNative : V::kOff);
  EXPECT_EQ(v.int8_dot, d.int_dot ? V::kNative : V::kOff);
}

TEST(OpenClVariantChoice, ForcingANativeVariantTheDeviceLacksIsAnError) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  const OpenClDeviceInfo d = (*probe)->device();
  probe->reset();
  int n_checked = 0;
  for (const auto& [has, variants, extension] :
       {std::tuple{d.fp16, OpenClKernelVariants{V::kNative, V::kOff, V::kOff}, "cl_khr_fp16"},
        std::tuple{d.subgroups, OpenClKernelVariants{V::kOff, V::kNative, V::kOff}, "cl_khr_subgroups"},
        std::tuple{d.int_dot, OpenClKernelVariants{V::kOff, V::kOff, V::kNative}, "cl_khr_integer_dot_product"}}) {
    if (has) continue;
    ++n_checked;
    auto b = test::make_test_backend(test::opencl_test_cache_dir(), variants);
    ASSERT_FALSE(b) << extension;
    EXPECT_EQ(b.status().code(), ErrorCode::kInvalidArgument) << b.status().to_string();
    EXPECT_NE(b.status().message().find(extension), std::string::npos) << b.status().message();
  }
  if (n_checked == 0) GTEST_SKIP() << d.name << " has every extension the native variants need";
}

TEST(OpenClVariantChoice, EachVariantHasItsOwnCachedBinary) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/opencl-cache-variants";
  std::filesystem::remove_all(dir);
  auto portable = test::make_test_backend(dir, kPortable);
  FATHOM_OPENCL_OR_SKIP(portable);
  EXPECT_FALSE((*portable)->program_from_cache());
  const OpenClKernelVariants int8{V::kOff, V::kOff, V::kEmulated};
  auto first = test::make_test_backend(dir, int8);
  ASSERT_TRUE(first) << first.status().to_string();
  EXPECT_FALSE((*first)->program_from_cache()) << "another variant's binary was loaded";
  size_t n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n_files += entry.path().extension() == ".bin";
  EXPECT_EQ(n_files, 2u);
  auto second = test::make_test_backend(dir, int8);
  ASSERT_TRUE(second) << second.status().to_string();
  EXPECT_TRUE((*second)->program_from_cache());
  EXPECT_EQ((*second)->variants().int8_dot, V::kEmulated);
}

}  // namespace
}  // namespace fathom
