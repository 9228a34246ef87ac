// Importance-weighted error of fathom's IQ2 quantizers against ggml's own (ggml_quantize_chunk in
// the peer's libggml-base.so) on the same rows: N(0, 1) values and a per-column importance with a
// few dominant columns, as real imatrices have (the rows of tests/kernels/iq2_quantize_test.cpp).
// Both outputs are decoded by fathom's reference decoder.
//
// Built and run by scripts/peer-iq2-rmse.sh; prints one line per type:
//   TYPE  fathom RMSE  ggml RMSE  ratio  (relative, weighted by importance)  and the times.
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "quant/quant.h"

using namespace fathom;

using QuantizeChunk = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                 int64_t n_per_row, const float* imatrix);

namespace {

double relative_rmse(const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& w,
                     int64_t n_per_row) {
  double err = 0, sig = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double wi = w[i % static_cast<size_t>(n_per_row)];
    err += wi * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    sig += wi * double(x[i]) * x[i];
  }
  return std::sqrt(err / sig);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PATH/libggml-base.so\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "peer-iq2-rmse: %s\n", dlerror());
    return 1;
  }
  auto quantize_chunk = reinterpret_cast<QuantizeChunk>(dlsym(lib, "ggml_quantize_chunk"));
  if (!quantize_chunk) {
    std::fprintf(stderr, "peer-iq2-rmse: no ggml_quantize_chunk in %s\n", argv[1]);
    return 1;
  }
  constexpr int64_t kRows = 64, kPerRow = 4096;
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(kRows * kPerRow)), importance(static_cast<size_t>(kPerRow));
  for (float& v : x) v = normal(rng);
  for (float& v : importance) v = std::pow(uniform(rng), 4.f) * 10.f;
  std::printf("%-8s %10s %10s %7s %10s %10s\n", "type", "fathom", "ggml", "ratio", "fathom ms", "ggml ms");
  for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S}) {
    const size_t row_bytes = row_size(t, kPerRow);
    std::vector<uint8_t> ours(row_bytes * kRows), theirs(row_bytes * kRows);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < kRows; ++r)
      quant::quantize_row_ref(t, x.data() + r * kPerRow, ours.data() + r * row_bytes, kPerRow, importance.data());
    auto t1 = std::chrono::steady_clock::now();
    quantize_chunk(static_cast<int>(t), x.data(), theirs.data(), 0, kRows, kPerRow, importance.data());
    auto t2 = std::chrono::steady_clock::now();
    std::vector<float> y_ours(x.size()), y_theirs(x.size());
    for (int64_t r = 0; r < kRows; ++r) {
      quant::dequantize_row(t, ours.data() + r * row_bytes, y_ours.data() + r * kPerRow, kPerRow);
      quant::dequantize_row(t, theirs.data() + r * row_bytes, y_theirs.data() + r * kPerRow, kPerRow);
    }
    const double a = relative_rmse(x, y_ours, importance, kPerRow), b = relative_rmse(x, y_theirs, importance, kPerRow);
    std::printf("%-8s %10.5f %10.5f %7.4f %10.1f %10.1f\n", dtype_name(t), a, b, a / b,
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  return 0;
}
