// The engine's forward pass against the naive FP32 reference (model/reference.h) on synth
// models of both dense architectures and every weight type, and the batching guarantees of
// DESIGN.md: several sequences in one batch, chunked prefill and decode give the same logits
// as one sequence alone.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "gguf/gguf.h"
#include "iquant_rewrite.h"
#include "logits_compare.h"
#include "model/model.h"
#include "model/reference.h"
#include "model/synth.h"
#include "../nextn_gguf.h"

namespace fathom {
namespace {

std::string tmp_path(const std::string& name) { return std::string(FATHOM_TEST_TMP) + "/" + name; }

std::string synth(const std::string& arch, DType type, bool tied = false, const std::string& preset = "tiny") {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dtype = type;
  o.tied_output = tied;
  o.seed = 7;
  const std::string path =
      tmp_path("fwd-" + arch + "-" + preset + "-" + dtype_name(type) + (tied ? "-tied" : "") + ".gguf");
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

std::vector<int32_t> test_tokens(int64_t n, int64_t n_vocab, int salt) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((i * 131 + salt * 17 + 3) % n_vocab));
  return t;
}

// Runs tokens of one sequence through the engine path in chunks of `chunk`, logits for all.
std::vector<float> engine_logits(Model& m, const std::vector<int32_t>& tokens, int64_t chunk) {
  KvCacheShape shape = m.kv_shape(256);
  KvCache kv(shape, 64);
  std::vector<float> all, logits;
  for (size_t start = 0; start < tokens.size(); start += static_cast<size_t>(chunk)) {
    Batch b;
    for (size_t i = start; i < std::min(tokens.size(), start + static_cast<size_t>(chunk)); ++i)
      b.add(tokens[i], static_cast<int32_t>(i), 3, true);
    EXPECT_TRUE(m.forward(b, kv, logits).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

struct Case {
  const char* arch;
  DType type;
  double tolerance;            // relative to the largest reference logit
  const char* preset = "tiny";  // "small" has 256-value rows, for the types whose blocks need them
};

class ForwardVsReference : public ::testing::TestWithParam<Case> {};

// The engine (Model::load, prompt in chunks of 16, then decode steps) against the naive
// reference on the file at `path`: every logit within `tolerance` of the largest reference logit,
// and the same argmax wherever the reference is not near a tie.
void expect_engine_matches_reference(const std::string& path, double tolerance) {
  auto model = Model::load(path, LoadOptions{2});
  ASSERT_TRUE(model) << model.status().to_string();
  const ModelConfig& cfg = (*model)->config();
  const std::vector<int32_t> tokens = test_tokens(40, cfg.n_vocab, 1);
  auto ref = reference_forward((*model)->file(), cfg, tokens);
  ASSERT_TRUE(ref) << ref.status().to_string();
  // Prompt in chunks of 16 (several batches), then the rest one token at a time.
  const std::vector<float> got = engine_logits(**model, tokens, 16);
  ASSERT_EQ(got.size(), ref->size());
  const double diff = max_rel_diff(got.data(), ref->data(), static_cast<int64_t>(got.size()));
  std::printf("[ diff     ] %s: max relative difference %.3g\n", path.c_str(), diff);
  EXPECT_LT(diff, tolerance);
  const int64_t n_vocab = cfg.n_vocab;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const float* g = got.data() + t * n_vocab;
    const float* r = ref->data() + t * n_vocab;
    const int64_t ag = std::max_element(g, g + n_vocab) - g;
    const int64_t ar = std::max_element(r, r + n_vocab) - r;
    if (ag != ar) {
      EXPECT_NEAR(r[ag], r[ar], tolerance * 4 * std::fabs(r[ar]) + 1e-3) << "position " << t;
    }
  }
}

TEST_P(ForwardVsReference, LogitsMatchNaiveReference) {
  const Case c = GetParam();
  SCOPED_TRACE(std::string(c.arch) + " " + dtype_name(c.type));
  expect_engine_matches_reference(synth(c.arch, c.type, false, c.preset), c.tolerance);
}

// Quantized weights: the engine quantizes activations to 8 bits (as llama.cpp does), the
// reference keeps them in f32, so the bound grows with the weight format's coarseness.
INSTANTIATE_TEST_SUITE_P(
    AllTypes, ForwardVsReference,
    ::testing::Values(Case{"llama", DType::F32, 1e-4}, Case{"qwen2", DType::F32, 1e-4}, Case{"llama", DType::F16, 1e-4},
                      Case{"qwen2", DType::F16, 1e-4}, Case{"llama", DType::BF16, 1e-4}, Case{"qwen2", DType::BF16, 1e-4},
                      Case{"llama", DType::Q8_0, 0.02}, Case{"qwen2", DType::Q8_0, 0.02}, Case{"llama", DType::Q4_0, 0.03},
                      Case{"qwen2", DType::Q4_0, 0.03}, Case{"llama", DType::Q4_1, 0.03}, Case{"llama", DType::Q5_0, 0.03},
                      Case{"llama", DType::Q5_1, 0.03}, Case{"llama", DType::Q2_K, 0.05}, Case{"llama", DType::Q3_K, 0.05},
                      Case{"llama", DType::Q4_K, 0.03}, Case{"qwen2", DType::Q4_K, 0.03}, Case{"llama", DType::Q5_K, 0.03},
                      Case{"llama", DType::Q6_K, 0.03}, Case{"qwen2", DType::Q6_K, 0.03},
                      Case{"qwen2", DType::IQ4_NL, 0.03}, Case{"qwen2", DType::IQ4_XS, 0.03, "small"},
                      Case{"qwen2", DType::TQ2_0, 0.03, "small"}, Case{"qwen2", DType::TQ1_0, 0.03, "small"}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::string(info.param.arch) + "_" + dtype_name(info.param.type) +
             (std::string(info.param.preset) == "tiny" ? "" : std::string("_") + info.param.preset);
    });

// The codebook i-quants, which fathom reads but does not write: qwen2 "small" (every matrix has
// whole 256-value super-blocks) with all its matrices, embeddings and output re-encoded
// (iquant_rewrite.h). Measured: 0.020-0.025, as Q8_0/Q4_K weights give (8-bit activations).
class ForwardIQuantVsReference : public ::testing::TestWithParam<DType> {};

TEST_P(ForwardIQuantVsReference, LogitsMatchNaiveReference) {
  const DType type = GetParam();
  SynthOptions o;
  o.arch = "qwen2";
  o.preset = "small";
  o.dtype = DType::Q8_0;
  o.seed = 7;
  const std::string base = tmp_path("fwd-iq-base.gguf");
  ASSERT_TRUE(synth_model(o, base).is_ok());
  const std::string path = tmp_path(std::string("fwd-qwen2-small-") + dtype_name(type) + ".gguf");
  const Status st = test::rewrite_with_iquants(
      base, path,
      [&](const std::string& name) -> std::optional<DType> {
        if (name.find("norm") != std::string::npos || name.find(".bias") != std::string::npos) return std::nullopt;
        return type;
      },
      3);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  expect_engine_matches_reference(path, 0.04);
}

INSTANTIATE_TEST_SUITE_P(CodebookTypes, ForwardIQuantVsReference,
                         ::testing::Values(DType::IQ1_S, DType::IQ1_M, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
                                           DType::IQ3_XXS, DType::IQ3_S),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

TEST(Forward, TiedOutputUsesTokenEmbedding) {
  const std::string path = synth("llama", DType::F32, /*tied=*/true);
  auto model = Model::load(path, LoadOptions{2});
  ASSERT_TRUE(model) << model.status().to_string();
  EXPECT_TRUE((*model)->config().tied_output);
  const std::vector<int32_t> tokens = test_tokens(8, (*model)->config().n_vocab, 2);
  auto ref = reference_forward((*model)->file(), (*model)->config(), tokens);
  ASSERT_TRUE(ref) << ref.status().to_string();
  const std::vector<float> got = engine_logits(**model, tokens, 8);
  EXPECT_LT(max_rel_diff(got.data(), ref->data(), static_cast<int64_t>(got.size())), 1e-4);
}

// The 2-bit i-quants mixed per tensor as published files mix them (attention IQ2_XXS,
// feed-forward IQ2_XS, embeddings and output IQ2_S) in a llama model.
TEST(Forward, Iq2TypesMixedPerTensorMatchNaiveReference) {
  SynthOptions o;
  o.arch = "llama";
  o.preset = "small";
  o.dtype = DType::Q8_0;
  o.n_layer = 2;
  o.seed = 9;
  const std::string base = tmp_path("fwd-iq2-mix-base.gguf");
  ASSERT_TRUE(synth_model(o, base).is_ok());
  const std::string path = tmp_path("fwd-llama-small-iq2-mix.gguf");
  const Status st = test::rewrite_with_iquants(
      base, path,
      [](const std::string& name) -> std::optional<DType> {
        if (name.find("norm") != std::string::npos) return std::nullopt;
        if (name.find("attn_") != std::string::npos) return DType::IQ2_XXS;
        return name.find("ffn_") != std::string::npos ? DType::IQ2_XS : DType::IQ2_S;
      },
      5);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  expect_engine_matches_reference(path, 0.04);
}

// Two sequences decoded together in one batch give the same logits as each decoded alone.
TEST(Forward, TwoSequencesInOneBatchMatchEachAlone) {
  for (const char* arch : {"llama", "qwen2"}) {
    const std::string path = synth(arch, DType::Q8_0);
    auto model = Model::load(path, LoadOptions{2});
    ASSERT_TRUE(model) << model.status().to_string();
    Model& m = **model;
    const int64_t n_vocab = m.config().n_vocab;
    const std::vector<int32_t> a = test_tokens(21, n_vocab, 5), b = test_tokens(13, n_vocab, 9);
    const std::vector<float> alone_a = engine_logits(m, a, 1), alone_b = engine_logits(m, b, 1);
    // Together: prefill both prompts but the last token in one batch, then decode the last
    // tokens of both in a second batch — sequences of different lengths at different positions.
    KvCache kv(m.kv_shape(256), 64);
    std::vector<float> logits;
    Batch prefill;
    for (size_t i = 0; i + 1 < a.size(); ++i) prefill.add(a[i], static_cast<int32_t>(i), 10, false);
    for (size_t i = 0; i + 1 < b.size(); ++i) prefill.add(b[i], static_cast<int32_t>(i), 20, false);
    ASSERT_TRUE(m.forward(prefill, kv, logits).is_ok());
    Batch decode;
    decode.add(b.back(), static_cast<int32_t>(b.size() - 1), 20, true);
    decode.add(a.back(), static_cast<int32_t>(a.size() - 1), 10, true);
    ASSERT_TRUE(m.forward(decode, kv, logits).is_ok());
    const float* last_a = alone_a.data() + (a.size() - 1) * n_vocab;
    const float* last_b = alone_b.data() + (b.size() - 1) * n_vocab;
    EXPECT_LT(max_rel_diff(logits.data(), last_b, n_vocab), 1e-5) << arch;
    EXPECT_LT(max_rel_diff(logits.data() + n_vocab, last_a, n_vocab), 1e-5) << arch;
  }
}

TEST(Forward, ChunkedPrefillMatchesOneBatch) {
  const std::string path = synth("qwen2", DType::Q4_K);
  auto model = Model::load(path, LoadOptions{2});
  ASSERT_TRUE(model) << model.status().to_string();
  const std::vector<int32_t> tokens = test_tokens(50, (*model)->config().n_vocab, 3);
  const std::vector<float> one = engine_logits(**model, tokens, 64);
  const std::vector<float> chunked = engine_logits(**model, tokens, 7);
  ASSERT_EQ(one.size(), chunked.size());
  EXPECT_LT(max_rel_diff(chunked.data(), one.data(), static_cast<int64_t>(one.size())), 1e-5);
}

// A prompt of 90 tokens in one batch: on an AMX CPU every product takes the BF16 tiles and the
// FFN the fused SwiGLU (gemm_swiglu), elsewhere the integer kernels; either way within the
// quantized types' bound of the naive reference, and of the same prompt in chunks of 16 (the
// integer kernels everywhere).
TEST(Forward, LongPrefillBatchMatchesNaiveReference) {
  for (const auto& [arch, type, preset] : {std::tuple{"qwen2", DType::Q8_0, "tiny"}, std::tuple{"llama", DType::Q8_0, "tiny"},
                                          std::tuple{"qwen2", DType::Q4_K, "small"}}) {
    SCOPED_TRACE(std::string(arch) + " " + dtype_name(type));
    auto model = Model::load(synth(arch, type, false, preset), LoadOptions{2});
    ASSERT_TRUE(model) << model.status().to_string();
    const ModelConfig& cfg = (*model)->config();
    const std::vector<int32_t> tokens = test_tokens(90, cfg.n_vocab, 11);
    auto ref = reference_forward((*model)->file(), cfg, tokens);
    ASSERT_TRUE(ref) << ref.status().to_string();
    const std::vector<float> one = engine_logits(**model, tokens, 90), chunked = engine_logits(**model, tokens, 16);
    ASSERT_EQ(one.size(), ref->size());
    const int64_t n = static_cast<int64_t>(one.size());
    const double diff = max_rel_diff(one.data(), ref->data(), n);
    std::printf("[ diff     ] %s %s: one batch of 90 vs reference %.3g, vs chunks of 16 %.3g\n", arch, dtype_name(type), diff,
                max_rel_diff(one.data(), chunked.data(), n));
    EXPECT_LT(diff, 0.03);
    EXPECT_LT(max_rel_diff(one.data(), chunked.data(), n), 0.03);
  }
}

TEST(Forward, ContextLimitIsAClearError) {
  const std::string path = synth("llama", DType::F32);
  auto model = Model::load(path, LoadOptions{1});
  ASSERT_TRUE(model) << model.status().to_string();
  KvCacheShape shape = (*model)->kv_shape(32);
  KvCache kv(shape, 8);
  Batch b;
  for (int i = 0; i < 33; ++i) b.add(1, i, 0, i == 32);
  std::vector<float> logits;
  const Status st = (*model)->forward(b, kv, logits);
  EXPECT_EQ(st.code(), ErrorCode::kOutOfRange);
  EXPECT_NE(st.message().find("context limit"), std::string::npos) << st.message();
  EXPECT_EQ(kv.pool().n_free(), 8);  // nothing allocated on failure
}

TEST(Forward, BadBatchesAreRejected) {
  const std::string path = synth("llama", DType::F32);
  auto model = Model::load(path, LoadOptions{1});
  ASSERT_TRUE(model) << model.status().to_string();
  KvCache kv((*model)->kv_shape(64), 8);
  std::vector<float> logits;
  Batch out_of_vocab;
  out_of_vocab.add(static_cast<int32_t>((*model)->config().n_vocab), 0, 0, true);
  EXPECT_EQ((*model)->forward(out_of_vocab, kv, logits).code(), ErrorCode::kInvalidArgument);
  Batch gap;
  gap.add(1, 0, 0, false);
  gap.add(1, 2, 0, true);
  EXPECT_EQ((*model)->forward(gap, kv, logits).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ((*model)->forward(Batch{}, kv, logits).code(), ErrorCode::kInvalidArgument);
}

// DeepSeek-V3 files with MTP count the NextN layer in block_count; the forward pass skips it.
TEST(Forward, NextnLayersAreNotPartOfTheForwardPass) {
  const std::string path = tmp_path("nextn.gguf");
  ASSERT_TRUE(nextn_model(1).write(path).is_ok());
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file) << file.status().to_string();
  auto c = ModelConfig::from_gguf(**file);
  ASSERT_TRUE(c) << c.status().to_string();
  EXPECT_EQ(c->n_layer, 3);
  EXPECT_EQ(c->n_nextn_layers, 1);
}

TEST(Forward, MalformedDeviceNamesAreRejectedBeforeAnyRetry) {
  const std::string path = synth("llama", DType::F32);
  for (const char* device : {"cuda:", "cuda:x", "opencl:1a", "opencl:-1", "gpu"}) {
    LoadOptions o{1};
    o.device = device;
    auto model = Model::load(path, o);
    ASSERT_FALSE(model) << device;
    EXPECT_EQ(model.status().code(), ErrorCode::kInvalidArgument) << device;
    EXPECT_NE(model.status().message().find("opencl:N"), std::string::npos) << model.status().message();
  }
}

TEST(Forward, UnknownArchitectureIsAClearError) {
  gguf::GgufWriter w;
  w.set_string("general.architecture", "mamba");
  w.add_tensor_bytes("token_embd.weight", DType::F32, {4, 2}, std::vector<uint8_t>(32, 0));
  const std::string path = tmp_path("mamba.gguf");
  ASSERT_TRUE(w.write(path).is_ok());
  auto model = Model::load(path, LoadOptions{1});
  ASSERT_FALSE(model);
  EXPECT_EQ(model.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(model.status().message().find("mamba"), std::string::npos);
}

}  // namespace
}  // namespace fathom
