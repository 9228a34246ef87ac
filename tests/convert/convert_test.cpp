// fathom convert: tiny Hugging Face checkpoints written here (from synth GGUFs for llama and
// qwen2, with llama.cpp's Q/K permutation undone; handmade for DeepSeek-V3 with FP8 weights)
// convert back to GGUFs whose logits match the source.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "convert/hf_convert.h"
#include "convert/safetensors.h"
#include "convert_test_util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

using convert::SafetensorsWriter;
using convert::StDType;
using testing::model_logits;
using testing::tmp_path;

std::string make_dir(const std::string& name) {
  const std::string dir = tmp_path(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// GGUF name -> Hugging Face name for the dense architectures.
std::string hf_name(const std::string& g) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  int layer = -1;
  char rest[64] = {0};
  if (std::sscanf(g.c_str(), "blk.%d.%63s", &layer, rest) != 2) return "";
  const std::string r(rest);
  const std::pair<const char*, const char*> map[] = {
      {"attn_norm.", "input_layernorm."},   {"attn_q.", "self_attn.q_proj."},    {"attn_k.", "self_attn.k_proj."},
      {"attn_v.", "self_attn.v_proj."},     {"attn_output.", "self_attn.o_proj."}, {"ffn_norm.", "post_attention_layernorm."},
      {"ffn_gate.", "mlp.gate_proj."},      {"ffn_up.", "mlp.up_proj."},         {"ffn_down.", "mlp.down_proj."}};
  for (const auto& [from, to] : map)
    if (r.rfind(from, 0) == 0) return "model.layers." + std::to_string(layer) + "." + to + r.substr(std::strlen(from));
  return "";
}

// Writes a Hugging Face checkpoint holding a synth GGUF's weights. llama: attn_q/attn_k rows go
// back to Hugging Face's half-split RoPE layout (the inverse of llama.cpp's permutation).
void gguf_to_hf(const std::string& gguf_path, const std::string& dir, const std::string& arch) {
  auto f = gguf::GgufFile::open(gguf_path);
  ASSERT_TRUE(f.has_value());
  const gguf::GgufFile& g = **f;
  const int64_t n_head = *g.get_int(arch + ".attention.head_count");
  const int64_t n_head_kv = *g.get_int(arch + ".attention.head_count_kv");
  SafetensorsWriter w;
  for (const gguf::TensorInfo& t : g.tensors()) {
    const std::string name = hf_name(t.view.name);
    ASSERT_FALSE(name.empty()) << t.view.name;
    const int64_t cols = t.view.ne[0], rows = t.view.n_rows();
    std::vector<float> v(static_cast<size_t>(cols * rows));
    for (int64_t r = 0; r < rows; ++r) quant::dequantize_row(t.view.dtype, t.view.row(r), v.data() + r * cols, cols);
    const bool q = t.view.name.find("attn_q.") != std::string::npos, k = t.view.name.find("attn_k.") != std::string::npos;
    const int64_t heads = q ? n_head : n_head_kv;
    const int64_t n = t.view.n_dims == 1 ? cols : rows;      // permuted entries: rows, or a bias's values
    const int64_t width = t.view.n_dims == 1 ? 1 : cols;
    if (arch == "llama" && (q || k)) {
      std::vector<float> hf(v.size());
      const int64_t d = n / heads;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < d / 2; ++i)
          for (int64_t j = 0; j < 2; ++j)
            std::copy_n(v.data() + (h * d + 2 * i + j) * width, width, hf.data() + (h * d + j * (d / 2) + i) * width);
      v.swap(hf);
    }
    std::vector<int64_t> shape = t.view.n_dims == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    w.add_f32(name, shape, v.data());
  }
  ASSERT_TRUE(w.write(dir + "/model.safetensors").is_ok());
}

void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

nlohmann::json dense_config(const std::string& cls, int64_t n_vocab) {
  return {{"architectures", {cls}}, {"hidden_size", 64},          {"intermediate_size", 128},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"num_hidden_layers", 2},
          {"rms_norm_eps", 1e-5},     {"rope_theta", 10000.0},    {"max_position_embeddings", 512},
          {"vocab_size", n_vocab},    {"tie_word_embeddings", false}};
}

