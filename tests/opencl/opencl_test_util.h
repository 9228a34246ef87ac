// Helpers shared by the OpenCL tests: the device under test, skipping when there is none (the
// comparisons themselves are in ../backend_op_checks.h).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "backend/opencl/opencl_backend.h"

#include "../backend_op_checks.h"  // nmse

namespace fathom::test {

inline std::string opencl_test_cache_dir() { return std::string(FATHOM_TEST_TMP) + "/opencl-cache"; }

// The backend on the default OpenCL device (PoCL in CI), or the reason there is none.
inline Expected<std::unique_ptr<OpenClBackend>> make_test_backend(const std::string& cache_dir = opencl_test_cache_dir(),
                                                                  const OpenClKernelVariants& variants = {}) {
  OpenClOptions o;
  o.n_threads = 2;
  o.cache_dir = cache_dir;
  o.variants = variants;
  return OpenClBackend::create(o);
}

// Skips the test when no OpenCL platform or device is present (not a failure: the machine
// simply has none); any other start-up error fails it.
#define FATHOM_OPENCL_OR_SKIP(backend_expected)                                                              \
  do {                                                                                                       \
    if (!(backend_expected)) {                                                                               \
      if ((backend_expected).status().code() == ErrorCode::kNotFound)                                        \
        GTEST_SKIP() << "no OpenCL device here (" << (backend_expected).status().message()                   \
                     << "); install pocl-opencl-icd to run the OpenCL tests on the CPU";                     \
      FAIL() << (backend_expected).status().to_string();                                                     \
    }                                                                                                        \
  } while (0)

}  // namespace fathom::test
