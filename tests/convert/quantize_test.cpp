// fathom quantize: llama.cpp's type mix on the right tensors, fallbacks, metadata, per-type
// error bounds against the F32 original, and that quantized files load and run close to F32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "convert/quantize.h"
#include "convert_test_util.h"
#include "gguf/gguf.h"
#include "model/synth.h"
#include "plan/planner.h"
#include "quant/ftype.h"
#include "quant/quant.h"

namespace fathom {
namespace {

using testing::model_logits;
using testing::synth_model_file;
using testing::tmp_path;

quant::FileType ftype(const char* name) {
  auto f = quant::find_file_type(name);
  EXPECT_TRUE(f.has_value()) << name;
  return *f;
}

std::unique_ptr<gguf::GgufFile> quantize(const std::string& in_path, const char* type, const std::string& out_name,
                                         convert::QuantizeReport* report = nullptr, std::vector<std::string>* warnings = nullptr,
                                         const convert::ImportanceMap* imatrix = nullptr) {
  auto in = gguf::GgufFile::open(in_path);
  EXPECT_TRUE(in.has_value()) << in.status().to_string();
  convert::QuantizeOptions o;
  o.ftype = ftype(type);
  o.n_threads = 2;
  o.imatrix = imatrix;
  if (warnings) o.on_warning = [warnings](const std::string& m) { warnings->push_back(m); };
  auto r = convert::quantize_model(**in, tmp_path(out_name), o);
  EXPECT_TRUE(r.has_value()) << r.status().to_string();
  if (report && r) *report = *r;
  auto out = gguf::GgufFile::open(tmp_path(out_name));
  EXPECT_TRUE(out.has_value()) << out.status().to_string();
  return out ? std::move(out).value() : nullptr;
}

DType type_of(const gguf::GgufFile& f, const std::string& name) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  return t ? t->view.dtype : DType::I8;
}

TEST(QuantMixTest, UseMoreBitsMatchesLlamaCpp) {
  // n = 8: first eighth {0}, last eighth {7}, and (i - 1) % 3 == 2 -> {3, 6}.
  std::vector<int> chosen;
  for (int i = 0; i < 8; ++i)
    if (quant::use_more_bits(i, 8)) chosen.push_back(i);
  EXPECT_EQ(chosen, (std::vector<int>{0, 3, 6, 7}));
  EXPECT_EQ(quant::fallback_type(DType::Q4_K, 64), DType::Q5_0);
  EXPECT_EQ(quant::fallback_type(DType::Q5_K, 64), DType::Q5_1);
  EXPECT_EQ(quant::fallback_type(DType::Q6_K, 64), DType::Q8_0);
  EXPECT_EQ(quant::fallback_type(DType::Q6_K, 256), DType::Q6_K);
  EXPECT_EQ(quant::fallback_type(DType::Q4_0, 48), DType::F16);
  EXPECT_TRUE(quant::llama_tensor_order("token_embd.weight", "blk.0.attn_q.weight"));
  EXPECT_TRUE(quant::llama_tensor_order("blk.2.ffn_up.weight", "blk.10.attn_k.weight"));
  EXPECT_TRUE(quant::llama_tensor_order("output.weight", "output_norm.weight"));
}

TEST(QuantizeTest, Q4KMPutsTheRightTypesOnTheRightTensors) {
  const std::string src = synth_model_file("llama", "small", DType::F32, 8, "mix-small-f32.gguf");
  auto in = gguf::GgufFile::open(src);
  ASSERT_TRUE(in.has_value());
  auto q = quantize(src, "Q4_K_M", "mix-small-q4km.gguf");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->get_int("general.file_type"), 15);
  EXPECT_EQ(q->get_int("general.quantization_version"), 2);
  EXPECT_EQ(type_of(*q, "output.weight"), DType::Q6_K);
  EXPECT_EQ(type_of(*q, "token_embd.weight"), DType::Q4_K);
  EXPECT_EQ(type_of(*q, "output_norm.weight"), DType::F32);
  for (int il = 0; il < 8; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const DType more = quant::use_more_bits(il, 8) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(type_of(*q, p + "attn_v.weight"), more) << il;
    EXPECT_EQ(type_of(*q, p + "ffn_down.weight"), more) << il;
    EXPECT_EQ(type_of(*q, p + "attn_q.weight"), DType::Q4_K);
    EXPECT_EQ(type_of(*q, p + "ffn_up.weight"), DType::Q4_K);
    EXPECT_EQ(type_of(*q, p + "attn_norm.weight"), DType::F32);
    EXPECT_EQ(type_of(*q, p + "ffn_norm.weight"), DType::F32);
  }
  // Metadata copied in order; the two quantization keys moved to the end as llama-quantize does.
  const auto& md = q->metadata();
  ASSERT_GE(md.size(), 2u);
  EXPECT_EQ(md[md.size() - 2].first, "general.quantization_version");
  EXPECT_EQ(md.back().first, "general.file_type");
  EXPECT_EQ(q->get_string("tokenizer.ggml.model"), (*in)->get_string("tokenizer.ggml.model"));
  EXPECT_EQ(q->find("tokenizer.ggml.tokens")->strings, (*in)->find("tokenizer.ggml.tokens")->strings);
  // Tensor order: llama.cpp's loader order (non-block tensors, then block by block, by name).
  const auto& ts = q->tensors();
  for (size_t i = 1; i < ts.size(); ++i) EXPECT_TRUE(quant::llama_tensor_order(ts[i - 1].view.name, ts[i].view.name));
  EXPECT_EQ(ts.front().view.name, "output.weight");
}