std::unique_ptr<gguf::GgufFile> convert_dir(const std::string& dir, const std::string& out, DType outtype, bool legacy_mla = false) {
  convert::ConvertOptions o;
  o.outtype = outtype;
  o.n_threads = 2;
  o.legacy_mla = legacy_mla;
  const Status st = convert::convert_hf(dir, out, o);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  auto f = gguf::GgufFile::open(out);
  EXPECT_TRUE(f.has_value()) << f.status().to_string();
  return f ? std::move(f).value() : nullptr;
}

const std::vector<int32_t> kTokens = {509, 17, 300, 45, 25, 9, 123, 77, 400, 3};

TEST(ConvertTest, LlamaRoundTripMatchesSourceLogits) {
  const std::string src = testing::synth_model_file("llama", "tiny", DType::F32, 0, "hf-llama-src.gguf");
  const std::string dir = make_dir("hf-llama");
  gguf_to_hf(src, dir, "llama");
  write_json(dir + "/config.json", dense_config("LlamaForCausalLM", 512));
  testing::write_tiny_tokenizer(dir, 512);
  auto out = convert_dir(dir, tmp_path("hf-llama-f32.gguf"), DType::F32);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->architecture(), "llama");
  EXPECT_EQ(out->get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(out->get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(out->get_int("general.file_type"), 0);
  EXPECT_EQ(out->get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(out->get_string("tokenizer.ggml.pre"), "deepseek-v3");
  EXPECT_EQ(out->get_int("tokenizer.ggml.bos_token_id"), 509);
  EXPECT_EQ(out->get_int("tokenizer.ggml.eos_token_id"), 510);
  EXPECT_EQ(out->get_bool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_TRUE(out->get_string("tokenizer.chat_template").has_value());
  const gguf::Value* types = out->find("tokenizer.ggml.token_type");
  ASSERT_NE(types, nullptr);
  EXPECT_EQ(types->numbers[509], 3);  // special -> CONTROL
  EXPECT_EQ(types->numbers[511], 3);  // <|user|> looks special -> CONTROL
  EXPECT_EQ(types->numbers[65], 1);
  // The converted tokenizer loads and encodes with BOS.
  auto tok = Tokenizer::from_gguf(*out);
  ASSERT_TRUE(tok.has_value()) << tok.status().to_string();
  const std::vector<int32_t> ids = (*tok)->encode("the rain", true, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 509);
  EXPECT_LT(testing::max_rel_diff(model_logits(tmp_path("hf-llama-f32.gguf"), kTokens), model_logits(src, kTokens)), 1e-5);
  // F16 output: matrices F16, norms F32, logits still close.
  auto f16 = convert_dir(dir, tmp_path("hf-llama-f16.gguf"), DType::F16);
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(f16->find_tensor("blk.0.attn_q.weight")->view.dtype, DType::F16);
  EXPECT_EQ(f16->find_tensor("blk.0.attn_norm.weight")->view.dtype, DType::F32);
  EXPECT_LT(testing::max_rel_diff(model_logits(tmp_path("hf-llama-f16.gguf"), kTokens), model_logits(src, kTokens)), 0.01);
}

TEST(ConvertTest, Qwen2RoundTripIsUnpermutedWithBiases) {
  const std::string src = testing::synth_model_file("qwen2", "tiny", DType::F32, 0, "hf-qwen2-src.gguf");
  const std::string dir = make_dir("hf-qwen2");
  gguf_to_hf(src, dir, "qwen2");
  nlohmann::json cfg = dense_config("Qwen2ForCausalLM", 512);
  cfg["rms_norm_eps"] = 1e-6;
  write_json(dir + "/config.json", cfg);
  testing::write_tiny_tokenizer(dir, 512);
  auto out = convert_dir(dir, tmp_path("hf-qwen2-q8.gguf"), DType::Q8_0);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->architecture(), "qwen2");
  EXPECT_EQ(out->find_tensor("blk.1.attn_k.bias")->view.dtype, DType::F32);
  EXPECT_EQ(out->find_tensor("blk.1.ffn_down.weight")->view.dtype, DType::Q8_0);
  EXPECT_EQ(out->get_int("general.file_type"), 7);
  EXPECT_FALSE(out->get_int("qwen2.rope.dimension_count").has_value());
  auto f32 = convert_dir(dir, tmp_path("hf-qwen2-f32.gguf"), DType::F32);
  EXPECT_LT(testing::max_rel_diff(model_logits(tmp_path("hf-qwen2-f32.gguf"), kTokens), model_logits(src, kTokens)), 1e-5);
  EXPECT_LT(testing::max_rel_diff(model_logits(tmp_path("hf-qwen2-q8.gguf"), kTokens), model_logits(src, kTokens)), 0.03);
}

// FP8 E4M3 encoding of x (round to nearest, |x| <= 448), for building test checkpoints.
uint8_t to_e4m3(float x) {
  uint8_t best = 0;
  float best_err = INFINITY;
  for (int b = 0; b < 256; ++b) {
    const float v = convert::fp8_e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(v)) continue;
    if (std::fabs(v - x) < best_err) best_err = std::fabs(v - x), best = static_cast<uint8_t>(b);
  }
  return best;
}

// A DeepSeek-V3-shaped checkpoint: MLA with q LoRA, one dense layer then MoE with a shared
// expert, sigmoid routing with a correction bias and two groups. With fp8, the big matrices are
// stored as E4M3 with 16x16 block scales; `dequantized` receives the values they represent, so
// an F32 checkpoint of the same model can be written for comparison.
void write_deepseek_v3(const std::string& dir, bool fp8) {
  const nlohmann::json cfg = {
      {"architectures", {"DeepseekV3ForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 96},
      {"moe_intermediate_size", 32}, {"num_attention_heads", 4}, {"num_key_value_heads", 4}, {"num_hidden_layers", 2},
      {"first_k_dense_replace", 1}, {"n_routed_experts", 4}, {"n_shared_experts", 1}, {"num_experts_per_tok", 2},
      {"q_lora_rank", 32}, {"kv_lora_rank", 32}, {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 8}, {"v_head_dim", 16},
      {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"max_position_embeddings", 512}, {"vocab_size", 512},
      {"scoring_func", "sigmoid"}, {"topk_method", "noaux_tc"}, {"n_group", 2}, {"topk_group", 1},
      {"norm_topk_prob", true}, {"routed_scaling_factor", 2.5}, {"tie_word_embeddings", false},
      {"quantization_config", {{"quant_method", "fp8"}, {"weight_block_size", {16, 16}}}}};
  write_json(dir + "/config.json", cfg);
  testing::write_tiny_tokenizer(dir, 512);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SafetensorsWriter w;
  // Matrices: the FP8 variant stores q = round_e4m3(x / s) and s per 16x16 block, and the F32
  // variant stores exactly fp8(q) * s, so both checkpoints describe the same weights.
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, float stddev) {
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = normal(rng) * stddev;
    const int64_t br = (rows + 15) / 16, bc = (cols + 15) / 16;
    std::vector<float> scale(static_cast<size_t>(br * bc));
    for (float& s : scale) s = stddev / 64.0f * (1.0f + 0.5f * std::fabs(normal(rng)));
    std::vector<uint8_t> q(x.size());
    std::vector<float> deq(x.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float s = scale[static_cast<size_t>((r / 16) * bc + c / 16)];
        const size_t i = static_cast<size_t>(r * cols + c);
        q[i] = to_e4m3(std::clamp(x[i] / s, -448.0f, 448.0f));
        deq[i] = convert::fp8_e4m3_to_f32(q[i]) * s;
      }
    if (fp8) {
      w.add(name, StDType::kF8E4M3, {rows, cols}, q);
      w.add_f32(name + "_scale_inv", {br, bc}, scale.data());
    } else {
      w.add_f32(name, {rows, cols}, deq.data());
    }
  };
  auto vec = [&](const std::string& name, int64_t n, float mean, float stddev) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = mean + normal(rng) * stddev;
    w.add_f32(name, {n}, v.data());
  };
  const float p64 = 1.0f / 8.0f;  // ~1/sqrt(fan_in 64)
  vec("model.norm.weight", 64, 1.0f, 0.1f);
  matrix("model.embed_tokens.weight", 512, 64, 1.0f);
  matrix("lm_head.weight", 512, 64, 2.0f * p64);
  for (int il = 0; il < 2; ++il) {
    const std::string h = "model.layers." + std::to_string(il) + ".";
    vec(h + "input_layernorm.weight", 64, 1.0f, 0.1f);
    vec(h + "post_attention_layernorm.weight", 64, 1.0f, 0.1f);
    matrix(h + "self_attn.q_a_proj.weight", 32, 64, p64);
    vec(h + "self_attn.q_a_layernorm.weight", 32, 1.0f, 0.1f);
    matrix(h + "self_attn.q_b_proj.weight", 4 * 24, 32, 0.18f);
    matrix(h + "self_attn.kv_a_proj_with_mqa.weight", 32 + 8, 64, p64);
    vec(h + "self_attn.kv_a_layernorm.weight", 32, 1.0f, 0.1f);
    matrix(h + "self_attn.kv_b_proj.weight", 4 * (16 + 16), 32, 0.18f);
    matrix(h + "self_attn.o_proj.weight", 64, 4 * 16, p64);
    if (il == 0) {
      matrix(h + "mlp.gate_proj.weight", 96, 64, p64);
      matrix(h + "mlp.up_proj.weight", 96, 64, p64);
      matrix(h + "mlp.down_proj.weight", 64, 96, 0.1f);
      continue;
    }
    matrix(h + "mlp.gate.weight", 4, 64, p64);
    vec(h + "mlp.gate.e_score_correction_bias", 4, 0.0f, 0.05f);
    for (int e = 0; e < 4; ++e) {
      const std::string x = h + "mlp.experts." + std::to_string(e) + ".";
      matrix(x + "gate_proj.weight", 32, 64, p64);
      matrix(x + "up_proj.weight", 32, 64, p64);
      matrix(x + "down_proj.weight", 64, 32, 0.18f);
    }
    matrix(h + "mlp.shared_experts.gate_proj.weight", 32, 64, p64);
    matrix(h + "mlp.shared_experts.up_proj.weight", 32, 64, p64);
    matrix(h + "mlp.shared_experts.down_proj.weight", 64, 32, 0.18f);
  }
  // An MTP layer (index == num_hidden_layers) as DeepSeek-V3 ships one: skipped by the converter.
  vec("model.layers.2.enorm.weight", 64, 1.0f, 0.1f);
  // Two shards with an index, as large checkpoints come.
  auto bytes = w.serialize();
  ASSERT_TRUE(bytes.has_value());
  std::ofstream(dir + "/model-00001-of-00001.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  auto st = convert::SafetensorsFile::open(dir + "/model-00001-of-00001.safetensors");
  ASSERT_TRUE(st.has_value());
  for (const convert::StTensor& t : (*st)->tensors()) index["weight_map"][t.name] = "model-00001-of-00001.safetensors";
  write_json(dir + "/model.safetensors.index.json", index);
}

TEST(ConvertTest, DeepseekV3Fp8MatchesDequantizedAndLegacyMla) {
  const std::string fp8_dir = make_dir("hf-dsv3-fp8"), f32_dir = make_dir("hf-dsv3-f32");
  write_deepseek_v3(fp8_dir, true);
  write_deepseek_v3(f32_dir, false);
  auto a = convert_dir(fp8_dir, tmp_path("dsv3-fp8.gguf"), DType::F32);
  auto b = convert_dir(f32_dir, tmp_path("dsv3-f32.gguf"), DType::F32);
  auto c = convert_dir(f32_dir, tmp_path("dsv3-legacy.gguf"), DType::F32, /*legacy_mla=*/true);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->architecture(), "deepseek2");
  EXPECT_EQ(a->get_int("deepseek2.attention.head_count_kv"), 1);
  EXPECT_EQ(a->get_int("deepseek2.attention.key_length"), 32 + 8);
  EXPECT_EQ(a->get_int("deepseek2.attention.key_length_mla"), 24);
  EXPECT_EQ(a->get_int("deepseek2.attention.value_length_mla"), 16);
  EXPECT_EQ(a->get_int("deepseek2.expert_gating_func"), 2);
  EXPECT_EQ(a->get_int("deepseek2.expert_group_count"), 2);
  EXPECT_EQ(a->find_tensor("blk.0.attn_k_b.weight")->view.ne, (std::array<int64_t, 4>{16, 32, 4, 1}));
  EXPECT_EQ(a->find_tensor("blk.0.attn_v_b.weight")->view.ne, (std::array<int64_t, 4>{32, 16, 4, 1}));
  EXPECT_EQ(a->find_tensor("blk.1.ffn_up_exps.weight")->view.ne, (std::array<int64_t, 4>{64, 32, 4, 1}));
  EXPECT_NE(a->find_tensor("blk.1.exp_probs_b.bias"), nullptr);
  EXPECT_EQ(a->find_tensor("blk.1.ffn_gate_inp.weight")->view.dtype, DType::F32);
  EXPECT_EQ(a->find_tensor("blk.2.attn_norm.weight"), nullptr);  // MTP layer skipped
  EXPECT_NE(c->find_tensor("blk.0.attn_kv_b.weight"), nullptr);
  // FP8 x block scale == the dequantized checkpoint, exactly.
  const std::vector<float> la = model_logits(tmp_path("dsv3-fp8.gguf"), kTokens);
  const std::vector<float> lb = model_logits(tmp_path("dsv3-f32.gguf"), kTokens);
  const std::vector<float> lc = model_logits(tmp_path("dsv3-legacy.gguf"), kTokens);
  ASSERT_FALSE(la.empty());
  for (float v : la) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(testing::max_rel_diff(la, lb), 0.0);
  // The split attn_k_b/attn_v_b and the legacy attn_kv_b describe the same attention.
  EXPECT_LT(testing::max_rel_diff(lb, lc), 1e-4);
}

TEST(ConvertTest, PreTokenizerRecognitionAndErrors) {
  std::vector<std::string> patterns;
  auto tj = nlohmann::json::parse(std::ifstream(std::string(FATHOM_SHARED_DIR) + "/testdata/deepseek-v3/tokenizer.json"));
  for (const auto& p : tj["pre_tokenizer"]["pretokenizers"])
    if (p["type"] == "Split") patterns.push_back(p["pattern"]["Regex"].get<std::string>());
  EXPECT_EQ(convert::recognize_pre_tokenizer(patterns, false), "deepseek-v3");
  EXPECT_EQ(convert::recognize_pre_tokenizer(
                {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                 "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                false),
            "qwen2");
  EXPECT_EQ(convert::recognize_pre_tokenizer({"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[x]+", "\\p{N}"}, false), "deepseek-coder");
  EXPECT_EQ(convert::recognize_pre_tokenizer({}, true), "gpt-2");
  // Unsupported architecture and missing directory are errors, not crashes.
  const std::string dir = make_dir("hf-bad");
  write_json(dir + "/config.json", {{"architectures", {"GPT2LMHeadModel"}}});
  SafetensorsWriter w;
  const float one = 1.0f;
  w.add_f32("x", {1}, &one);
  ASSERT_TRUE(w.write(dir + "/model.safetensors").is_ok());
  convert::ConvertOptions o;
  EXPECT_EQ(convert::convert_hf(dir, tmp_path("bad.gguf"), o).code(), ErrorCode::kUnsupported);
  EXPECT_FALSE(convert::convert_hf(tmp_path("no-such-dir"), tmp_path("bad.gguf"), o).is_ok());
}

}  // namespace
}  // namespace fathom
