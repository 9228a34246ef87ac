// Hybrid CPU + OpenCL placement end to end (--gpu-layers, --cpu-moe, --override-tensor): the
// logits of a model split between the two agree with the model all on the device and all on the
// CPU, and both really ran ops (../backend_model_checks.h). On PoCL in CI; skipped without an
// OpenCL device.
#include <gtest/gtest.h>

#include "../backend_model_checks.h"
#include "opencl_test_util.h"

namespace fathom {
namespace {

class OpenClPlacement : public ::testing::TestWithParam<test::PlacementCase> {};

TEST_P(OpenClPlacement, HybridLogitsMatchBothSides) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  LoadOptions dev;
  dev.n_threads = 2;
  dev.device = "opencl";
  dev.opencl_cache_dir = test::opencl_test_cache_dir();
  test::check_placement_case(GetParam(), "opencl-placed", dev);
}

INSTANTIATE_TEST_SUITE_P(Hybrid, OpenClPlacement, ::testing::ValuesIn(test::placement_cases()), test::placement_case_name);

}  // namespace
}  // namespace fathom