TEST(QuantizeTest, SmallRowsFallBackAndOtherMixes) {
  // tiny: n_embd 64, n_ff 128 -> no K-quant fits; llama.cpp substitutes per type.
  const std::string src = synth_model_file("llama", "tiny", DType::F32, 0, "mix-tiny-f32.gguf");
  auto q = quantize(src, "Q4_K_M", "mix-tiny-q4km.gguf");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(type_of(*q, "blk.0.attn_q.weight"), DType::Q5_0);
  EXPECT_EQ(type_of(*q, "blk.0.attn_v.weight"), DType::Q5_0);  // 2 layers: use_more_bits(0, 2) is false
  EXPECT_EQ(type_of(*q, "blk.1.attn_v.weight"), DType::Q8_0);  // Q6_K (last layer) -> Q8_0
  EXPECT_EQ(type_of(*q, "output.weight"), DType::Q8_0);
  auto q5 = quantize(src, "Q5_K_S", "mix-tiny-q5ks.gguf");
  ASSERT_NE(q5, nullptr);
  EXPECT_EQ(type_of(*q5, "blk.1.attn_q.weight"), DType::Q5_1);
  EXPECT_EQ(q5->get_int("general.file_type"), 16);
  auto f16 = quantize(src, "F16", "mix-tiny-f16.gguf");
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(type_of(*f16, "output.weight"), DType::F16);
  EXPECT_EQ(type_of(*f16, "blk.0.attn_norm.weight"), DType::F32);
  EXPECT_EQ(f16->get_int("general.file_type"), 1);
}

