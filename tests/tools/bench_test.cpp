// fathom bench's generation bound: weight bytes per decode token against a hand count from the
// GGUF tensor list (dense, tied embeddings, MoE with and without MLA), and the bandwidth / bound
// fields of its JSON and text output.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "../cli_util.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "model/model.h"
#include "model/synth.h"

namespace fathom {
namespace {

std::string synth(const std::string& arch, DType type, bool tied, bool mla_legacy, const std::string& name) {
  SynthOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.dtype = type;
  o.tied_output = tied;
  o.mla_legacy = mla_legacy;
  o.n_threads = 2;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/bench_test_" + name + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

std::unique_ptr<gguf::GgufFile> open(const std::string& path) {
  auto f = gguf::GgufFile::open(path);
  EXPECT_TRUE(f.has_value()) << f.status().to_string();
  return std::move(*f);
}

// The decode read set counted straight from the tensor list and the expert keys.
uint64_t hand_count(const gguf::GgufFile& f) {
  const std::string arch = f.architecture();
  const int64_t n_expert = f.get_int(arch + ".expert_count").value_or(0);
  const int64_t n_used = f.get_int(arch + ".expert_used_count").value_or(0);
  const bool tied = f.find_tensor("output.weight") == nullptr;
  uint64_t total = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const std::string& name = t.view.name;
    if (name == "token_embd.weight") {
      total += tied ? t.n_bytes : t.n_bytes / static_cast<uint64_t>(t.view.ne[1]);  // the head, or one row
    } else if (name.find("ffn_gate_exps") != std::string::npos || name.find("ffn_up_exps") != std::string::npos ||
               name.find("ffn_down_exps") != std::string::npos) {
      total += t.n_bytes * static_cast<uint64_t>(n_used) / static_cast<uint64_t>(n_expert);
    } else {
      total += t.n_bytes;
    }
  }
  return total;
}

uint64_t model_count(const gguf::GgufFile& f) {
  auto config = ModelConfig::from_gguf(f);
  EXPECT_TRUE(config.has_value()) << config.status().to_string();
  return weight_bytes_per_token(f, *config);
}

TEST(BenchBound, DenseCountsOneEmbeddingRow) {
  auto f = open(synth("llama", DType::Q8_0, false, false, "llama"));
  const uint64_t want = hand_count(*f);
  EXPECT_EQ(model_count(*f), want);
  // Everything but token_embd, plus one of its rows: well under the file's tensor bytes.
  const gguf::TensorInfo* embd = f->find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  uint64_t all = 0;
  for (const gguf::TensorInfo& t : f->tensors()) all += t.n_bytes;
  EXPECT_EQ(want, all - embd->n_bytes + embd->n_bytes / static_cast<uint64_t>(embd->view.ne[1]));
}

TEST(BenchBound, TiedEmbeddingsAreReadWhole) {
  auto f = open(synth("qwen2", DType::Q8_0, true, false, "qwen2_tied"));
  ASSERT_EQ(f->find_tensor("output.weight"), nullptr);
  uint64_t all = 0;
  for (const gguf::TensorInfo& t : f->tensors()) all += t.n_bytes;
  EXPECT_EQ(hand_count(*f), all);
  EXPECT_EQ(model_count(*f), all);
}

TEST(BenchBound, MoeCountsActiveExperts) {
  for (const char* arch : {"deepseek", "deepseek2"}) {
    auto f = open(synth(arch, DType::Q8_0, false, false, std::string("moe_") + arch));
    const uint64_t want = hand_count(*f);
    EXPECT_EQ(model_count(*f), want) << arch;
    uint64_t experts = 0, all = 0;
    for (const gguf::TensorInfo& t : f->tensors()) {
      all += t.n_bytes;
      if (t.view.name.find("_exps.") != std::string::npos) experts += t.n_bytes;
    }
    EXPECT_GT(experts, 0u) << arch;
    EXPECT_LT(want, all - experts / 2) << arch;  // tiny presets use 2 of 8 experts
  }
}

// Legacy MLA files carry one attn_kv_b; split files carry attn_k_b/attn_v_b instead. Both are
// read in full (the tensor list has only the one form).
TEST(BenchBound, LegacyMlaCountsKvB) {
  auto f = open(synth("deepseek2", DType::Q8_0, false, true, "mla_legacy"));
  ASSERT_NE(f->find_tensor("blk.0.attn_kv_b.weight"), nullptr);
  EXPECT_EQ(model_count(*f), hand_count(*f));
}

using test::CmdResult;

// stdout only: the tests parse --json from it.
CmdResult run_fathom(const std::string& args) { return test::run_fathom(args, /*merge_stderr=*/false); }

TEST(BenchBound, JsonHasBandwidthAndBound) {
  const std::string path = synth("deepseek", DType::Q8_0, false, false, "json");
  const uint64_t want = hand_count(*open(path));
  const CmdResult r = run_fathom("bench -m " + path + " -t 2 -p 8 -n 4 -r 1 --bw-mib 64 --json");
  ASSERT_EQ(r.code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  ASSERT_TRUE(j.contains("bandwidth_gb_s")) << r.output;
  ASSERT_TRUE(j.contains("weight_bytes_per_token")) << r.output;
  ASSERT_TRUE(j.contains("tg_bound_tok_s")) << r.output;
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), want);
  const double bw = j["bandwidth_gb_s"].get<double>();
  EXPECT_GT(bw, 0.1);
  EXPECT_NEAR(j["tg_bound_tok_s"].get<double>(), bw * 1e9 / static_cast<double>(want), 1e-6 * j["tg_bound_tok_s"].get<double>());
}

TEST(BenchBound, TextPrintsBoundAndShare) {
  const std::string path = synth("llama", DType::Q8_0, false, false, "text");
  const CmdResult r = run_fathom("bench -m " + path + " -t 2 -p 0 -n 4 -r 1 --bw-mib 64 2>&1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("bandwidth "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("GB/token -> tg bound"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tg4 = "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("% of bound"), std::string::npos) << r.output;
  const CmdResult skipped = run_fathom("bench -m " + path + " -t 2 -p 0 -n 2 -r 1 --bw-mib 0 --json");
  ASSERT_EQ(skipped.code, 0) << skipped.output;
  const nlohmann::json j = nlohmann::json::parse(skipped.output);
  EXPECT_TRUE(j.contains("weight_bytes_per_token"));
  EXPECT_FALSE(j.contains("bandwidth_gb_s"));
}

}  // namespace
}  // namespace fathom
