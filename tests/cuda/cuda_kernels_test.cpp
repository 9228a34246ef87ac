// Every CUDA kernel against the CPU backend by normalized mean squared error (skipped without a
// CUDA device): the checks every accelerator backend passes (../backend_op_checks.h) with this
// backend's thresholds. Matmul is also held to the f32 dot of the dequantized weights: the
// matrix-vector kernels compute it exactly up to summation order; from 16 tokens on, cuBLAS
// multiplies in f16 (weights dequantized, activations rounded), f32 accumulation. The CPU backend
// quantizes activations to 8 bits for quantized weights, so its own NMSE to the kernels is larger.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "../backend_op_checks.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_layout.h"
#include "cuda_test_util.h"

namespace fathom {
namespace {

using test::make_matrix;
using test::nmse;
using test::random_floats;
using test::TestMatrix;

// One backend for the suite: starting the device and cuBLAS is the slow part.
class CudaKernels : public test::SharedBackendTest<CudaBackend> {
 protected:
  static void SetUpTestSuite() { keep(test::make_test_backend()); }
  void SetUp() override { require_backend("CUDA", ""); }
};

struct MatmulCase {
  DType type;
  double max_nmse_vs_cpu;  // the CPU path rounds activations to 8 bits (none for f32/f16/bf16)
};

class CudaMatmul : public CudaKernels, public ::testing::WithParamInterface<MatmulCase> {};

TEST_P(CudaMatmul, MatchesCpuAndDequantizedReference) {
  const MatmulCase c = GetParam();
  ASSERT_TRUE(backend_->on_device(Op::kMatmul, c.type));
  const TestMatrix m = make_matrix(c.type, 512, 70, 1);  // 70: the last group of 4 rows is partial
  for (int64_t n_tokens : {1, 3, 9, 64}) {
    const test::MatmulError e = test::matmul_error(*backend_, cpu_, m, n_tokens);
    // f16 products (cuBLAS path) round each operand by up to 2^-11: ~1e-7 NMSE; f32 weights stay f32.
    const bool half_products = n_tokens >= 16 && c.type != DType::F32;
    EXPECT_LT(e.vs_cpu, half_products ? std::max(c.max_nmse_vs_cpu, 1e-6) : c.max_nmse_vs_cpu)
        << dtype_name(c.type) << " n_tokens " << n_tokens;
    EXPECT_LT(e.vs_exact, half_products ? 1e-6 : 1e-10) << dtype_name(c.type) << " n_tokens " << n_tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmul,
                         ::testing::Values(MatmulCase{DType::Q4_0, 1e-4}, MatmulCase{DType::Q8_0, 1e-4},
                                           MatmulCase{DType::Q4_K, 1e-4}, MatmulCase{DType::Q5_K, 1e-4},
                                           MatmulCase{DType::Q6_K, 1e-4}, MatmulCase{DType::IQ4_NL, 1e-4},
                                           MatmulCase{DType::IQ4_XS, 1e-4}, MatmulCase{DType::F16, 1e-10},
                                           MatmulCase{DType::BF16, 1e-10}, MatmulCase{DType::F32, 1e-10}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

// The batched and fused products (matmul_batch, rms_norm_matmul_batch, swiglu_matmul) against
// the unfused CPU ops (../backend_op_checks.h), kernel types and CPU-delegate types alike,
// through both device paths (matrix-vector below 16 tokens, f16 cuBLAS from 16). One backend per
// case: a backend finds uploaded weights again by host address, and these matrices die with it.
class CudaFused : public ::testing::TestWithParam<test::FusedCase> {};

TEST_P(CudaFused, MatchUnfusedCpuOps) {
  auto b = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(b.status());
  const test::FusedCase c = GetParam();
  EXPECT_EQ((*b)->on_device(Op::kMatmul, c.type), c.on_device);
  test::check_fused_ops(**b, c, cuda::kGemmMinTokens);
}

INSTANTIATE_TEST_SUITE_P(Types, CudaFused,
                         ::testing::Values(test::FusedCase{DType::Q4_0, 1e-4, true}, test::FusedCase{DType::Q8_0, 1e-4, true},
                                           test::FusedCase{DType::Q4_K, 1e-4, true}, test::FusedCase{DType::Q6_K, 1e-4, true},
                                           // the CPU rounds iq4_xs activations to q8_K, one scale per
                                           // 256 values: ~2x the others' NMSE (measured up to 2.3e-4)
                                           test::FusedCase{DType::IQ4_NL, 1e-4, true}, test::FusedCase{DType::IQ4_XS, 3e-4, true},
                                           test::FusedCase{DType::F16, 1e-10, true}, test::FusedCase{DType::BF16, 1e-10, true},
                                           test::FusedCase{DType::F32, 1e-10, true}, test::FusedCase{DType::Q5_0, 0.0, false}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST(CudaFusedMixed, DeviceAndCpuProductsInOneBatch) {
  auto b = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(b.status());
  CudaBackend& device = **b;
  test::check_mixed_batch(device,
                          {DType::Q4_0, DType::Q5_0, DType::F32, DType::Q8_0, DType::Q4_1, DType::Q4_K, DType::F16, DType::IQ4_NL},
                          [&](DType t) { return device.on_device(Op::kMatmul, t); }, 1e-4, cuda::kGemmMinTokens);
}

TEST_F(CudaKernels, PreparedWeightsGiveTheSameProducts) {
  const int64_t n_in = 256, n_out = 40, n_tokens = 2;
  const TestMatrix m = make_matrix(DType::Q4_K, n_in, n_out, 3);
  const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 4);
  std::vector<float> before(static_cast<size_t>(n_out * n_tokens)), after(before.size());
  backend_->matmul(m.w, x.data(), n_tokens, before.data());  // uploaded on first use
  test::read_back(*backend_, {{before.data(), before.size()}});
  const TestMatrix fresh = make_matrix(DType::Q4_K, n_in, n_out, 3);
  backend_->prepare_matmul_weights({fresh.w}, /*file_backed=*/false);  // uploaded up front
  backend_->matmul(fresh.w, x.data(), n_tokens, after.data());
  test::read_back(*backend_, {{after.data(), after.size()}});
  EXPECT_EQ(before, after);
}

TEST_F(CudaKernels, UncoveredWeightTypeRunsOnTheCpuDelegate) {
  EXPECT_FALSE(backend_->on_device(Op::kMatmul, DType::Q5_0));
  EXPECT_FALSE(backend_->on_device(Op::kGetRows, DType::F32));
  test::check_uncovered_matmul_runs_on_cpu(*backend_, cpu_, DType::Q5_0);
}

TEST_F(CudaKernels, RmsNorm) { test::check_rms_norm(*backend_, cpu_, 1e-12); }

TEST_F(CudaKernels, SwigluAndAdd) { test::check_swiglu_and_add(*backend_, cpu_, 1e-12); }
TEST_F(CudaKernels, BiasAndStridedCopy) { test::check_bias_and_strided_copy(*backend_, cpu_); }
TEST_F(CudaKernels, TopCandidates) { test::check_top_candidates(*backend_, cpu_); }
TEST_F(CudaKernels, MoeOps) { test::check_moe_ops(*backend_); }
TEST_F(CudaKernels, OpsChainWithoutSyncs) { test::check_op_chain(*backend_, cpu_, 1e-10); }

class CudaRope : public CudaKernels, public ::testing::WithParamInterface<test::RopeCase> {};

TEST_P(CudaRope, MatchesCpu) { test::check_rope(*backend_, cpu_, GetParam(), 1e-12); }  // angles from the host

INSTANTIATE_TEST_SUITE_P(Modes, CudaRope, ::testing::ValuesIn(test::kRopeCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(CudaKernels, AttentionGqaOverPagedCache) { test::check_attention_gqa(*backend_, cpu_, 1e-10); }

// KV caches stored as f16 and q8_0: the mirrors hold the stored rows (converted by store_kv on
// the device, the host cache getting the same bytes) and the kernels read them; none of it on
// the CPU delegate. bf16 (no kernel) attends there and matches the CPU exactly.
class CudaKvTypes : public CudaKernels, public ::testing::WithParamInterface<test::KvTypesCase> {};

TEST_P(CudaKvTypes, AttentionReadsTheStoredRows) { test::check_kv_types_on_device(*backend_, cpu_, GetParam()); }

INSTANTIATE_TEST_SUITE_P(Types, CudaKvTypes, ::testing::ValuesIn(test::kv_types_cases()), test::kv_types_case_name);

TEST_F(CudaKernels, UncoveredKvTypeAttendsOnTheCpuDelegate) { test::check_uncovered_kv_type_on_cpu(*backend_, cpu_); }

// A fresh backend (no mirror of any cache yet) meets a cache whose rows the CPU wrote: the
// mirror is seeded from them on first use.
TEST(CudaMirror, IsSeededFromRowsWrittenBeforeFirstUse) {
  auto backend = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(backend.status());
  CpuBackend cpu(2);
  const int64_t n_head = 8, n_head_kv = 1, hd = 128;  // 8 query heads share one KV head
  const KvCacheShape shape = test::mha_shape(n_head_kv, hd, hd);
  KvCache kv(shape, 16);
  const test::PagedBatch all = test::fill_cache(cpu, kv, shape.k_width, shape.v_width, 60);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q = random_floats(static_cast<size_t>(n * n_head * hd), 61);
  std::vector<float> got(static_cast<size_t>(n * n_head * hd)), want(got.size());
  (*backend)->attention(q.data(), kv, 1, batch, n_head, n_head_kv, hd, hd, 0.09f, got.data());
  test::cpu_f32_attention(cpu, q.data(), kv, 1, batch, n_head, n_head_kv, hd, hd, 0.09f, want.data());
  EXPECT_LT(nmse(got.data(), want.data(), static_cast<int64_t>(got.size())), 1e-10);
}

// Decode over long contexts: few queries, so the positions are split into parts over the
// device's multiprocessors (flash-decoding) and merged; every split count the policy picks for
// these lengths, from 1 part up, must give the CPU's result.
TEST_F(CudaKernels, DecodeAttentionOverLongContextsSplitsAndMerges) {
  const int64_t n_head = 8, n_head_kv = 2, hd = 128;
  for (const KvCacheTypes types : {KvCacheTypes{DType::F32, DType::F32}, KvCacheTypes{DType::F16, DType::F16},
                                   KvCacheTypes{DType::Q8_0, DType::Q8_0}}) {
    for (int64_t n_ctx : {int64_t{100}, int64_t{700}, int64_t{3000}, int64_t{9000}}) {
      KvCacheShape shape = test::mha_shape(n_head_kv, hd, hd, types);
      shape.n_layer = 1;
      shape.n_ctx_max = n_ctx;
      KvCache kv(shape, static_cast<int32_t>((n_ctx + 15) / 16));
      ASSERT_TRUE(kv.reserve(0, n_ctx).is_ok());
      std::vector<int32_t> seq(static_cast<size_t>(n_ctx), 0), pos(static_cast<size_t>(n_ctx));
      for (int64_t i = 0; i < n_ctx; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
      const std::vector<float> k = random_floats(static_cast<size_t>(n_ctx * shape.k_width), 70);
      const std::vector<float> v = random_floats(static_cast<size_t>(n_ctx * shape.v_width), 71);
      backend_->store_kv(kv, 0, AttentionBatch{seq.data(), pos.data(), n_ctx}, k.data(), v.data());
      const int32_t last = static_cast<int32_t>(n_ctx - 1);
      const AttentionBatch one{seq.data(), &last, 1};
      const std::vector<float> q = random_floats(static_cast<size_t>(n_head * hd), 72, 2.0f);
      std::vector<float> got(static_cast<size_t>(n_head * hd)), want(got.size());
      backend_->attention(q.data(), kv, 0, one, n_head, n_head_kv, hd, hd, 0.09f, got.data());
      test::read_back(*backend_, {{got.data(), got.size()}});  // the cache's host rows land too
      cpu_.attention(q.data(), kv, 0, one, n_head, n_head_kv, hd, hd, 0.09f, want.data());
      const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
      std::printf("[ nmse     ] decode attention over %lld positions (%s), %d parts: %.3e\n", static_cast<long long>(n_ctx),
                  test::kv_types_name(types).c_str(), cuda::attention_splits(n_head, n_ctx, backend_->device().multiprocessors), e);
      EXPECT_LT(e, 1e-10) << test::kv_types_name(types);
    }
  }
}

TEST_F(CudaKernels, MlaAttentionOverLatentCache) {
  test::check_mla_attention(*backend_, cpu_, 128, 32, 1e-10);
  test::check_mla_attention(*backend_, cpu_, 512, 64, 1e-10);  // DeepSeek-V2/V3 widths
}

TEST(CudaDevice, ReportsWhatItOffers) {
  auto b = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(b.status());
  const CudaDeviceInfo& d = (*b)->device();
  EXPECT_FALSE(d.name.empty());
  EXPECT_GT(d.multiprocessors, 0);
  EXPECT_GT(d.total_memory_bytes, 0u);
  EXPECT_STREQ((*b)->name(), "cuda");
  std::printf("[ device   ] %s, compute capability %d.%d, %d SMs, %.1f GiB\n", d.name.c_str(), d.cc_major, d.cc_minor,
              d.multiprocessors, static_cast<double>(d.total_memory_bytes) / (1 << 30));
}

// Runs with or without a device: a device that does not exist is final (no retries), a malformed
// name is the caller's error.
TEST(CudaDevice, MissingDeviceIsNotFoundAndBadNameInvalid) {
  CudaOptions o;
  o.device = "cuda:999";
  auto b = CudaBackend::create(o);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.status().code(), ErrorCode::kNotFound) << b.status().to_string();
  for (const char* bad : {"cuda:x", "cuda:", "cuda:-1", "cuda0"}) {
    o.device = bad;
    auto r = CudaBackend::create(o);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << bad << ": " << r.status().to_string();
  }
}

}  // namespace
}  // namespace fathom