TEST(QuantizeTest, Iq4MixesMatchLlamaCpp) {
  // small: 8 layers of 256-value rows, 8 heads on 4 K/V heads (n_gqa 2).
  const std::string src = synth_model_file("llama", "small", DType::F32, 8, "mix-small-f32.gguf");
  auto xs = quantize(src, "IQ4_XS", "mix-small-iq4xs.gguf");
  ASSERT_NE(xs, nullptr);
  EXPECT_EQ(xs->get_int("general.file_type"), 30);
  EXPECT_EQ(type_of(*xs, "output.weight"), DType::Q6_K);
  EXPECT_EQ(type_of(*xs, "token_embd.weight"), DType::IQ4_XS);
  EXPECT_EQ(type_of(*xs, "blk.0.ffn_down.weight"), DType::Q5_K);  // first eighth, no imatrix
  EXPECT_EQ(type_of(*xs, "blk.1.ffn_down.weight"), DType::IQ4_XS);
  EXPECT_EQ(type_of(*xs, "blk.0.attn_v.weight"), DType::IQ4_XS);  // n_gqa 2 < 4
  EXPECT_EQ(type_of(*xs, "blk.5.attn_q.weight"), DType::IQ4_XS);

  // tiny: 64-value rows hold no 256-value block: IQ4_XS falls back to IQ4_NL, Q5_K to Q5_1.
  const std::string tiny = synth_model_file("llama", "tiny", DType::F32, 0, "mix-tiny-f32.gguf");
  auto nl = quantize(tiny, "iq4_nl", "mix-tiny-iq4nl.gguf");
  ASSERT_NE(nl, nullptr);
  EXPECT_EQ(nl->get_int("general.file_type"), 25);
  EXPECT_EQ(type_of(*nl, "blk.1.attn_q.weight"), DType::IQ4_NL);
  EXPECT_EQ(type_of(*nl, "blk.0.ffn_down.weight"), DType::IQ4_NL);  // 2 layers: 0 < 2 / 8 is false
  EXPECT_EQ(type_of(*nl, "output.weight"), DType::Q8_0);
  EXPECT_EQ(quant::fallback_type(DType::IQ4_XS, 64), DType::IQ4_NL);
  EXPECT_EQ(quant::fallback_type(DType::IQ4_NL, 48), DType::F16);

  // Grouped-query attention with 4 or more query heads per K/V head keeps attn_v in Q5_K.
  quant::MixModel model;
  model.arch = "qwen2";
  model.n_layer = 28;
  model.n_head = 12;
  model.n_head_kv = 2;
  quant::MixTensor v;
  v.name = "blk.0.attn_v.weight";
  v.ne = {1536, 256, 1, 1};
  const quant::MixResult r = quant::mix_types(ftype("IQ4_XS"), model, std::span<const quant::MixTensor>(&v, 1));
  ASSERT_EQ(r.types.size(), 1u);
  EXPECT_EQ(r.types[0], DType::Q5_K);
}

// RMS of (dequantized - original) over RMS of the original, over every tensor stored in `base`.
double relative_rmse(const gguf::GgufFile& orig, const gguf::GgufFile& q, DType base) {
  double err = 0.0, ref = 0.0;
  for (const gguf::TensorInfo& t : q.tensors()) {
    if (t.view.dtype != base) continue;
    const gguf::TensorInfo* o = orig.find_tensor(t.view.name);
    EXPECT_NE(o, nullptr);
    std::vector<float> a(static_cast<size_t>(t.view.ne[0]));
    const auto* of = static_cast<const float*>(o->view.data);
    for (int64_t r = 0; r < t.view.n_rows(); ++r) {
      quant::dequantize_row(t.view.dtype, t.view.row(r), a.data(), t.view.ne[0]);
      for (int64_t j = 0; j < t.view.ne[0]; ++j) {
        const double x = of[r * t.view.ne[0] + j];
        err += (a[static_cast<size_t>(j)] - x) * (a[static_cast<size_t>(j)] - x);
        ref += x * x;
      }
    }
  }
  return std::sqrt(err / ref);
}

TEST(QuantizeTest, PerTypeErrorBoundsAgainstF32) {
  const std::string src = synth_model_file("llama", "small", DType::F32, 2, "err-small-f32.gguf");
  auto orig = gguf::GgufFile::open(src);
  ASSERT_TRUE(orig.has_value());
  // Gaussian weights: bits per weight set the error (Q8_0 ~ 0.4%, Q4_0 ~ 10%).
  const struct {
    const char* type;
    DType base;
    double bound;
  } cases[] = {{"Q8_0", DType::Q8_0, 0.006}, {"Q6_K", DType::Q6_K, 0.03}, {"Q5_K_M", DType::Q5_K, 0.05},
               {"Q4_K_M", DType::Q4_K, 0.10}, {"Q4_0", DType::Q4_0, 0.12}};
  double previous = 0.0;
  for (const auto& c : cases) {
    auto q = quantize(src, c.type, std::string("err-") + c.type + ".gguf");
    ASSERT_NE(q, nullptr);
    const double e = relative_rmse(**orig, *q, c.base);
    EXPECT_LT(e, c.bound) << c.type;
    EXPECT_GT(e, previous) << c.type << " should lose more than the type before it";
    previous = e;
  }
}

