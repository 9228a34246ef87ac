// Weight repacking reports its progress (LoadOptions::on_repack_progress, what `fathom run/chat/
// serve` turn into a percentage on a terminal): bytes done rise to the total of the matrices the
// CPU backend prepares, once per matrix.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "model/model.h"
#include "model/weights.h"

namespace fathom {
namespace {

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

TEST(RepackProgress, RisesToTheBytesOfEveryMatrix) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << "no " << kStories;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  LoadOptions lo;
  lo.n_threads = 2;
  lo.on_repack_progress = [&calls](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  auto model = Model::load(kStories, lo);
  ASSERT_TRUE(model.has_value()) << model.status().to_string();
  if (!cpu::best_kernels().gemm_is_simd) {
    EXPECT_TRUE(calls.empty());  // the scalar kernels read the GGUF layout: nothing is repacked
    GTEST_SKIP() << "no SIMD matmul kernels on this CPU";
  }
  const std::vector<TensorView> matrices = matmul_weight_views((*model)->file(), (*model)->config().n_layer);
  uint64_t bytes = 0;
  for (const TensorView& w : matrices) bytes += w.n_bytes();
  ASSERT_EQ(calls.size(), matrices.size());
  uint64_t previous = 0;
  for (const auto& [done, total] : calls) {
    EXPECT_EQ(total, bytes);
    EXPECT_GT(done, previous);
    previous = done;
  }
  EXPECT_EQ(calls.back().first, bytes);
}

}  // namespace
}  // namespace fathom
