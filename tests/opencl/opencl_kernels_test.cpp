// Every OpenCL kernel against the CPU reference by normalized mean squared error, on whatever
// OpenCL device is present (PoCL on the CPU in CI; skipped without one). Matmul is also held to
// the f32 dot of the dequantized weights, which it computes exactly up to summation order: the
// CPU backend quantizes activations to 8 bits, so its own NMSE to the kernels is larger.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "opencl_test_util.h"
#include "quant/quant.h"

namespace fathom {
namespace {

using test::nmse;

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

class OpenClKernels : public ::testing::Test {
 protected:
  // One backend for the suite: bringing PoCL up and building the program is the slow part.
  static void SetUpTestSuite() {
    auto b = test::make_test_backend();
    if (b) backend_ = std::move(*b).release();
    else status_ = new Status(b.status());
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
    delete status_;
    status_ = nullptr;
  }
  void SetUp() override {
    if (!backend_) {
      if (status_->code() == ErrorCode::kNotFound)
        GTEST_SKIP() << "no OpenCL device here (" << status_->message() << "); install pocl-opencl-icd to run these tests";
      FAIL() << status_->to_string();
    }
  }
  static OpenClBackend* backend_;
  static Status* status_;
  CpuBackend cpu_{2};
};

OpenClBackend* OpenClKernels::backend_ = nullptr;
Status* OpenClKernels::status_ = nullptr;

struct MatmulCase {
  DType type;
  double max_nmse_vs_cpu;  // the CPU path rounds activations to 8 bits (none for f32/f16)
};

class OpenClMatmul : public OpenClKernels, public ::testing::WithParamInterface<MatmulCase> {};

TEST_P(OpenClMatmul, MatchesCpuAndDequantizedReference) {
  const MatmulCase c = GetParam();
  ASSERT_TRUE(backend_->on_device(Op::kMatmul, c.type));
  const int64_t n_in = 512, n_out = 72;
  const std::vector<float> wf = random_floats(static_cast<size_t>(n_in * n_out), 1, 0.05f);
  // Two spare rows in front: the view starts mid-buffer, as an expert slice of a stacked tensor does.
  const size_t row_bytes = row_size(c.type, n_in);
  std::vector<uint8_t> wq(row_bytes * static_cast<size_t>(n_out + 2));
  for (int64_t r = 0; r < n_out; ++r)
    quant::quantize_row_ref(c.type, wf.data() + r * n_in, wq.data() + row_bytes * static_cast<size_t>(r + 2), n_in);
  TensorView w;
  w.name = "w";
  w.dtype = c.type;
  w.ne = {n_in, n_out, 1, 1};
  w.n_dims = 2;
  w.data = wq.data() + 2 * row_bytes;
  // The CPU backend gets its own copy: it may repack a matrix and release the source pages.
  std::vector<uint8_t> wq_cpu = wq;
  TensorView w_cpu = w;
  w_cpu.data = wq_cpu.data() + 2 * row_bytes;
  // Dequantized rows for the exact reference.
  std::vector<float> wd(static_cast<size_t>(n_in * n_out));
  for (int64_t r = 0; r < n_out; ++r) quant::dequantize_row(c.type, w.row(r), wd.data() + r * n_in, n_in);

  for (int64_t n_tokens : {1, 5, 19}) {
    const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n_in), 2 + static_cast<uint32_t>(n_tokens));
    std::vector<float> got(static_cast<size_t>(n_tokens * n_out)), cpu(got.size()), exact(got.size());
    backend_->matmul(w, x.data(), n_tokens, got.data());
    cpu_.matmul(w_cpu, x.data(), n_tokens, cpu.data());
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < n_out; ++r) {
        double s = 0.0;
        for (int64_t i = 0; i < n_in; ++i) s += static_cast<double>(wd[static_cast<size_t>(r * n_in + i)]) * x[static_cast<size_t>(t * n_in + i)];
        exact[static_cast<size_t>(t * n_out + r)] = static_cast<float>(s);
      }
    const double vs_cpu = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
    const double vs_exact = nmse(got.data(), exact.data(), static_cast<int64_t>(got.size()));
    std::printf("[ nmse     ] matmul %-5s n_tokens=%-3lld vs cpu %.3e, vs dequantized f32 %.3e\n", dtype_name(c.type),
                static_cast<long long>(n_tokens), vs_cpu, vs_exact);
    EXPECT_LT(vs_cpu, c.max_nmse_vs_cpu) << dtype_name(c.type) << " n_tokens " << n_tokens;
    EXPECT_LT(vs_exact, 1e-10) << dtype_name(c.type) << " n_tokens " << n_tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, OpenClMatmul,
                         ::testing::Values(MatmulCase{DType::Q4_0, 1e-4}, MatmulCase{DType::Q8_0, 1e-4},
                                           MatmulCase{DType::Q4_K, 1e-4}, MatmulCase{DType::F16, 1e-10},
                                           MatmulCase{DType::F32, 1e-10}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST_F(OpenClKernels, UncoveredWeightTypeRunsOnTheCpuDelegate) {
  EXPECT_FALSE(backend_->on_device(Op::kMatmul, DType::Q6_K));
  const int64_t n_in = 256, n_out = 8, n_tokens = 3;
  const std::vector<float> wf = random_floats(static_cast<size_t>(n_in * n_out), 5);
  std::vector<uint8_t> wq(row_size(DType::Q6_K, n_in) * static_cast<size_t>(n_out));
  for (int64_t r = 0; r < n_out; ++r)
    quant::quantize_row_ref(DType::Q6_K, wf.data() + r * n_in, wq.data() + row_size(DType::Q6_K, n_in) * static_cast<size_t>(r), n_in);
  TensorView w;
  w.dtype = DType::Q6_K;
  w.ne = {n_in, n_out, 1, 1};
  w.n_dims = 2;
  w.data = wq.data();
  std::vector<uint8_t> wq_cpu = wq;  // the CPU backend may repack and release the source pages
  TensorView w_cpu = w;
  w_cpu.data = wq_cpu.data();
  const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 6);
  std::vector<float> got(static_cast<size_t>(n_out * n_tokens)), cpu(got.size());
  backend_->matmul(w, x.data(), n_tokens, got.data());
  cpu_.matmul(w_cpu, x.data(), n_tokens, cpu.data());
  EXPECT_EQ(got, cpu);
}

TEST_F(OpenClKernels, RmsNorm) {
  const int64_t n_rows = 7, n = 320;
  const std::vector<float> x = random_floats(static_cast<size_t>(n_rows * n), 10, 3.0f);
  const std::vector<float> weight = random_floats(static_cast<size_t>(n), 11);
  std::vector<float> got(x.size()), cpu(x.size());
  backend_->rms_norm(x.data(), weight.data(), n_rows, n, 1e-6f, got.data());
  cpu_.rms_norm(x.data(), weight.data(), n_rows, n, 1e-6f, cpu.data());
  const double e = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] rms_norm %.3e\n", e);
  EXPECT_LT(e, 1e-12);
  // In place, as the architectures call it.
  std::vector<float> inplace = x;
  backend_->rms_norm(inplace.data(), weight.data(), n_rows, n, 1e-6f, inplace.data());
  EXPECT_EQ(inplace, got);
}