TEST(QuantizeTest, QuantizedModelLoadsAndRunsCloseToF32) {
  const std::string src = synth_model_file("qwen2", "small", DType::F32, 2, "run-qwen2-f32.gguf");
  const std::vector<int32_t> tokens = {1, 17, 300, 4000, 25, 9, 1234, 77};
  const std::vector<float> ref = model_logits(src, tokens);
  for (const auto& [type, bound] :
       {std::pair{"Q8_0", 0.03}, std::pair{"Q4_K_M", 0.25}, std::pair{"IQ4_XS", 0.25}, std::pair{"IQ4_NL", 0.25}}) {
    const std::string out = std::string("run-qwen2-") + type + ".gguf";
    auto q = quantize(src, type, out);
    ASSERT_NE(q, nullptr);
    const std::vector<float> got = model_logits(tmp_path(out), tokens);
    const double diff = testing::max_rel_diff(got, ref);
    RecordProperty(type, std::to_string(diff));
    EXPECT_LT(diff, bound) << type;
  }
}

TEST(QuantizeTest, Iq3MixesWriteTheCodebookTypesAndRun) {
  // llama.cpp's IQ3_S / IQ3_XS / IQ3_M mixes on qwen2 small (n_gqa 2): IQ3_S everywhere the mix does
  // not raise, IQ3_XXS on attn_q/attn_k for IQ3_XS, Q4_K on attn_v/attn_output for IQ3_M. IQ3_XXS
  // needs an imatrix (llama.cpp refuses it without): a flat one here.
  const std::string src = synth_model_file("qwen2", "small", DType::F32, 2, "iq3-qwen2-f32.gguf");
  convert::ImportanceMap flat;
  {
    auto in = gguf::GgufFile::open(src);
    ASSERT_TRUE(in.has_value());
    for (const gguf::TensorInfo& t : (*in)->tensors())
      if (t.view.n_dims >= 2) flat[t.view.name] = std::vector<float>(static_cast<size_t>(t.view.ne[0] * t.view.ne[2]), 1.f);
  }
  const std::vector<int32_t> tokens = {1, 17, 300, 4000, 25, 9, 1234, 77};
  const std::vector<float> ref = model_logits(src, tokens);
  const struct {
    const char* type;
    DType attn_q, attn_v, attn_output;
  } cases[] = {{"IQ3_S", DType::IQ3_S, DType::IQ3_S, DType::IQ3_S},
               {"IQ3_XS", DType::IQ3_XXS, DType::IQ3_S, DType::IQ3_S},
               {"IQ3_M", DType::IQ3_S, DType::Q4_K, DType::Q4_K}};
  for (const auto& c : cases) {
    const std::string out = std::string("iq3-qwen2-") + c.type + ".gguf";
    auto q = quantize(src, c.type, out, nullptr, nullptr, std::string(c.type) == "IQ3_XS" ? &flat : nullptr);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(type_of(*q, "blk.1.attn_q.weight"), c.attn_q) << c.type;
    EXPECT_EQ(type_of(*q, "blk.1.attn_v.weight"), c.attn_v) << c.type;
    EXPECT_EQ(type_of(*q, "blk.1.attn_output.weight"), c.attn_output) << c.type;
    EXPECT_EQ(type_of(*q, "blk.1.ffn_up.weight"), DType::IQ3_S) << c.type;
    EXPECT_EQ(type_of(*q, "output.weight"), DType::Q6_K) << c.type;
    const double diff = testing::max_rel_diff(model_logits(tmp_path(out), tokens), ref);
    RecordProperty(c.type, std::to_string(diff));
    EXPECT_LT(diff, 0.5) << c.type;
  }
}

