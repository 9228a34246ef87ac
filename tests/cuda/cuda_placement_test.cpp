// Hybrid CPU + CUDA placement end to end (--gpu-layers, --cpu-moe, --override-tensor): the
// logits of a model split between the two agree with the model all on the device and all on the
// CPU, and both really ran ops (../backend_model_checks.h). Skipped without a CUDA device.
#include <gtest/gtest.h>

#include "../backend_model_checks.h"
#include "cuda_test_util.h"

namespace fathom {
namespace {

class CudaPlacement : public ::testing::TestWithParam<test::PlacementCase> {};

TEST_P(CudaPlacement, HybridLogitsMatchBothSides) {
  auto probe = test::make_test_backend();
  FATHOM_CUDA_OR_SKIP(probe.status());
  probe->reset();
  LoadOptions dev;
  dev.n_threads = 2;
  dev.device = "cuda";
  test::check_placement_case(GetParam(), "cuda-placed", dev);
}

INSTANTIATE_TEST_SUITE_P(Hybrid, CudaPlacement, ::testing::ValuesIn(test::placement_cases()), test::placement_case_name);

}  // namespace
}  // namespace fathom
