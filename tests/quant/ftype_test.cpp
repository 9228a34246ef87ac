// The file-type table and llama.cpp's per-tensor mix (quant/ftype.h) on hand-made tensor lists:
// the rules of the Q2_K and Q3_K mixes, GQA- and MoE-dependent choices, the V-like tensors MLA
// models have, and the fallbacks for rows a super-block does not divide.
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <set>
#include <string>

#include "quant/ftype.h"

namespace fathom::quant {
namespace {

// A dense llama-layout model: per layer attn_{q,k,v,output}, ffn_{gate,up,down} and two norms.
std::vector<MixTensor> dense_tensors(int n_layer, int64_t n_embd, int64_t n_kv, int64_t n_ff, bool tied = false) {
  std::vector<MixTensor> t;
  t.push_back({"token_embd.weight", {n_embd, 1000, 1, 1}, DType::F32});
  if (!tied) t.push_back({"output.weight", {n_embd, 1000, 1, 1}, DType::F32});
  t.push_back({"output_norm.weight", {n_embd, 1, 1, 1}, DType::F32});
  for (int il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    t.push_back({p + "attn_q.weight", {n_embd, n_embd, 1, 1}, DType::F32});
    t.push_back({p + "attn_k.weight", {n_embd, n_kv, 1, 1}, DType::F32});
    t.push_back({p + "attn_v.weight", {n_embd, n_kv, 1, 1}, DType::F32});
    t.push_back({p + "attn_output.weight", {n_embd, n_embd, 1, 1}, DType::F32});
    t.push_back({p + "ffn_gate.weight", {n_embd, n_ff, 1, 1}, DType::F32});
    t.push_back({p + "ffn_up.weight", {n_embd, n_ff, 1, 1}, DType::F32});
    t.push_back({p + "ffn_down.weight", {n_ff, n_embd, 1, 1}, DType::F32});
    t.push_back({p + "attn_norm.weight", {n_embd, 1, 1, 1}, DType::F32});
  }
  return t;
}

std::map<std::string, DType> mix(const char* ftype, const MixModel& m, const std::vector<MixTensor>& tensors,
                                 int* n_fallback = nullptr) {
  const std::optional<FileType> f = find_file_type(ftype);
  EXPECT_TRUE(f.has_value()) << ftype;
  const MixResult r = mix_types(*f, m, tensors);
  if (n_fallback) *n_fallback = r.n_fallback;
  std::map<std::string, DType> out;
  for (size_t i = 0; i < tensors.size(); ++i) out[tensors[i].name] = r.types[i];
  return out;
}

MixModel qwen2_like(int n_layer, int64_t n_head, int64_t n_head_kv) { return {"qwen2", n_layer, 0, n_head, n_head_kv, false}; }

TEST(FileTypeTable, NamesAndLlamaNumbersAreUniqueAndFindable) {
  std::set<uint32_t> ids;
  std::set<std::string> names;
  for (const FileType& f : file_types()) {
    EXPECT_TRUE(ids.insert(static_cast<uint32_t>(f.id)).second) << f.name;
    EXPECT_TRUE(names.insert(f.name).second) << f.name;
    const std::string lower = [&] {
      std::string s = f.name;
      for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return s;
    }();
    ASSERT_TRUE(find_file_type(lower).has_value()) << lower;
    EXPECT_EQ(find_file_type(lower)->id, f.id);
  }
  // llama.cpp's LLAMA_FTYPE numbers for the K-quant mixes.
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("Q2_K")->id), 10u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("Q3_K_S")->id), 11u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("Q3_K_M")->id), 12u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("Q3_K_L")->id), 13u);
  EXPECT_EQ(find_file_type("Q3_K_L")->base, DType::Q3_K);
  EXPECT_EQ(find_file_type("Q2_K")->base, DType::Q2_K);
  EXPECT_FALSE(find_file_type("Q3_K_XL").has_value());
  EXPECT_NE(file_type_names().find("Q2_K"), std::string::npos);
}