TEST(QuantizeTest, Iq1NeedsAnImatrixAndSaysForWhichTensor) {
  const std::string src = synth_model_file("qwen2", "small", DType::F32, 2, "iq1-qwen2-f32.gguf");
  auto in = gguf::GgufFile::open(src);
  ASSERT_TRUE(in.has_value());
  for (const char* type : {"IQ1_S", "IQ1_M"}) {
    convert::QuantizeOptions o;
    o.ftype = ftype(type);
    const std::string out = tmp_path(std::string("iq1-refused-") + type + ".gguf");
    std::remove(out.c_str());
    auto r = convert::quantize_model(**in, out, o);
    ASSERT_FALSE(r.has_value()) << type;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    const std::string msg = r.status().to_string();
    EXPECT_NE(msg.find("blk.0.attn_k.weight"), std::string::npos) << msg;  // the first IQ1 tensor in llama's order
    EXPECT_NE(msg.find(dtype_name(o.ftype.base)), std::string::npos) << msg;
    EXPECT_NE(msg.find("--imatrix"), std::string::npos) << msg;
    FILE* f = std::fopen(out.c_str(), "rb");
    EXPECT_EQ(f, nullptr) << "refused before any work: no output file";
    if (f) std::fclose(f);
  }
}

// quantize (convert/), plan (plan/) and synth (model/) read one file-type table and one mix
// (quant/ftype.h); these catch any of them growing its own copy again.
TEST(QuantizeTest, PlanPredictsTheTypesAndBytesQuantizeWrites) {
  const struct {
    const char* arch;
    const char* preset;
    int64_t n_layer;
  } models[] = {{"qwen2", "small", 4}, {"deepseek2", "tiny", 3}, {"llama", "small", 8}};
  for (const auto& m : models) {
    const std::string src = synth_model_file(m.arch, m.preset, DType::F32, m.n_layer, std::string("drift-") + m.arch + ".gguf");
    auto desc = plan::model_from_gguf(src);
    ASSERT_TRUE(desc.has_value()) << desc.status().to_string();
    for (const char* type : {"Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"}) {
      auto q = quantize(src, type, std::string("drift-") + m.arch + "-" + type + ".gguf");
      ASSERT_NE(q, nullptr);
      plan::PlanOptions o;
      o.quant = *plan::parse_quant(type);
      const std::vector<DType> predicted = plan::tensor_dtypes(o.quant, *desc);
      ASSERT_EQ(predicted.size(), desc->tensors.size());
      for (size_t i = 0; i < predicted.size(); ++i)
        EXPECT_EQ(type_of(*q, desc->tensors[i].name), predicted[i]) << m.arch << " " << type << " " << desc->tensors[i].name;
      uint64_t written = 0;
      for (const gguf::TensorInfo& t : q->tensors()) written += t.n_bytes;
      EXPECT_EQ(plan::size_model(*desc, o).weight_bytes, written) << m.arch << " " << type;
    }
  }
}

TEST(QuantizeTest, SynthNamesTheFileTypeOfTheTable) {
  auto id = [](const char* name) { return static_cast<uint32_t>(quant::find_file_type(name)->id); };
  EXPECT_EQ(llama_file_type(DType::Q4_K, DType::Q6_K), id("Q4_K_M"));
  EXPECT_EQ(llama_file_type(DType::Q4_K, DType::Q4_K), id("Q4_K_S"));
  EXPECT_EQ(llama_file_type(DType::Q3_K, DType::Q6_K), id("Q3_K_M"));
  EXPECT_EQ(llama_file_type(DType::Q3_K, DType::Q3_K), id("Q3_K_S"));
  EXPECT_EQ(llama_file_type(DType::Q2_K, DType::Q6_K), id("Q2_K"));
  EXPECT_EQ(llama_file_type(DType::F32, DType::F32), id("F32"));
  // Every base type of the table maps back to a row with that base.
  for (const quant::FileType& f : quant::file_types()) {
    const uint32_t got = llama_file_type(f.base, f.base);
    bool found = false;
    for (const quant::FileType& g : quant::file_types()) found = found || (static_cast<uint32_t>(g.id) == got && g.base == f.base);
    EXPECT_TRUE(found) << f.name;
  }
}

