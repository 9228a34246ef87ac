// The op checks every accelerator backend (OpenCL, CUDA) must pass against the CPU backend, by
// normalized mean squared error; each backend's kernel test calls them with its own device and
// thresholds. Header-only: tests/<backend>/ binaries include it as "../backend_op_checks.h".
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "quant/quant.h"

namespace fathom::test {

// A fixture whose suite shares one accelerator backend, since starting a device (and building or
// loading its kernels) is the slow part. The suite's SetUpTestSuite calls keep(make_...()); each
// test's SetUp calls require_backend, which skips the test when there is no such device
// (kNotFound: not a failure, the machine simply has none) and fails it on any other start-up error.
template <typename B>
class SharedBackendTest : public ::testing::Test {
 protected:
  static void keep(Expected<std::unique_ptr<B>> b) {
    if (b) backend_ = std::move(*b).release();
    else status_ = new Status(b.status());
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
    delete status_;
    status_ = nullptr;
  }
  // what: "OpenCL", "CUDA"; hint: what to install, or empty.
  void require_backend(const char* what, const std::string& hint) {
    if (backend_) return;
    if (status_->code() == ErrorCode::kNotFound) GTEST_SKIP() << "no " << what << " device here (" << status_->message() << ")" << hint;
    FAIL() << status_->to_string();
  }
  static inline B* backend_ = nullptr;
  static inline Status* status_ = nullptr;
  CpuBackend cpu_{2};
};

// sum((got - want)^2) / sum(want^2): 0 for identical, ~1 for unrelated outputs.
inline double nmse(const float* got, const float* want, int64_t n) {
  double err = 0.0, ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    err += d * d;
    ref += static_cast<double>(want[i]) * want[i];
  }
  return ref > 0.0 ? err / ref : err;
}

// The residency protocol (backend.h) for a check: a device op's outputs are synced to the host
// before they are read, then the device forgets its activations (end_forward, which also lands
// its KV cache writes on the host), so the next check may put new values where old buffers were.
inline void read_back(Backend& device, std::initializer_list<std::pair<const float*, size_t>> outputs) {
  for (const auto& [p, n] : outputs) device.sync_to_host(p, static_cast<int64_t>(n));
  device.end_forward();
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A quantized [n_out, n_in] matrix starting two rows into its buffer, as an expert slice of a
// stacked tensor does, with a separate copy for the CPU backend (which may repack a matrix and
// release the source pages) and its dequantized rows.
struct TestMatrix {
  std::vector<uint8_t> bytes, cpu_bytes;
  std::vector<float> dequantized;  // [n_out, n_in]
  TensorView w, w_cpu;
};

inline TestMatrix make_matrix(DType type, int64_t n_in, int64_t n_out, uint32_t seed) {
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

// What one matmul of n_tokens gave: NMSE to the CPU backend and to the f64 dot of the
// dequantized weights (which the kernels compute exactly up to summation order and operand
// rounding; the CPU backend rounds activations to 8 bits, so its NMSE is larger).
struct MatmulError {
  double vs_cpu = 0.0;
  double vs_exact = 0.0;
};

inline MatmulError matmul_error(Backend& device, CpuBackend& cpu, const TestMatrix& m, int64_t n_tokens) {
  const int64_t n_in = m.w.ne[0], n_out = m.w.ne[1];
  const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n_in), 2 + static_cast<uint32_t>(n_tokens));
  std::vector<float> got(static_cast<size_t>(n_tokens * n_out)), want(got.size()), exact(got.size());
  device.matmul(m.w, x.data(), n_tokens, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu.matmul(m.w_cpu, x.data(), n_tokens, want.data());
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < n_out; ++r) {
      double s = 0.0;
      for (int64_t i = 0; i < n_in; ++i)
        s += static_cast<double>(m.dequantized[static_cast<size_t>(r * n_in + i)]) * x[static_cast<size_t>(t * n_in + i)];
      exact[static_cast<size_t>(t * n_out + r)] = static_cast<float>(s);
    }
  MatmulError e;
  e.vs_cpu = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  e.vs_exact = nmse(got.data(), exact.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] matmul %-5s n_tokens=%-3lld vs cpu %.3e, vs dequantized f32 %.3e\n", dtype_name(m.w.dtype),
              static_cast<long long>(n_tokens), e.vs_cpu, e.vs_exact);
  return e;
}

// A weight type the device has no kernel for gives the CPU backend's products exactly.
inline void check_uncovered_matmul_runs_on_cpu(Backend& device, CpuBackend& cpu, DType type) {
  const int64_t n_in = 256, n_out = 8, n_tokens = 3;
  const TestMatrix m = make_matrix(type, n_in, n_out, 5);
  const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 6);
  std::vector<float> got(static_cast<size_t>(n_out * n_tokens)), want(got.size());
  device.matmul(m.w, x.data(), n_tokens, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu.matmul(m.w_cpu, x.data(), n_tokens, want.data());
  EXPECT_EQ(got, want);
}