TEST(QuantMixRules, Q2KRaisesVDownAndOutputProjections) {
  // 8 heads over 4 KV heads: n_gqa 2 < 4, so attn_v gets Q3_K.
  auto t = mix("Q2_K", qwen2_like(4, 8, 4), dense_tensors(4, 256, 128, 512));
  EXPECT_EQ(t["output.weight"], DType::Q6_K);
  EXPECT_EQ(t["token_embd.weight"], DType::Q2_K);
  EXPECT_EQ(t["output_norm.weight"], DType::F32);
  for (int il = 0; il < 4; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    EXPECT_EQ(t[p + "attn_v.weight"], DType::Q3_K);
    EXPECT_EQ(t[p + "ffn_down.weight"], DType::Q3_K);
    EXPECT_EQ(t[p + "attn_output.weight"], DType::Q3_K);
    EXPECT_EQ(t[p + "attn_q.weight"], DType::Q2_K);
    EXPECT_EQ(t[p + "ffn_up.weight"], DType::Q2_K);
  }
  // The 1.5B shape's 12 heads over 2: n_gqa 6 >= 4 gives attn_v Q4_K.
  auto gqa = mix("Q2_K", qwen2_like(4, 12, 2), dense_tensors(4, 256, 256, 512));
  EXPECT_EQ(gqa["blk.0.attn_v.weight"], DType::Q4_K);
}

TEST(QuantMixRules, Q3KSmallMediumLarge) {
  const std::vector<MixTensor> tensors = dense_tensors(32, 256, 128, 512);
  auto s = mix("Q3_K_S", qwen2_like(32, 8, 4), tensors);
  auto m = mix("Q3_K_M", qwen2_like(32, 8, 4), tensors);
  auto l = mix("Q3_K_L", qwen2_like(32, 8, 4), tensors);
  for (auto* t : {&s, &m, &l}) EXPECT_EQ((*t)["output.weight"], DType::Q6_K);
  for (int il = 0; il < 32; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    for (const char* n : {"attn_v.weight", "ffn_down.weight", "attn_output.weight", "attn_q.weight"})
      EXPECT_EQ(s[p + n], DType::Q3_K) << p << n;
    // _M: the first two attn_v in Q5_K, the rest Q4_K; ffn_down Q5_K in the first 1/16, then Q4_K.
    EXPECT_EQ(m[p + "attn_v.weight"], il < 2 ? DType::Q5_K : DType::Q4_K) << il;
    EXPECT_EQ(m[p + "ffn_down.weight"], il < 2 ? DType::Q5_K : DType::Q4_K) << il;
    EXPECT_EQ(m[p + "attn_output.weight"], DType::Q4_K);
    EXPECT_EQ(m[p + "ffn_gate.weight"], DType::Q3_K);
    // _L: V, down and output projections in Q5_K.
    EXPECT_EQ(l[p + "attn_v.weight"], DType::Q5_K);
    EXPECT_EQ(l[p + "ffn_down.weight"], DType::Q5_K);
    EXPECT_EQ(l[p + "attn_output.weight"], DType::Q5_K);
    EXPECT_EQ(l[p + "attn_k.weight"], DType::Q3_K);
  }
}

TEST(QuantMixRules, TiedEmbeddingIsTypedAsTheOutput) {
  auto t = mix("Q3_K_M", qwen2_like(2, 8, 4), dense_tensors(2, 256, 128, 512, /*tied=*/true));
  EXPECT_EQ(t["token_embd.weight"], DType::Q6_K);
}

TEST(QuantMixRules, MoeLayersComeFromNamesAndMlaKvBIsVLike) {
  // deepseek2 with MLA's attn_kv_b and 64 experts: Q4_K_M raises attn_kv_b like attn_v, and
  // ffn_down_exps / _shexp by the layer in their name.
  std::vector<MixTensor> t;
  const int n_layer = 8;
  for (int il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    t.push_back({p + "attn_kv_b.weight", {512, 4096, 1, 1}, DType::F32});
    t.push_back({p + "ffn_down_exps.weight", {1536, 2048, 64, 1}, DType::F32});
    t.push_back({p + "ffn_down_shexp.weight", {1536, 2048, 1, 1}, DType::F32});
    t.push_back({p + "ffn_gate_inp.weight", {2048, 64, 1, 1}, DType::F32});
  }
  auto m = mix("Q4_K_M", {"deepseek2", n_layer, 64, 16, 16, false}, t);
  for (int il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const DType more = use_more_bits(il, n_layer) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(m[p + "attn_kv_b.weight"], more) << il;
    EXPECT_EQ(m[p + "ffn_down_exps.weight"], more) << il;
    EXPECT_EQ(m[p + "ffn_down_shexp.weight"], more) << il;
    EXPECT_EQ(m[p + "ffn_gate_inp.weight"], DType::F32);
  }
}

