// Helpers shared by the CUDA tests: the device under test (skipping when there is none) and the
// normalized mean squared error every kernel is judged by.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "backend/cuda/cuda_backend.h"

namespace fathom::test {

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

// The backend on CUDA device 0, or the reason there is none.
inline Expected<std::unique_ptr<CudaBackend>> make_test_backend() {
  CudaOptions o;
  o.n_threads = 2;
  return CudaBackend::create(o);
}

// Skips the test when there is no CUDA driver or device (not a failure: the machine simply has
// none); any other start-up error fails it.
#define FATHOM_CUDA_OR_SKIP(status_expr)                                                      \
  do {                                                                                        \
    const ::fathom::Status& fathom_st_ = (status_expr);                                       \
    if (fathom_st_.code() == ::fathom::ErrorCode::kNotFound)                                  \
      GTEST_SKIP() << "no CUDA device: " << fathom_st_.message();                             \
    if (!fathom_st_.is_ok()) FAIL() << fathom_st_.to_string();                                \
  } while (0)

}  // namespace fathom::test