// The f64 products of m's dequantized rows with x: [n_tokens, n_in] -> [n_tokens, n_out].
inline std::vector<float> exact_products(const TestMatrix& m, const std::vector<double>& x, int64_t n_tokens) {
  const int64_t n_in = m.w.ne[0], n_out = m.w.ne[1];
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < n_out; ++r) {
      double s = 0.0;
      for (int64_t i = 0; i < n_in; ++i) s += m.dequantized[static_cast<size_t>(r * n_in + i)] * x[static_cast<size_t>(t * n_in + i)];
      y[static_cast<size_t>(t * n_out + r)] = static_cast<float>(s);
    }
  return y;
}

// One product of a batch or fused op: got against the unfused CPU ops' result and against the
// f64 reference.
inline MatmulError product_error(const char* op, const TestMatrix& m, int64_t n_tokens, const std::vector<float>& got,
                                 const std::vector<float>& want_cpu, const std::vector<float>& exact) {
  MatmulError e;
  e.vs_cpu = nmse(got.data(), want_cpu.data(), static_cast<int64_t>(got.size()));
  e.vs_exact = nmse(got.data(), exact.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] %-21s %-5s n_tokens=%-3lld vs cpu %.3e, vs dequantized f64 %.3e\n", op, dtype_name(m.w.dtype),
              static_cast<long long>(n_tokens), e.vs_cpu, e.vs_exact);
  return e;
}

// One [n_out, 512] matrix per type for a batch; n_out differs between neighbours (72, 40, 88,
// 56, 24, ...), so outputs put in each other's places show.
inline std::vector<TestMatrix> batch_matrices(const std::vector<DType>& types, uint32_t seed) {
  std::vector<TestMatrix> ms;
  for (size_t i = 0; i < types.size(); ++i)
    ms.push_back(make_matrix(types[i], 512, 24 + 16 * static_cast<int64_t>((i * 3 + 3) % 5), seed + static_cast<uint32_t>(i)));
  return ms;
}

// The checks below take their matrices from the caller, who keeps them alive as long as both
// backends: the CPU backend caches repacked weights by address, so a new matrix at a freed one's
// address would be served the old one's.

// rms_norm_matmul_batch (a layer's q/k/v: one product per matrix, all reading the normalized x)
// against the CPU backend's rms_norm and then its matmul of each; one error per product.
inline std::vector<MatmulError> rms_norm_matmul_errors(Backend& device, CpuBackend& cpu, const std::vector<TestMatrix>& ms,
                                                       int64_t n_tokens) {
  const int64_t n = 512;
  const float eps = 1e-5f;
  const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n), 60 + static_cast<uint32_t>(n_tokens), 3.0f);
  const std::vector<float> norm = random_floats(static_cast<size_t>(n), 61);
  std::vector<float> normed(x.size()), normed_cpu(x.size());
  std::vector<std::vector<float>> got(ms.size());
  std::vector<MatmulJob> jobs;
  for (size_t i = 0; i < ms.size(); ++i) {
    got[i].assign(static_cast<size_t>(n_tokens * ms[i].w.ne[1]), -1.0f);
    jobs.push_back({ms[i].w, normed.data(), n_tokens, got[i].data()});
  }
  device.rms_norm_matmul_batch(x.data(), norm.data(), n_tokens, n, eps, normed.data(), jobs);
  for (const std::vector<float>& g : got) device.sync_to_host(g.data(), static_cast<int64_t>(g.size()));
  device.end_forward();
  cpu.rms_norm(x.data(), norm.data(), n_tokens, n, eps, normed_cpu.data());
  std::vector<double> normed_exact(x.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[static_cast<size_t>(t * n + i)]) * x[static_cast<size_t>(t * n + i)];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i)
      normed_exact[static_cast<size_t>(t * n + i)] = x[static_cast<size_t>(t * n + i)] * inv * norm[static_cast<size_t>(i)];
  }
  std::vector<MatmulError> errors;
  for (size_t i = 0; i < ms.size(); ++i) {
    std::vector<float> want(got[i].size());
    cpu.matmul(ms[i].w_cpu, normed_cpu.data(), n_tokens, want.data());
    errors.push_back(product_error("rms_norm_matmul_batch", ms[i], n_tokens, got[i], want, exact_products(ms[i], normed_exact, n_tokens)));
  }
  return errors;
}

