// Every CUDA kernel against the CPU backend by normalized mean squared error (skipped without a
// CUDA device). Matmul is also held to the f32 dot of the dequantized weights: the matrix-vector
// kernels compute it exactly up to summation order; from 16 tokens on, cuBLAS multiplies in f16
// (weights dequantized, activations rounded), f32 accumulation. The CPU backend quantizes
// activations to 8 bits for quantized weights, so its own NMSE to the kernels is larger.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cuda_test_util.h"
#include "kv/kv_cache.h"
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

class CudaKernels : public ::testing::Test {
 protected:
  // One backend for the suite: starting the device and cuBLAS is the slow part.
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
    if (!backend_) FATHOM_CUDA_OR_SKIP(*status_);
  }
  static CudaBackend* backend_;
  static Status* status_;
  CpuBackend cpu_{2};
};

CudaBackend* CudaKernels::backend_ = nullptr;
Status* CudaKernels::status_ = nullptr;

// A quantized [n_out, n_in] matrix starting two rows into its buffer, as an expert slice of a
// stacked tensor does, with a separate copy for the CPU backend (which may repack a matrix and
// release the source pages) and its dequantized rows.
struct TestMatrix {
  std::vector<uint8_t> bytes, cpu_bytes;
  std::vector<float> dequantized;  // [n_out, n_in]
  TensorView w, w_cpu;
};

TestMatrix make_matrix(DType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  TestMatrix m;
  const std::vector<float> wf = random_floats(static_cast<size_t>(n_in * n_out), seed, 0.05f);
  const size_t row_bytes = row_size(type, n_in);
  m.bytes.resize(row_bytes * static_cast<size_t>(n_out + 2));
  for (int64_t r = 0; r < n_out; ++r)
    quant::quantize_row_ref(type, wf.data() + r * n_in, m.bytes.data() + row_bytes * static_cast<size_t>(r + 2), n_in);
  m.cpu_bytes = m.bytes;
  m.w.name = "w";
  m.w.dtype = type;
  m.w.ne = {n_in, n_out, 1, 1};
  m.w.n_dims = 2;
  m.w.data = m.bytes.data() + 2 * row_bytes;
  m.w_cpu = m.w;
  m.w_cpu.data = m.cpu_bytes.data() + 2 * row_bytes;
  m.dequantized.resize(static_cast<size_t>(n_in * n_out));
  for (int64_t r = 0; r < n_out; ++r) quant::dequantize_row(type, m.w.row(r), m.dequantized.data() + r * n_in, n_in);
  return m;
}

struct MatmulCase {
  DType type;
  double max_nmse_vs_cpu;  // the CPU path rounds activations to 8 bits (none for f32/f16/bf16)
};

class CudaMatmul : public CudaKernels, public ::testing::WithParamInterface<MatmulCase> {};