TEST_F(OpenClKernels, SwigluAndAdd) {
  const int64_t n = 1000;
  const std::vector<float> gate = random_floats(static_cast<size_t>(n), 20, 2.0f), up = random_floats(static_cast<size_t>(n), 21);
  std::vector<float> got(static_cast<size_t>(n)), cpu(static_cast<size_t>(n));
  backend_->swiglu(gate.data(), up.data(), n, got.data());
  cpu_.swiglu(gate.data(), up.data(), n, cpu.data());
  const double e_swiglu = nmse(got.data(), cpu.data(), n);
  std::vector<float> x = gate, x_cpu = gate;
  backend_->add(x.data(), up.data(), n);
  cpu_.add(x_cpu.data(), up.data(), n);
  const double e_add = nmse(x.data(), x_cpu.data(), n);
  std::printf("[ nmse     ] swiglu %.3e, add %.3e\n", e_swiglu, e_add);
  EXPECT_LT(e_swiglu, 1e-12);
  EXPECT_EQ(e_add, 0.0);
}

struct RopeCase {
  const char* name;
  RopeMode mode;
  bool yarn;
  bool freq_factors;
};

class OpenClRope : public OpenClKernels, public ::testing::WithParamInterface<RopeCase> {};

TEST_P(OpenClRope, MatchesCpu) {
  const RopeCase c = GetParam();
  const int64_t n_tokens = 9, n_heads = 3, head_dim = 48;
  RopeParams p;
  p.n_rot = 32;  // fewer than head_dim: the tail stays as it is
  p.mode = c.mode;
  p.freq_base = 10000.0f;
  std::vector<float> factors;
  if (c.yarn) {
    p.freq_scale = 0.25f;
    p.ext_factor = 1.0f;
    p.beta_fast = 32.0f;
    p.beta_slow = 1.0f;
    p.n_ctx_orig = 4096;
  }
  if (c.freq_factors) {
    for (int i = 0; i < p.n_rot / 2; ++i) factors.push_back(1.0f + 0.5f * static_cast<float>(i));
    p.freq_factors = factors.data();
  }
  const std::vector<int32_t> positions = {0, 1, 2, 17, 100, 511, 1000, 4000, 12345};
  const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n_heads * head_dim), 30);
  std::vector<float> got = x, cpu = x;
  backend_->rope(got.data(), n_tokens, n_heads, head_dim, positions.data(), p);
  cpu_.rope(cpu.data(), n_tokens, n_heads, head_dim, positions.data(), p);
  const double e = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] rope %s %.3e\n", c.name, e);
  EXPECT_LT(e, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Modes, OpenClRope,
                         ::testing::Values(RopeCase{"normal", RopeMode::kNormal, false, false},
                                           RopeCase{"neox", RopeMode::kNeox, false, false},
                                           RopeCase{"yarn", RopeMode::kNormal, true, false},
                                           RopeCase{"freq_factors", RopeMode::kNeox, false, true}),
                         [](const auto& info) { return std::string(info.param.name); });