// swiglu_matmul (an FFN's down projection) against the CPU backend's swiglu, then its matmul.
inline MatmulError swiglu_matmul_error(Backend& device, CpuBackend& cpu, const TestMatrix& m, int64_t n_tokens) {
  const size_t n_values = static_cast<size_t>(n_tokens * m.w.ne[0]);
  const std::vector<float> gate = random_floats(n_values, 81 + static_cast<uint32_t>(n_tokens), 2.0f);
  const std::vector<float> up = random_floats(n_values, 82);
  std::vector<float> gate_device = gate, gate_cpu = gate;
  std::vector<float> got(static_cast<size_t>(n_tokens * m.w.ne[1]), -1.0f), want(got.size());
  device.swiglu_matmul(m.w, gate_device.data(), up.data(), n_tokens, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu.swiglu(gate_cpu.data(), up.data(), static_cast<int64_t>(n_values), gate_cpu.data());
  cpu.matmul(m.w_cpu, gate_cpu.data(), n_tokens, want.data());
  std::vector<double> act(n_values);
  for (size_t i = 0; i < n_values; ++i) act[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
  return product_error("swiglu_matmul", m, n_tokens, got, want, exact_products(m, act, n_tokens));
}

// matmul_batch of one product per matrix: each even product reads input a, each odd one input b
// with n_tokens + 2 rows (inputs shared and not), against the CPU backend's matmul of each.
inline std::vector<MatmulError> matmul_batch_errors(Backend& device, CpuBackend& cpu, const std::vector<TestMatrix>& ms,
                                                    int64_t n_tokens) {
  const std::vector<float> a = random_floats(static_cast<size_t>(n_tokens * 512), 91);
  const std::vector<float> b = random_floats(static_cast<size_t>((n_tokens + 2) * 512), 92);
  std::vector<std::vector<float>> got(ms.size());
  std::vector<MatmulJob> jobs;
  for (size_t i = 0; i < ms.size(); ++i) {
    const int64_t rows = i % 2 ? n_tokens + 2 : n_tokens;
    got[i].assign(static_cast<size_t>(rows * ms[i].w.ne[1]), -1.0f);
    jobs.push_back({ms[i].w, i % 2 ? b.data() : a.data(), rows, got[i].data()});
  }
  device.matmul_batch(jobs);
  for (const std::vector<float>& g : got) device.sync_to_host(g.data(), static_cast<int64_t>(g.size()));
  device.end_forward();
  std::vector<MatmulError> errors;
  for (size_t i = 0; i < ms.size(); ++i) {
    std::vector<float> want(got[i].size());
    cpu.matmul(ms[i].w_cpu, jobs[i].x, jobs[i].n_tokens, want.data());
    const std::vector<float>& x = i % 2 ? b : a;
    errors.push_back(product_error("matmul_batch", ms[i], jobs[i].n_tokens, got[i], want,
                                   exact_products(ms[i], std::vector<double>(x.begin(), x.end()), jobs[i].n_tokens)));
  }
  return errors;
}

// A case of the fused and batched product checks: products with `type` weights run on the device
// (on_device), else on its CPU delegate, which must then match the CPU backend exactly.
struct FusedCase {
  DType type;
  double max_nmse_vs_cpu;  // the CPU path rounds activations to 8 bits (none for f32/f16/bf16)
  bool on_device;
};

// One product's errors held to its case: on the device within max_nmse_vs_cpu of the CPU and
// 1e-10 of the exact f64 product, or 1e-6 of both where the device multiplies in f16 from
// `half_from` tokens on (F32 weights never); off it, exactly the CPU's.
inline void check_fused_product(const MatmulError& e, const FusedCase& c, int64_t n_tokens, int64_t half_from) {
  if (!c.on_device) {
    EXPECT_EQ(e.vs_cpu, 0.0) << dtype_name(c.type) << " n_tokens " << n_tokens;
    return;
  }
  const bool half = n_tokens >= half_from && c.type != DType::F32;
  EXPECT_LT(e.vs_cpu, half ? std::max(c.max_nmse_vs_cpu, 1e-6) : c.max_nmse_vs_cpu) << dtype_name(c.type) << " n_tokens " << n_tokens;
  EXPECT_LT(e.vs_exact, half ? 1e-6 : 1e-10) << dtype_name(c.type) << " n_tokens " << n_tokens;
}

// rms_norm_matmul_batch, swiglu_matmul and matmul_batch against the unfused CPU ops for 1, 3, 9
// and 17 tokens. The caller gives a fresh backend: backends find weights again by address.
inline void check_fused_ops(Backend& device, const FusedCase& c, int64_t half_from) {
  CpuBackend cpu(2);
  const std::vector<TestMatrix> qkv = batch_matrices({c.type, c.type, c.type}, 70);
  const TestMatrix down = make_matrix(c.type, 512, 40, 80);
  for (int64_t n_tokens : {1, 3, 9, 17}) {
    for (const MatmulError& e : rms_norm_matmul_errors(device, cpu, qkv, n_tokens)) check_fused_product(e, c, n_tokens, half_from);
    check_fused_product(swiglu_matmul_error(device, cpu, down, n_tokens), c, n_tokens, half_from);
    for (const MatmulError& e : matmul_batch_errors(device, cpu, qkv, n_tokens)) check_fused_product(e, c, n_tokens, half_from);
  }
}

// One batch mixing types the device runs (on_device) with types its CPU delegate runs: the two
// share the work, and each product still lands in its own output.
inline void check_mixed_batch(Backend& device, const std::vector<DType>& types, const std::function<bool(DType)>& on_device,
                              double max_nmse_vs_cpu, int64_t half_from) {
  CpuBackend cpu(2);
  const std::vector<TestMatrix> ms = batch_matrices(types, 100);
  for (int64_t n_tokens : {1, 9}) {
    const std::vector<MatmulError> fused = rms_norm_matmul_errors(device, cpu, ms, n_tokens);
    const std::vector<MatmulError> batch = matmul_batch_errors(device, cpu, ms, n_tokens);
    for (size_t i = 0; i < types.size(); ++i) {
      const FusedCase c{types[i], max_nmse_vs_cpu, on_device(types[i])};
      check_fused_product(fused[i], c, n_tokens, half_from);
      check_fused_product(batch[i], c, n_tokens, half_from);
    }
  }
}

inline void check_rms_norm(Backend& device, CpuBackend& cpu, double max_nmse) {
  const int64_t n_rows = 7, n = 320;
  const std::vector<float> x = random_floats(static_cast<size_t>(n_rows * n), 10, 3.0f);
  const std::vector<float> weight = random_floats(static_cast<size_t>(n), 11);
  std::vector<float> got(x.size()), want(x.size());
  device.rms_norm(x.data(), weight.data(), n_rows, n, 1e-6f, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu.rms_norm(x.data(), weight.data(), n_rows, n, 1e-6f, want.data());
  const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] rms_norm %.3e\n", e);
  EXPECT_LT(e, max_nmse);
  // In place, as the architectures call it.
  std::vector<float> inplace = x;
  device.rms_norm(inplace.data(), weight.data(), n_rows, n, 1e-6f, inplace.data());
  read_back(device, {{inplace.data(), inplace.size()}});
  EXPECT_EQ(inplace, got);
}

inline void check_swiglu_and_add(Backend& device, CpuBackend& cpu, double max_nmse_swiglu) {
  const int64_t n = 1000;
  const std::vector<float> gate = random_floats(static_cast<size_t>(n), 20, 2.0f), up = random_floats(static_cast<size_t>(n), 21);
  std::vector<float> got(static_cast<size_t>(n)), want(static_cast<size_t>(n));
  device.swiglu(gate.data(), up.data(), n, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu.swiglu(gate.data(), up.data(), n, want.data());
  const double e_swiglu = nmse(got.data(), want.data(), n);
  std::vector<float> x = gate, x_cpu = gate;
  device.add(x.data(), up.data(), n);
  read_back(device, {{x.data(), x.size()}});
  cpu.add(x_cpu.data(), up.data(), n);
  const double e_add = nmse(x.data(), x_cpu.data(), n);
  std::printf("[ nmse     ] swiglu %.3e, add %.3e\n", e_swiglu, e_add);
  EXPECT_LT(e_swiglu, max_nmse_swiglu);
  EXPECT_EQ(e_add, 0.0);
}

// add_bias and copy_strided (gathering a column block of every row, and regrouping
// [token][head] rows head-major) against the CPU backend: exact.
inline void check_bias_and_strided_copy(Backend& device, CpuBackend& cpu) {
  const int64_t n_rows = 5, n = 96, n_head = 4, head = n / n_head;
  const std::vector<float> bias = random_floats(static_cast<size_t>(n), 23);
  std::vector<float> x = random_floats(static_cast<size_t>(n_rows * n), 24), x_cpu = x;
  device.add_bias(x.data(), bias.data(), n_rows, n);
  cpu.add_bias(x_cpu.data(), bias.data(), n_rows, n);
  read_back(device, {{x.data(), x.size()}});
  EXPECT_EQ(x, x_cpu);
  StridedCopy columns;  // dst[t, :40] = x[t, 50:90]
  columns.n_outer = n_rows;
  columns.width = 40;
  columns.src_outer = n;
  columns.dst_outer = 40;
  StridedCopy heads;  // dst[h][t][:] = x[t, h * head:], and the floats between runs kept
  heads.n_outer = n_head;
  heads.n_inner = n_rows;
  heads.width = head - 2;
  heads.src_outer = head;
  heads.src_inner = n;
  heads.dst_outer = n_rows * head;
  heads.dst_inner = head;
  for (const StridedCopy* c : {&columns, &heads}) {
    const int64_t offset = c == &columns ? 50 : 0;
    std::vector<float> got(static_cast<size_t>(c->dst_span()), -7.0f), want = got;
    device.copy_strided(x.data() + offset, got.data(), *c);
    cpu.copy_strided(x.data() + offset, want.data(), *c);
    read_back(device, {{got.data(), got.size()}});
    EXPECT_EQ(got, want);
  }
}

// top_candidates against the CPU backend's (the host reference): ids and values exact, ties (the
// logits are rounded to quarters, so many are equal) ordered by lower id, k from 1 to a whole row.
inline void check_top_candidates(Backend& device, CpuBackend& cpu) {
  const int64_t n_rows = 5, n_vocab = 1000;
  std::vector<float> logits = random_floats(static_cast<size_t>(n_rows * n_vocab), 29, 3.0f);
  for (float& v : logits) v = std::round(v * 4.0f) / 4.0f;
  for (int64_t k : {int64_t{1}, int64_t{40}, int64_t{64}, n_vocab}) {
    std::vector<int32_t> got_ids(static_cast<size_t>(n_rows * k)), want_ids(got_ids.size());
    std::vector<float> got(got_ids.size()), want(got_ids.size());
    device.top_candidates(logits.data(), n_rows, n_vocab, k, got_ids.data(), got.data());
    device.end_forward();
    cpu.top_candidates(logits.data(), n_rows, n_vocab, k, want_ids.data(), want.data());
    EXPECT_EQ(got_ids, want_ids) << "k=" << k;
    EXPECT_EQ(got, want) << "k=" << k;
  }
}

// moe_route, gather_rows and scatter_add_rows against route_token and plain loops: exact, since
// the sums run in pair order everywhere. The inputs come from a device op (an add of zero), so a
// device's version finds them in its own memory, as in a MoE layer.
inline void check_moe_ops(Backend& device) {
  const int64_t n_tokens = 6, n_expert = 8, k = 3, width = 40;
  const auto on_device = [&](std::vector<float> v) {  // v, made by a device op
    const std::vector<float> zero(v.size(), 0.0f);
    device.add(v.data(), zero.data(), static_cast<int64_t>(v.size()));
    return v;
  };
  RoutingParams p;
  p.n_expert = n_expert;
  p.n_expert_used = k;
  p.normalize = true;
  p.scale = 1.5f;
  std::vector<float> logits = random_floats(static_cast<size_t>(n_tokens * n_expert), 31, 2.0f);
  const std::vector<float> host_logits = logits;
  logits = on_device(logits);
  std::vector<int32_t> experts(static_cast<size_t>(n_tokens * k));
  std::vector<float> weights(experts.size());
  device.moe_route(logits.data(), n_tokens, p, experts.data(), weights.data());
  for (int64_t t = 0; t < n_tokens; ++t) {
    const Route r = route_token(host_logits.data() + t * n_expert, p);
    EXPECT_EQ(std::vector<int32_t>(experts.begin() + t * k, experts.begin() + (t + 1) * k), r.experts) << "token " << t;
    EXPECT_EQ(std::vector<float>(weights.begin() + t * k, weights.begin() + (t + 1) * k), r.weights) << "token " << t;
  }
  const std::vector<int32_t> rows = {3, 0, 5, 3, 1, 0, 2};  // a token per pair, grouped by expert
  const int64_t n_pairs = static_cast<int64_t>(rows.size());
  const std::vector<float> src = random_floats(static_cast<size_t>(n_tokens * width), 32);
  std::vector<float> src_on_device = on_device(src), gathered(static_cast<size_t>(n_pairs * width), -7.0f);
  device.gather_rows(src_on_device.data(), n_tokens, width, rows.data(), n_pairs, gathered.data());
  read_back(device, {{gathered.data(), gathered.size()}});
  for (int64_t i = 0; i < n_pairs; ++i)
    for (int64_t j = 0; j < width; ++j) EXPECT_EQ(gathered[i * width + j], src[rows[i] * width + j]) << i << "," << j;
  const std::vector<float> pair_weights = random_floats(rows.size(), 33);
  const std::vector<float> pair_out = random_floats(static_cast<size_t>(n_pairs * width), 34);
  std::vector<float> want = random_floats(static_cast<size_t>(n_tokens * width), 35);
  std::vector<float> acc = on_device(want), pair_out_on_device = on_device(pair_out);
  device.scatter_add_rows(pair_out_on_device.data(), rows.data(), pair_weights.data(), n_pairs, width, acc.data(), n_tokens);
  read_back(device, {{acc.data(), acc.size()}});
  for (int64_t i = 0; i < n_pairs; ++i)
    for (int64_t j = 0; j < width; ++j) want[rows[i] * width + j] += pair_weights[i] * pair_out[i * width + j];
  EXPECT_EQ(acc, want);
}

// Ops chained as a layer chains them, with no sync between: each reads what the one before
// left in the device's memory. Only the last output is synced, then compared with the CPU's
// chain (F32 weights: both products are f32 up to summation order).
inline void check_op_chain(Backend& device, CpuBackend& cpu, double max_nmse) {
  const int64_t n_tokens = 3, n_in = 256, n_out = 96, half = n_out / 2;
  const TestMatrix m = make_matrix(DType::F32, n_in, n_out, 25);
  const std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * n_in), 26, 2.0f);
  const std::vector<float> norm = random_floats(static_cast<size_t>(n_in), 27);
  const std::vector<float> bias = random_floats(static_cast<size_t>(n_out), 28);
  StridedCopy left;  // [n_tokens, half] from the first half of each row
  left.n_outer = n_tokens;
  left.width = half;
  left.src_outer = n_out;
  left.dst_outer = half;
  auto chain = [&](Backend& be, std::vector<float>& out) {
    std::vector<float> xn(x.size()), y(static_cast<size_t>(n_tokens * n_out)), g(static_cast<size_t>(n_tokens * half)), u(g.size());
    be.rms_norm(x.data(), norm.data(), n_tokens, n_in, 1e-5f, xn.data());
    be.matmul(&be == &device ? m.w : m.w_cpu, xn.data(), n_tokens, y.data());
    be.add_bias(y.data(), bias.data(), n_tokens, n_out);
    be.copy_strided(y.data(), g.data(), left);
    be.copy_strided(y.data() + half, u.data(), left);
    be.swiglu(g.data(), u.data(), n_tokens * half, out.data());
    be.add(out.data(), g.data(), n_tokens * half);
    be.rms_norm(out.data(), norm.data(), n_tokens, half, 1e-5f, out.data());
    be.sync_to_host(out.data(), static_cast<int64_t>(out.size()));
    be.end_forward();
  };
  std::vector<float> got(static_cast<size_t>(n_tokens * half)), want(got.size());
  chain(device, got);
  chain(cpu, want);
  const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] op chain without syncs %.3e\n", e);
  EXPECT_LT(e, max_nmse);
}