TEST(QuantMixRules, FallbacksForRowsTheSuperBlockDoesNotDivide) {
  EXPECT_EQ(fallback_type(DType::Q2_K, 1408), DType::IQ4_NL);
  EXPECT_EQ(fallback_type(DType::Q3_K, 64), DType::IQ4_NL);
  EXPECT_EQ(fallback_type(DType::Q4_K, 64), DType::Q5_0);
  EXPECT_EQ(fallback_type(DType::Q5_K, 64), DType::Q5_1);
  EXPECT_EQ(fallback_type(DType::Q6_K, 64), DType::Q8_0);
  EXPECT_EQ(fallback_type(DType::IQ2_XXS, 64), DType::IQ4_NL);
  EXPECT_EQ(fallback_type(DType::Q3_K, 48), DType::F16);
  EXPECT_EQ(fallback_type(DType::Q3_K, 512), DType::Q3_K);
  int n_fallback = 0;
  auto t = mix("Q3_K_M", qwen2_like(2, 4, 2), dense_tensors(2, 64, 32, 128), &n_fallback);
  EXPECT_EQ(t["blk.0.attn_q.weight"], DType::IQ4_NL);
  EXPECT_EQ(t["blk.0.attn_v.weight"], DType::Q5_1);  // Q5_K -> Q5_1
  EXPECT_EQ(t["output.weight"], DType::Q8_0);        // the output head's own rule for short rows
  EXPECT_GT(n_fallback, 0);
}

TEST(QuantMixRules, RequiresImatrixOnlyForTheLowBitIQuants) {
  // llama.cpp's rule, tensor by tensor.
  const FileType q2k = *find_file_type("Q2_K"), q2ks{"Q2_K_S", LlamaFtype::kQ2_K_S, DType::Q2_K, false};
  EXPECT_FALSE(requires_imatrix(q2k, "blk.0.attn_q.weight", DType::Q2_K));
  for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ1_S}) {
    EXPECT_TRUE(requires_imatrix(q2k, "blk.0.ffn_down.weight", t)) << dtype_name(t);
    EXPECT_TRUE(requires_imatrix(q2k, "token_embd.weight", t)) << dtype_name(t);
    EXPECT_TRUE(requires_imatrix(q2k, "output.weight", t)) << dtype_name(t);
  }
  EXPECT_TRUE(requires_imatrix(q2k, "blk.3.attn_v.weight", DType::IQ1_M));
  EXPECT_FALSE(requires_imatrix(q2k, "token_embd.weight", DType::IQ1_M));
  EXPECT_FALSE(requires_imatrix(q2k, "output.weight", DType::IQ1_M));
  EXPECT_TRUE(requires_imatrix(q2ks, "blk.0.attn_q.weight", DType::Q2_K));
  EXPECT_FALSE(requires_imatrix(q2ks, "token_embd.weight", DType::Q2_K));
  EXPECT_TRUE(requires_imatrix(q2ks, "output.weight", DType::Q2_K));
  // IQ3_XXS mixes have rules for quantizing without one.
  EXPECT_FALSE(requires_imatrix(q2k, "blk.0.attn_q.weight", DType::IQ3_XXS));
  EXPECT_FALSE(requires_imatrix(q2k, "blk.0.attn_q.weight", DType::Q4_K));
}

TEST(FileTypeTable, TwoBitIQuantTargets) {
  const std::pair<const char*, DType> rows[] = {
      {"IQ2_XXS", DType::IQ2_XXS}, {"IQ2_XS", DType::IQ2_XS}, {"IQ2_S", DType::IQ2_XS}, {"IQ2_M", DType::IQ2_S}};
  for (const auto& [name, base] : rows) {
    const std::optional<FileType> f = find_file_type(name);
    ASSERT_TRUE(f.has_value()) << name;
    EXPECT_EQ(f->base, base) << name;
    EXPECT_TRUE(f->in_plan) << name;
  }
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("IQ2_XXS")->id), 19u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("IQ2_XS")->id), 20u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("IQ2_S")->id), 28u);
  EXPECT_EQ(static_cast<uint32_t>(find_file_type("IQ2_M")->id), 29u);
}

}  // namespace
}  // namespace fathom::quant