TEST_P(CudaMatmul, MatchesCpuAndDequantizedReference) {
  const MatmulCase c = GetParam();
  ASSERT_TRUE(backend_->on_device(Op::kMatmul, c.type));
  const int64_t n_in = 512, n_out = 70;  // 70: the last group of 4 rows is partial
  const TestMatrix m = make_matrix(c.type, n_in, n_out, 1);
  for (int64_t n_tokens : {1, 3, 9, 64}) {
    const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n_in), 2 + static_cast<uint32_t>(n_tokens));
    std::vector<float> got(static_cast<size_t>(n_tokens * n_out)), cpu(got.size()), exact(got.size());
    backend_->matmul(m.w, x.data(), n_tokens, got.data());
    cpu_.matmul(m.w_cpu, x.data(), n_tokens, cpu.data());
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < n_out; ++r) {
        double s = 0.0;
        for (int64_t i = 0; i < n_in; ++i)
          s += static_cast<double>(m.dequantized[static_cast<size_t>(r * n_in + i)]) * x[static_cast<size_t>(t * n_in + i)];
        exact[static_cast<size_t>(t * n_out + r)] = static_cast<float>(s);
      }
    const double vs_cpu = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
    const double vs_exact = nmse(got.data(), exact.data(), static_cast<int64_t>(got.size()));
    std::printf("[ nmse     ] matmul %-5s n_tokens=%-3lld vs cpu %.3e, vs dequantized f32 %.3e\n", dtype_name(c.type),
                static_cast<long long>(n_tokens), vs_cpu, vs_exact);
    // f16 products (cuBLAS path) round each operand by up to 2^-11: ~1e-7 NMSE; f32 weights stay f32.
    const bool half_products = n_tokens >= 16 && c.type != DType::F32;
    EXPECT_LT(vs_cpu, half_products ? std::max(c.max_nmse_vs_cpu, 1e-6) : c.max_nmse_vs_cpu)
        << dtype_name(c.type) << " n_tokens " << n_tokens;
    EXPECT_LT(vs_exact, half_products ? 1e-6 : 1e-10) << dtype_name(c.type) << " n_tokens " << n_tokens;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmul,
                         ::testing::Values(MatmulCase{DType::Q4_0, 1e-4}, MatmulCase{DType::Q8_0, 1e-4},
                                           MatmulCase{DType::Q4_K, 1e-4}, MatmulCase{DType::Q5_K, 1e-4},
                                           MatmulCase{DType::Q6_K, 1e-4}, MatmulCase{DType::F16, 1e-10},
                                           MatmulCase{DType::BF16, 1e-10}, MatmulCase{DType::F32, 1e-10}),
                         [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST_F(CudaKernels, PreparedWeightsGiveTheSameProducts) {
  const int64_t n_in = 256, n_out = 40, n_tokens = 2;
  const TestMatrix m = make_matrix(DType::Q4_K, n_in, n_out, 3);
  const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 4);
  std::vector<float> before(static_cast<size_t>(n_out * n_tokens)), after(before.size());
  backend_->matmul(m.w, x.data(), n_tokens, before.data());  // uploaded on first use
  const TestMatrix fresh = make_matrix(DType::Q4_K, n_in, n_out, 3);
  backend_->prepare_matmul_weights({fresh.w}, /*file_backed=*/false);  // uploaded up front
  backend_->matmul(fresh.w, x.data(), n_tokens, after.data());
  EXPECT_EQ(before, after);
}

TEST_F(CudaKernels, UncoveredWeightTypeRunsOnTheCpuDelegate) {
  EXPECT_FALSE(backend_->on_device(Op::kMatmul, DType::Q5_0));
  EXPECT_FALSE(backend_->on_device(Op::kGetRows, DType::F32));
  const int64_t n_in = 256, n_out = 8, n_tokens = 3;
  const TestMatrix m = make_matrix(DType::Q5_0, n_in, n_out, 5);
  const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 6);
  std::vector<float> got(static_cast<size_t>(n_out * n_tokens)), cpu(got.size());
  backend_->matmul(m.w, x.data(), n_tokens, got.data());
  cpu_.matmul(m.w_cpu, x.data(), n_tokens, cpu.data());
  EXPECT_EQ(got, cpu);
}