// Two sequences in one batch with 16-token blocks: sequence 0 decodes at position 40 after a
// 40-token prefill, sequence 1 prefills 23 tokens; blocks interleave in the pool.
struct PagedBatch {
  std::vector<int32_t> seq_ids, positions;
};

PagedBatch fill_cache(Backend& writer, KvCache& kv, int64_t k_width, int64_t v_width, uint32_t seed) {
  PagedBatch all;
  for (int32_t pos = 0; pos < 41; ++pos) {
    all.seq_ids.push_back(0);
    all.positions.push_back(pos);
    if (pos < 23) {
      all.seq_ids.push_back(1);
      all.positions.push_back(pos);
    }
  }
  EXPECT_TRUE(kv.reserve(0, 41).is_ok());
  EXPECT_TRUE(kv.reserve(1, 23).is_ok());
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const std::vector<float> k = random_floats(static_cast<size_t>(n * k_width), seed);
  const std::vector<float> v = random_floats(static_cast<size_t>(n * std::max<int64_t>(v_width, 1)), seed + 1);
  for (int64_t layer = 0; layer < kv.shape().n_layer; ++layer)
    writer.store_kv(kv, layer, AttentionBatch{all.seq_ids.data(), all.positions.data(), n}, k.data(), v_width > 0 ? v.data() : nullptr);
  return all;
}

TEST_F(OpenClKernels, AttentionGqaOverPagedCache) {
  const int64_t n_head = 4, n_head_kv = 2, hd_k = 64, hd_v = 48;
  KvCacheShape shape;
  shape.n_layer = 2;
  shape.k_width = n_head_kv * hd_k;
  shape.v_width = n_head_kv * hd_v;
  shape.n_ctx_max = 256;
  KvCache kv(shape, 16);
  const PagedBatch all = fill_cache(*backend_, kv, shape.k_width, shape.v_width, 40);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q = random_floats(static_cast<size_t>(n * n_head * hd_k), 42);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd_k));
  for (int64_t layer = 0; layer < 2; ++layer) {
    std::vector<float> got(static_cast<size_t>(n * n_head * hd_v)), cpu(got.size());
    backend_->attention(q.data(), kv, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, got.data());
    cpu_.attention(q.data(), kv, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, cpu.data());
    const double e = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
    std::printf("[ nmse     ] attention layer %lld %.3e\n", static_cast<long long>(layer), e);
    EXPECT_LT(e, 1e-10);
  }
  // New rows written after the cache was wrapped must reach the device (store_kv sync).
  ASSERT_TRUE(kv.reserve(1, 24).is_ok());
  const int32_t seq = 1, pos = 23;
  const std::vector<float> k_new = random_floats(static_cast<size_t>(shape.k_width), 43, 4.0f);
  const std::vector<float> v_new = random_floats(static_cast<size_t>(shape.v_width), 44, 4.0f);
  const AttentionBatch one{&seq, &pos, 1};
  backend_->store_kv(kv, 0, one, k_new.data(), v_new.data());
  std::vector<float> got(static_cast<size_t>(n_head * hd_v)), cpu(got.size());
  backend_->attention(q.data(), kv, 0, one, n_head, n_head_kv, hd_k, hd_v, scale, got.data());
  cpu_.attention(q.data(), kv, 0, one, n_head, n_head_kv, hd_k, hd_v, scale, cpu.data());
  EXPECT_LT(nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size())), 1e-10);
}

TEST_F(OpenClKernels, MlaAttentionOverLatentCache) {
  const int64_t n_head = 4, rank = 128, n_rot = 32;
  KvCacheShape shape;
  shape.n_layer = 1;
  shape.k_width = rank + n_rot;
  shape.v_width = 0;
  shape.n_ctx_max = 256;
  KvCache kv(shape, 16);
  const PagedBatch all = fill_cache(*backend_, kv, shape.k_width, 0, 50);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q_abs = random_floats(static_cast<size_t>(n * n_head * rank), 51, 0.2f);
  const std::vector<float> q_pe = random_floats(static_cast<size_t>(n * n_head * n_rot), 52, 0.2f);
  std::vector<float> got(static_cast<size_t>(n * n_head * rank)), cpu(got.size());
  backend_->mla_attention(q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, got.data());
  cpu_.mla_attention(q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, cpu.data());
  const double e = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] mla_attention %.3e\n", e);
  EXPECT_LT(e, 1e-10);
}

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