struct RopeCase {
  const char* name;
  RopeMode mode;
  bool yarn;
  bool freq_factors;
};

inline const RopeCase kRopeCases[] = {{"normal", RopeMode::kNormal, false, false},
                                      {"neox", RopeMode::kNeox, false, false},
                                      {"yarn", RopeMode::kNormal, true, false},
                                      {"yarn_neox", RopeMode::kNeox, true, false},
                                      {"freq_factors", RopeMode::kNeox, false, true}};

inline void check_rope(Backend& device, CpuBackend& cpu, const RopeCase& c, double max_nmse) {
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
  std::vector<float> got = x, want = x;
  device.rope(got.data(), n_tokens, n_heads, head_dim, positions.data(), p);
  read_back(device, {{got.data(), got.size()}});
  cpu.rope(want.data(), n_tokens, n_heads, head_dim, positions.data(), p);
  const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] rope %s %.3e\n", c.name, e);
  EXPECT_LT(e, max_nmse);
}

// Three sequences in one batch with 16-token blocks: sequence 0 decodes at position 40 after a
// 40-token prefill, sequence 1 prefills 23 tokens, sequence 2 (70 positions) spans more than one
// attention tile; their blocks interleave in the pool.
struct PagedBatch {
  std::vector<int32_t> seq_ids, positions;
};

