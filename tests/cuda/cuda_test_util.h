// Helpers shared by the CUDA tests: the device under test, skipping when there is none (the
// comparisons themselves are in ../backend_op_checks.h).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "backend/cuda/cuda_backend.h"

#include "../backend_op_checks.h"  // nmse

namespace fathom::test {

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