TEST_F(CudaKernels, RmsNorm) {
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

TEST_F(CudaKernels, SwigluAndAdd) {
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

class CudaRope : public CudaKernels, public ::testing::WithParamInterface<RopeCase> {};

TEST_P(CudaRope, MatchesCpu) {
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
  EXPECT_LT(e, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaRope,
                         ::testing::Values(RopeCase{"normal", RopeMode::kNormal, false, false},
                                           RopeCase{"neox", RopeMode::kNeox, false, false},
                                           RopeCase{"yarn", RopeMode::kNormal, true, false},
                                           RopeCase{"yarn_neox", RopeMode::kNeox, true, false},
                                           RopeCase{"freq_factors", RopeMode::kNeox, false, true}),
                         [](const auto& info) { return std::string(info.param.name); });

// Three sequences in one batch with 16-token blocks: sequence 0 decodes at position 40 after a
// 40-token prefill, sequence 1 prefills 23 tokens, sequence 2 (70 positions) spans more than one
// attention tile; their blocks interleave in the pool.
struct PagedBatch {
  std::vector<int32_t> seq_ids, positions;
};

PagedBatch fill_cache(Backend& writer, KvCache& kv, int64_t k_width, int64_t v_width, uint32_t seed) {
  PagedBatch all;
  for (int32_t pos = 0; pos < 70; ++pos) {
    for (int32_t seq : {0, 1, 2}) {
      if ((seq == 0 && pos > 40) || (seq == 1 && pos >= 23)) continue;
      all.seq_ids.push_back(seq);
      all.positions.push_back(pos);
    }
  }
  EXPECT_TRUE(kv.reserve(0, 41).is_ok());
  EXPECT_TRUE(kv.reserve(1, 23).is_ok());
  EXPECT_TRUE(kv.reserve(2, 70).is_ok());
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const std::vector<float> k = random_floats(static_cast<size_t>(n * k_width), seed);
  const std::vector<float> v = random_floats(static_cast<size_t>(n * std::max<int64_t>(v_width, 1)), seed + 1);
  for (int64_t layer = 0; layer < kv.shape().n_layer; ++layer)
    writer.store_kv(kv, layer, AttentionBatch{all.seq_ids.data(), all.positions.data(), n}, k.data(), v_width > 0 ? v.data() : nullptr);
  return all;
}

KvCacheShape mha_shape(int64_t n_head_kv, int64_t hd_k, int64_t hd_v) {
  KvCacheShape shape;
  shape.n_layer = 2;
  shape.k_width = n_head_kv * hd_k;
  shape.v_width = n_head_kv * hd_v;
  shape.n_ctx_max = 256;
  return shape;
}

TEST_F(CudaKernels, AttentionGqaOverPagedCache) {
  const int64_t n_head = 4, n_head_kv = 2, hd_k = 64, hd_v = 48;
  const KvCacheShape shape = mha_shape(n_head_kv, hd_k, hd_v);
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
  // A row stored after the mirror exists reaches it (store_kv writes host and device).
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

// A fresh backend (no mirror of any cache yet) meets a cache whose rows the CPU wrote: the
// mirror is seeded from them on first use.
TEST(CudaMirror, IsSeededFromRowsWrittenBeforeFirstUse) {
  auto backend = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(backend.status());
  CpuBackend cpu(2);
  const int64_t n_head = 8, n_head_kv = 1, hd = 128;  // 8 query heads share one KV head
  const KvCacheShape shape = mha_shape(n_head_kv, hd, hd);
  KvCache kv(shape, 16);
  const PagedBatch all = fill_cache(cpu, kv, shape.k_width, shape.v_width, 60);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q = random_floats(static_cast<size_t>(n * n_head * hd), 61);
  std::vector<float> got(static_cast<size_t>(n * n_head * hd)), want(got.size());
  (*backend)->attention(q.data(), kv, 1, batch, n_head, n_head_kv, hd, hd, 0.09f, got.data());
  cpu.attention(q.data(), kv, 1, batch, n_head, n_head_kv, hd, hd, 0.09f, want.data());
  EXPECT_LT(nmse(got.data(), want.data(), static_cast<int64_t>(got.size())), 1e-10);
}

TEST_F(CudaKernels, MlaAttentionOverLatentCache) {
  const int64_t n_head = 4, rank = 512, n_rot = 64;  // DeepSeek-V2/V3 widths
  KvCacheShape shape;
  shape.n_layer = 1;
  shape.k_width = rank + n_rot;
  shape.v_width = 0;
  shape.n_ctx_max = 256;
  KvCache kv(shape, 16);
  const PagedBatch all = fill_cache(*backend_, kv, shape.k_width, 0, 50);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q_abs = random_floats(static_cast<size_t>(n * n_head * rank), 51, 0.1f);
  const std::vector<float> q_pe = random_floats(static_cast<size_t>(n * n_head * n_rot), 52, 0.1f);
  std::vector<float> got(static_cast<size_t>(n * n_head * rank)), cpu(got.size());
  backend_->mla_attention(q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, got.data());
  cpu_.mla_attention(q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, cpu.data());
  const double e = nmse(got.data(), cpu.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] mla_attention %.3e\n", e);
  EXPECT_LT(e, 1e-10);
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