inline PagedBatch fill_cache(Backend& writer, KvCache& kv, int64_t k_width, int64_t v_width, uint32_t seed) {
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
  writer.end_forward();  // the rows are on the host too from here
  return all;
}

inline KvCacheShape mha_shape(int64_t n_head_kv, int64_t hd_k, int64_t hd_v, KvCacheTypes types = {DType::F32, DType::F32}) {
  KvCacheShape shape;
  shape.n_layer = 2;
  shape.k_width = n_head_kv * hd_k;
  shape.v_width = n_head_kv * hd_v;
  shape.n_ctx_max = 256;
  return with_types(shape, types);
}

inline std::string kv_types_name(const KvCacheTypes& types) {
  return std::string("K ") + dtype_name(types.k) + ", V " + dtype_name(types.v);
}

// KV caches stored in the types the device attention kernels read, K and V separately, with
// each one's bound on the NMSE to an f32 cache of the same rows (the CPU tests' bounds,
// tests/kernels/attention_test.cpp). The device must be as close to the CPU over the same
// stored rows as on f32 caches.
struct KvTypesCase {
  KvCacheTypes types;
  double max_nmse_vs_f32;
};

inline std::vector<KvTypesCase> kv_types_cases() {
  return {{{DType::F16, DType::F16}, 2e-7},
          {{DType::Q8_0, DType::Q8_0}, 1.5e-4},
          {{DType::F16, DType::Q8_0}, 1.5e-4},
          {{DType::Q8_0, DType::F32}, 5e-5}};
}

