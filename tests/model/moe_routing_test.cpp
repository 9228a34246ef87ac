// Expert routing against hand-computed examples: ties, groups, bias, normalization, scale.
#include <gtest/gtest.h>

#include <cmath>

#include "model/moe.h"

namespace fathom {
namespace {

TEST(MoeRouting, SoftmaxTopKWithTieToLowerId) {
  const float logits[8] = {0, 1, 2, 3, 3, 0, 0, 0};
  RoutingParams p;
  p.n_expert = 8;
  p.n_expert_used = 2;
  const Route r = route_token(logits, p);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{3, 4}));
  double z = 0;
  for (float l : logits) z += std::exp(l);
  EXPECT_NEAR(r.weights[0], std::exp(3.0) / z, 1e-6);  // unnormalized softmax probability (V2-Lite)
  EXPECT_NEAR(r.weights[1], std::exp(3.0) / z, 1e-6);
  p.normalize = true;
  p.scale = 2.5f;
  const Route n = route_token(logits, p);
  EXPECT_NEAR(n.weights[0], 1.25, 1e-6);
  EXPECT_NEAR(n.weights[1], 1.25, 1e-6);
}

TEST(MoeRouting, SigmoidBiasAndGroupLimit) {
  // sigmoid(logit) = probs below; bias shifts only the selection.
  const float probs[8] = {0.5f, 0.5f, 0.75f, 0.25f, 0.9f, 0.5f, 0.1f, 0.2f};
  float logits[8];
  for (int i = 0; i < 8; ++i) logits[i] = std::log(probs[i] / (1 - probs[i]));
  const float bias[8] = {0, 0, 0, 0, -0.5f, 0, 0.6f, 0.6f};
  // selection = [0.5 0.5 | 0.75 0.25 | 0.4 0.5 | 0.7 0.8]; groups of 2 score (sum of top 2):
  // g0 1.0, g1 1.0, g2 0.9, g3 1.5 -> keep g3 and g0 (tie with g1 goes to the lower id).
  // Eligible: experts 0, 1, 6, 7 -> top 2 by selection: 7 (0.8), 6 (0.7), although expert 2
  // (0.75) and expert 4 (probability 0.9) score higher outside the kept groups.
  RoutingParams p;
  p.n_expert = 8;
  p.n_expert_used = 2;
  p.n_groups = 4;
  p.n_groups_used = 2;
  p.sigmoid = true;
  p.bias = bias;
  p.normalize = true;
  p.scale = 2.5f;
  const Route r = route_token(logits, p);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{7, 6}));
  // Weights come from the unbiased probabilities: [0.2, 0.1] / 0.3 * 2.5.
  EXPECT_NEAR(r.weights[0], 2.5 * 0.2 / 0.3, 1e-5);
  EXPECT_NEAR(r.weights[1], 2.5 * 0.1 / 0.3, 1e-5);
  // Without the group limit expert 4 would be out only because of its bias: 0.4 < 0.5.
  p.n_groups = 1;
  const Route g = route_token(logits, p);
  ASSERT_EQ(g.experts, (std::vector<int32_t>{7, 2}));
}

TEST(MoeRouting, ExpertSliceAddressesOneExpert) {
  std::vector<float> data(2 * 3 * 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  TensorView t;
  t.dtype = DType::F32;
  t.ne = {4, 3, 2, 1};  // 2 experts of [3 rows, 4 cols]
  t.n_dims = 3;
  t.data = data.data();
  const TensorView e1 = expert_slice(t, 1);
  EXPECT_EQ(e1.ne[1], 3);
  EXPECT_EQ(static_cast<const float*>(e1.data)[0], 12.0f);
}

}  // namespace
}  // namespace fathom
