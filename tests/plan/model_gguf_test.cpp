#include <gtest/gtest.h>

#include "gguf/gguf.h"
#include "plan/model_shape.h"
#include "plan/planner.h"
#include "../nextn_gguf.h"

namespace fathom::plan {
namespace {

// A tiny llama-layout GGUF (2 blocks, GQA) written with the project's writer: the planner must
// read the shape from the metadata and take byte sizes from the tensors themselves.
std::string write_tiny_model() {
  gguf::GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny-llama");
  w.set_u32("llama.embedding_length", 256);
  w.set_u32("llama.block_count", 2);
  w.set_u32("llama.feed_forward_length", 512);
  w.set_u32("llama.attention.head_count", 4);
  w.set_u32("llama.attention.head_count_kv", 2);
  w.set_u32("llama.context_length", 2048);
  w.set_u32("general.file_type", 15);  // Q4_K_M
  auto add = [&](const std::string& name, DType t, std::vector<int64_t> ne) {
    w.add_tensor(name, t, ne, [](uint8_t* dst, size_t n) {
      std::fill(dst, dst + n, 0);
      return Status::ok();
    });
  };
  add("token_embd.weight", DType::Q4_K, {256, 1000});
  add("output_norm.weight", DType::F32, {256});
  add("output.weight", DType::Q6_K, {256, 1000});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    // llama.cpp's Q4_K_M bumps attn_v/ffn_down to Q6_K in the last eighth of the layers (here: 1).
    const DType bumped = l == 1 ? DType::Q6_K : DType::Q4_K;
    add(p + "attn_norm.weight", DType::F32, {256});
    add(p + "ffn_norm.weight", DType::F32, {256});
    add(p + "attn_q.weight", DType::Q4_K, {256, 256});
    add(p + "attn_k.weight", DType::Q4_K, {256, 128});
    add(p + "attn_v.weight", bumped, {256, 128});
    add(p + "attn_output.weight", DType::Q4_K, {256, 256});
    add(p + "ffn_gate.weight", DType::Q4_K, {256, 512});
    add(p + "ffn_up.weight", DType::Q4_K, {256, 512});
    add(p + "ffn_down.weight", bumped, {512, 256});
  }
  const std::string path = std::string(FATHOM_TEST_TMP) + "/plan_tiny.gguf";
  EXPECT_TRUE(w.write(path).is_ok());
  return path;
}

TEST(PlannerGguf, SizesComeFromTheTensors) {
  const std::string path = write_tiny_model();
  Expected<ModelDesc> m = model_from_gguf(path);
  ASSERT_TRUE(m.has_value()) << m.status().to_string();
  EXPECT_TRUE(m->from_file);
  EXPECT_EQ(m->file_type, "q4_k_m");
  EXPECT_EQ(m->shape.arch, "llama");
  EXPECT_EQ(m->shape.n_layer, 2);
  EXPECT_EQ(m->shape.n_head_kv, 2);
  EXPECT_EQ(m->shape.head_dim, 64);
  EXPECT_EQ(m->shape.n_vocab, 1000);
  EXPECT_FALSE(m->shape.tied_output);

  std::unique_ptr<gguf::GgufFile> f = std::move(gguf::GgufFile::open(path).value());
  uint64_t file_bytes = 0;
  for (const gguf::TensorInfo& t : f->tensors()) file_bytes += t.n_bytes;

  PlanOptions o;
  o.quant = QuantScheme{};  // as stored
  o.ctx = 100;
  const ModelSizing z = size_model(*m, o);
  EXPECT_EQ(z.weight_bytes, file_bytes);
  EXPECT_EQ(z.kv_bytes_per_token, 2u * 2 * 2 * 64 * 2);  // layers x (K,V) x kv heads x head_dim x f16 (the engine's default)
  // Re-planning the same shapes as q4_k_m reproduces the file's own mix here.
  o.quant = *parse_quant("q4_k_m");
  const ModelSizing mix = size_model(*m, o);
  EXPECT_EQ(mix.n_params, z.n_params);
  EXPECT_EQ(mix.weight_bytes, file_bytes);

  EXPECT_FALSE(model_from_gguf(std::string(FATHOM_TEST_TMP) + "/does-not-exist.gguf").has_value());
}

// The planner reads the layer counts the engine's config reads (model/config.h): a DeepSeek-V3
// file's MTP layer is in block_count but not in the layers that run (and hold KV cache).
TEST(PlannerGguf, MtpLayersAreCountedAsTheEngineCountsThem) {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/plan-nextn.gguf";
  ASSERT_TRUE(nextn_model(1).write(path).is_ok());
  auto m = model_from_gguf(path);
  ASSERT_TRUE(m.has_value()) << m.status().to_string();
  EXPECT_EQ(m->shape.n_layer, 3);
  EXPECT_EQ(m->shape.n_nextn_layers, 1);
  ASSERT_TRUE(nextn_model(4).write(path).is_ok());
  EXPECT_FALSE(model_from_gguf(path).has_value());
}

}  // namespace
}  // namespace fathom::plan