inline std::string kv_types_case_name(const ::testing::TestParamInfo<KvTypesCase>& info) {
  return std::string(dtype_name(info.param.types.k)) + "_" + dtype_name(info.param.types.v);
}

// The CPU side of the device attention checks: the CPU's f32 vector kernels on its own pool. The
// CPU backend itself takes the bf16 AMX tile path for sequences of 64+ tokens when it has AMX
// (cpu/attention.h), which is within a bound of these kernels, not equal to them.
inline void cpu_f32_attention(CpuBackend& cpu, const float* q, KvCache& kv, int64_t layer, const AttentionBatch& batch,
                              int64_t n_head, int64_t n_head_kv, int64_t hd_k, int64_t hd_v, float scale, float* out) {
  cpu::attention(cpu.pool(), cpu::vector_isa(cpu::best_isa()), q, kv, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, out);
}
inline void cpu_f32_mla_attention(CpuBackend& cpu, const float* q_abs, const float* q_pe, KvCache& kv, int64_t layer,
                                  const AttentionBatch& batch, int64_t n_head, int64_t rank, int64_t n_rot, float scale,
                                  float* out) {
  cpu::mla_attention(cpu.pool(), cpu::vector_isa(cpu::best_isa()), q_abs, q_pe, kv, layer, batch, n_head, rank, n_rot, scale, out);
}