TEST(QuantizeTest, RequantizingWarnsAndImatrixShapesAreChecked) {
  const std::string src = synth_model_file("llama", "tiny", DType::Q8_0, 0, "requant-q8.gguf");
  convert::QuantizeReport report;
  std::vector<std::string> warnings;
  auto q = quantize(src, "Q4_0", "requant-q4_0.gguf", &report, &warnings);
  ASSERT_NE(q, nullptr);
  EXPECT_GT(report.n_requantized, 0);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings.front().find("requantiz"), std::string::npos);

  auto in = gguf::GgufFile::open(src);
  ASSERT_TRUE(in.has_value());
  convert::ImportanceMap im;
  im["blk.0.attn_q.weight"] = std::vector<float>(3, 1.0f);  // wrong size: 64 columns
  convert::QuantizeOptions o;
  o.ftype = ftype("Q4_0");
  o.imatrix = &im;
  auto r = convert::quantize_model(**in, tmp_path("requant-bad-imatrix.gguf"), o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidFile);
}

TEST(QuantizeTest, LowBitIQuantsNeedAnImatrixAndRunWithOne) {
  const std::string src = synth_model_file("qwen2", "small", DType::F32, 2, "iq2-src-f32.gguf");
  auto in = gguf::GgufFile::open(src);
  ASSERT_TRUE(in.has_value());
  for (const char* type : {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M"}) {
    convert::QuantizeOptions o;
    o.ftype = ftype(type);
    const std::string out = tmp_path(std::string("iq2-no-imatrix-") + type + ".gguf");
    std::remove(out.c_str());
    auto r = convert::quantize_model(**in, out, o);
    ASSERT_FALSE(r.has_value()) << type;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << type;
    // The first tensor in llama.cpp's order that the mix makes IQ2_*, named with its type.
    EXPECT_NE(r.status().message().find("blk.0."), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("needs an importance matrix for iq2_"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("--imatrix FILE"), std::string::npos) << r.status().message();
    EXPECT_FALSE(std::ifstream(out).good()) << "nothing is written before the check: " << type;
  }
  // With importance for every matrix (all ones here) the 7-sign-bit types, whose mix needs no
  // IQ3_S, write a file that runs near the original (2-bit rows of random weights: loosely).
  convert::ImportanceMap im;
  for (const gguf::TensorInfo& t : (*in)->tensors())
    if (quant::is_quantizable({t.view.name, t.view.ne, t.view.dtype}))
      im[t.view.name] = std::vector<float>(static_cast<size_t>(t.view.ne[0] * t.view.ne[2]), 1.0f);
  const std::vector<int32_t> tokens = {1, 17, 300, 4000, 25, 9, 1234, 77};
  const std::vector<float> want = model_logits(src, tokens);
  for (const char* type : {"IQ2_XXS", "IQ2_XS"}) {
    convert::QuantizeOptions o;
    o.ftype = ftype(type);
    o.imatrix = &im;
    const std::string out = tmp_path(std::string("iq2-") + type + ".gguf");
    auto r = convert::quantize_model(**in, out, o);
    ASSERT_TRUE(r.has_value()) << type << ": " << r.status().to_string();
    EXPECT_GT(r->type_counts[type == std::string("IQ2_XXS") ? "iq2_xxs" : "iq2_xs"], 0) << type;
    const std::vector<float> got = model_logits(out, tokens);
    const double diff = testing::max_rel_diff(got, want);
    RecordProperty(type, std::to_string(diff));
    EXPECT_LT(diff, 1.0) << type;
  }
}

}  // namespace
}  // namespace fathom