// For a cache stored in other types than f32: the NMSE of `got` to the CPU's attention over an
// f32 cache of the same rows (what the stored type's rounding costs), which must be above 0
// (the rows really were converted) and below max_nmse_vs_f32.
inline void check_vs_f32_cache(const std::vector<float>& got, const std::vector<float>& want_f32, const KvCacheTypes& types,
                               double max_nmse_vs_f32) {
  const double e = nmse(got.data(), want_f32.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] vs the f32 cache (%s) %.3e\n", kv_types_name(types).c_str(), e);
  EXPECT_GT(e, 0.0) << kv_types_name(types) << ": the cache was not converted";
  EXPECT_LT(e, max_nmse_vs_f32) << kv_types_name(types);
}

// GQA attention over the paged cache the device itself filled, on both layers; then a row
// stored afterwards must reach the device's view of the cache (store_kv keeps it in sync). The
// cache is stored in `types` and the CPU attends the same stored rows; max_nmse_vs_f32 bounds
// the distance to an f32 cache (types other than f32 only).
inline void check_attention_gqa(Backend& device, CpuBackend& cpu, double max_nmse, KvCacheTypes types = {DType::F32, DType::F32},
                                double max_nmse_vs_f32 = 0.0) {
  const int64_t n_head = 4, n_head_kv = 2, hd_k = 64, hd_v = 48;
  const KvCacheShape shape = mha_shape(n_head_kv, hd_k, hd_v, types);
  const bool typed = types.k != DType::F32 || types.v != DType::F32;
  KvCache kv(shape, 16), kv_f32(mha_shape(n_head_kv, hd_k, hd_v), 16);
  const PagedBatch all = fill_cache(device, kv, shape.k_width, shape.v_width, 40);
  if (typed) fill_cache(cpu, kv_f32, shape.k_width, shape.v_width, 40);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q = random_floats(static_cast<size_t>(n * n_head * hd_k), 42);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd_k));
  for (int64_t layer = 0; layer < 2; ++layer) {
    std::vector<float> got(static_cast<size_t>(n * n_head * hd_v)), want(got.size());
    device.attention(q.data(), kv, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, got.data());
    read_back(device, {{got.data(), got.size()}});
    cpu_f32_attention(cpu, q.data(), kv, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, want.data());
    const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
    std::printf("[ nmse     ] attention layer %lld (%s) %.3e\n", static_cast<long long>(layer), kv_types_name(types).c_str(), e);
    EXPECT_LT(e, max_nmse) << kv_types_name(types);
    if (typed) {
      std::vector<float> want_f32(got.size());
      cpu_f32_attention(cpu, q.data(), kv_f32, layer, batch, n_head, n_head_kv, hd_k, hd_v, scale, want_f32.data());
      check_vs_f32_cache(got, want_f32, types, max_nmse_vs_f32);
    }
  }
  ASSERT_TRUE(kv.reserve(1, 24).is_ok());
  const int32_t seq = 1, pos = 23;
  const std::vector<float> k_new = random_floats(static_cast<size_t>(shape.k_width), 43, 4.0f);
  const std::vector<float> v_new = random_floats(static_cast<size_t>(shape.v_width), 44, 4.0f);
  const AttentionBatch one{&seq, &pos, 1};
  device.store_kv(kv, 0, one, k_new.data(), v_new.data());
  std::vector<float> got(static_cast<size_t>(n_head * hd_v)), want(got.size());
  device.attention(q.data(), kv, 0, one, n_head, n_head_kv, hd_k, hd_v, scale, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu_f32_attention(cpu, q.data(), kv, 0, one, n_head, n_head_kv, hd_k, hd_v, scale, want.data());
  EXPECT_LT(nmse(got.data(), want.data(), static_cast<int64_t>(got.size())), max_nmse) << kv_types_name(types);
}

// MLA attention in latent space over a [latent | k_pe] cache stored as `type` (the latent has
// no V rows); max_nmse_vs_f32 as in check_attention_gqa.
inline void check_mla_attention(Backend& device, CpuBackend& cpu, int64_t rank, int64_t n_rot, double max_nmse,
                                DType type = DType::F32, double max_nmse_vs_f32 = 0.0) {
  const int64_t n_head = 4;
  KvCacheShape shape;
  shape.n_layer = 1;
  shape.k_width = rank + n_rot;
  shape.v_width = 0;
  shape.n_ctx_max = 256;
  KvCache kv(with_types(shape, {type, type}), 16), kv_f32(shape, 16);
  const PagedBatch all = fill_cache(device, kv, shape.k_width, 0, 50);
  if (type != DType::F32) fill_cache(cpu, kv_f32, shape.k_width, 0, 50);
  const int64_t n = static_cast<int64_t>(all.seq_ids.size());
  const AttentionBatch batch{all.seq_ids.data(), all.positions.data(), n};
  const std::vector<float> q_abs = random_floats(static_cast<size_t>(n * n_head * rank), 51, 0.1f);
  const std::vector<float> q_pe = random_floats(static_cast<size_t>(n * n_head * n_rot), 52, 0.1f);
  std::vector<float> got(static_cast<size_t>(n * n_head * rank)), want(got.size());
  device.mla_attention(q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, got.data());
  read_back(device, {{got.data(), got.size()}});
  cpu_f32_mla_attention(cpu, q_abs.data(), q_pe.data(), kv, 0, batch, n_head, rank, n_rot, 0.1f, want.data());
  const double e = nmse(got.data(), want.data(), static_cast<int64_t>(got.size()));
  std::printf("[ nmse     ] mla_attention rank %lld (%s) %.3e\n", static_cast<long long>(rank), dtype_name(type), e);
  EXPECT_LT(e, max_nmse) << dtype_name(type);
  if (type != DType::F32) {
    std::vector<float> want_f32(got.size());
    cpu_f32_mla_attention(cpu, q_abs.data(), q_pe.data(), kv_f32, 0, batch, n_head, rank, n_rot, 0.1f, want_f32.data());
    check_vs_f32_cache(got, want_f32, {type, type}, max_nmse_vs_f32);
  }
}

// A device backend's attention over a KV cache stored as c.types: it reads the stored rows in
// its own kernels (no op on the CPU delegate), GQA and, for equal K/V types, MLA at two widths.
// DeviceBackend: a backend with fallback_ops() (cuda, opencl).
template <class DeviceBackend>
void check_kv_types_on_device(DeviceBackend& device, CpuBackend& cpu, const KvTypesCase& c) {
  ASSERT_TRUE(device.on_device(Op::kAttention, c.types.k));
  ASSERT_TRUE(device.on_device(Op::kAttention, c.types.v));
  const uint64_t fallbacks = device.fallback_ops();
  check_attention_gqa(device, cpu, 1e-10, c.types, c.max_nmse_vs_f32);
  if (c.types.k == c.types.v) {
    check_mla_attention(device, cpu, 128, 32, 1e-10, c.types.k, c.max_nmse_vs_f32);
    check_mla_attention(device, cpu, 512, 64, 1e-10, c.types.k, c.max_nmse_vs_f32);
  }
  EXPECT_EQ(device.fallback_ops(), fallbacks) << "attention ran on the CPU delegate";
}

// KV types without a device kernel (bf16, q4_0) attend on the CPU delegate and give the CPU's
// own result.
template <class DeviceBackend>
void check_uncovered_kv_type_on_cpu(DeviceBackend& device, CpuBackend& cpu) {
  EXPECT_FALSE(device.on_device(Op::kAttention, DType::BF16));
  EXPECT_FALSE(device.on_device(Op::kAttention, DType::Q4_0));
  const uint64_t fallbacks = device.fallback_ops();
  check_attention_gqa(device, cpu, 1e-300, {DType::BF16, DType::F16}, 1.5e-5);  // the CPU's own result
  EXPECT_GT(device.fallback_ops(), fallbacks);
}

}  // namespace fathom::test
