// Perplexity, KL divergence and importance-matrix collection on the trained stories260K model
// and synth models.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "convert/imatrix.h"
#include "convert/perplexity.h"
#include "convert/quantize.h"
#include "convert_test_util.h"
#include "core/mapped_file.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

using testing::tmp_path;

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. "
    "One day, Lily saw a big red ball under a tree. She wanted to play with the ball, but it was too high. "
    "Lily asked her mom for help. Her mom smiled and said, \"Let's get the ball together.\" "
    "They found a long stick and pushed the ball down. Lily was very happy. She said, \"Thank you, mom!\" "
    "Then Lily and her friends played with the ball all day. They laughed and ran in the sun. "
    "When it was time to go home, Lily gave her mom a big hug. She was happy to have such a good mom. "
    "Once upon a time, there was a little boy named Tom. Tom had a small dog named Max. Max liked to run and jump. "
    "One day, Tom and Max went to the park. They saw a big tree with a bird in it. The bird was sad because it "
    "could not fly. Tom wanted to help the bird. He gave the bird some food and water. The bird ate the food and "
    "felt better. Then the bird flew away. Tom and Max were happy. They went home and had a nice nap.";

std::unique_ptr<Model> load(const std::string& path) {
  LoadOptions lo;
  lo.n_threads = 2;
  auto m = Model::load(path, lo);
  EXPECT_TRUE(m.has_value()) << m.status().to_string();
  return m ? std::move(m).value() : nullptr;
}

TEST(PerplexityTest, StoriesModelIsFiniteAndSmall) {
  auto model = load(kStories);
  ASSERT_NE(model, nullptr);
  auto tok = Tokenizer::from_gguf(model->file());
  ASSERT_TRUE(tok.has_value());
  convert::EvalOptions o;
  o.n_ctx = 64;
  auto r = convert::perplexity(*model, **tok, kStory, o);
  ASSERT_TRUE(r.has_value()) << r.status().to_string();
  EXPECT_GE(r->n_chunks, 3);
  EXPECT_EQ(r->n_scored, r->n_chunks * (64 - 1 - 32));
  EXPECT_TRUE(std::isfinite(r->ppl));
  // A trained model on text like its training data: far below its 512-token vocabulary.
  EXPECT_GT(r->ppl, 1.0);
  EXPECT_LT(r->ppl, 30.0);
  EXPECT_GT(r->ppl_stderr, 0.0);
  // Too short for one chunk is a usage error.
  o.n_ctx = 4096;
  EXPECT_EQ(convert::perplexity(*model, **tok, kStory, o).status().code(), ErrorCode::kInvalidArgument);
}

TEST(PerplexityTest, KlOfAModelWithItselfIsZero) {
  auto a = load(kStories), b = load(kStories);
  ASSERT_TRUE(a && b);
  auto tok = Tokenizer::from_gguf(a->file());
  ASSERT_TRUE(tok.has_value());
  convert::EvalOptions o;
  o.n_ctx = 64;
  auto r = convert::kl_divergence(*a, *b, **tok, kStory, o);
  ASSERT_TRUE(r.has_value()) << r.status().to_string();
  EXPECT_LT(r->kl_mean, 1e-9);
  EXPECT_LT(r->kl_max, 1e-9);
  EXPECT_DOUBLE_EQ(r->top1_agree, 1.0);
  EXPECT_DOUBLE_EQ(r->ppl_ratio, 1.0);
}

TEST(PerplexityTest, KlOfAQuantizationIsSmallButPositive) {
  auto in = gguf::GgufFile::open(kStories);
  ASSERT_TRUE(in.has_value());
  convert::QuantizeOptions qo;
  qo.ftype = *quant::find_file_type("Q4_0");
  qo.n_threads = 2;
  ASSERT_TRUE(convert::quantize_model(**in, tmp_path("stories-q4_0.gguf"), qo).has_value());
  auto base = load(kStories), quant = load(tmp_path("stories-q4_0.gguf"));
  ASSERT_TRUE(base && quant);
  auto tok = Tokenizer::from_gguf(base->file());
  convert::EvalOptions o;
  o.n_ctx = 64;
  auto r = convert::kl_divergence(*base, *quant, **tok, kStory, o);
  ASSERT_TRUE(r.has_value()) << r.status().to_string();
  EXPECT_GT(r->kl_mean, 0.0);
  EXPECT_LT(r->kl_mean, 0.5);
  EXPECT_GT(r->top1_agree, 0.6);
  EXPECT_LE(r->kl_median, r->kl_p90);
  EXPECT_LE(r->kl_p99, r->kl_max);
  EXPECT_GT(r->ppl_ratio, 0.8);
  EXPECT_LT(r->ppl_ratio, 1.5);

  // Several models against one base in one pass give each model's own result.
  auto same = load(kStories);
  ASSERT_TRUE(same);
  auto both = convert::kl_divergence(*base, std::vector<Model*>{quant.get(), same.get()}, **tok, kStory, o);
  ASSERT_TRUE(both.has_value()) << both.status().to_string();
  ASSERT_EQ(both->size(), 2u);
  EXPECT_DOUBLE_EQ((*both)[0].kl_mean, r->kl_mean);
  EXPECT_DOUBLE_EQ((*both)[0].top1_agree, r->top1_agree);
  EXPECT_DOUBLE_EQ((*both)[0].ppl_ratio, r->ppl_ratio);
  EXPECT_LT((*both)[1].kl_mean, 1e-9);
  EXPECT_DOUBLE_EQ((*both)[1].top1_agree, 1.0);
}

TEST(ImatrixTest, CollectorRecordsSquaredInputsPerMatrix) {
  // A model file with a 3-D expert tensor: slices are attributed to their own matrix.
  gguf::GgufWriter w;
  w.set_string("general.architecture", "test");
  std::vector<uint8_t> bytes(4 * 3 * 2 * sizeof(float), 0);
  w.add_tensor_bytes("blk.0.ffn_up_exps.weight", DType::F32, {4, 3, 2}, bytes);
  auto mem = w.write_to_memory();
  ASSERT_TRUE(mem.has_value());
  auto file = gguf::GgufFile::parse(MappedFile::from_bytes(mem->data(), mem->size(), "mem.gguf"));
  ASSERT_TRUE(file.has_value()) << file.status().to_string();
  CpuBackend cpu(1);
  convert::ImatrixCollector col(cpu, **file);
  TensorView slice = (*file)->find_tensor("blk.0.ffn_up_exps.weight")->view;
  slice.ne = {4, 3, 1, 1};
  slice.n_dims = 2;
  slice.data = slice.row(3);  // expert 1
  const float x[8] = {1, 2, 3, 4, -1, 0, 1, 2};
  float y[6];
  col.matmul(slice, x, 2, y);
  const convert::ImatrixEntry& e = col.data().entries.at("blk.0.ffn_up_exps.weight");
  ASSERT_EQ(e.counts.size(), 2u);
  EXPECT_EQ(e.counts[0], 0.0);
  EXPECT_EQ(e.counts[1], 2.0);
  EXPECT_EQ(std::vector<double>(e.in_sum2.begin() + 4, e.in_sum2.end()), (std::vector<double>{2, 4, 10, 20}));
}

TEST(ImatrixTest, CollectWriteReadAndQuantizeWithIt) {
  convert::ImatrixOptions o;
  o.n_ctx = 64;
  o.n_chunks = 2;
  o.n_threads = 2;
  auto data = convert::collect_imatrix(kStories, kStory, o);
  ASSERT_TRUE(data.has_value()) << data.status().to_string();
  EXPECT_EQ(data->chunk_count, 2);
  const auto& q = data->entries.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.counts, std::vector<double>{128.0});
  for (double v : q.in_sum2) EXPECT_GT(v, 0.0);
  EXPECT_TRUE(data->entries.count("blk.4.ffn_down.weight"));
  EXPECT_FALSE(data->entries.count("output.weight"));  // llama.cpp skips it unless asked
  data->datasets.push_back("story.txt");
  for (const char* name : {"im.gguf", "im.dat"}) {
    ASSERT_TRUE(convert::write_imatrix(*data, tmp_path(name)).is_ok());
    auto back = convert::read_imatrix(tmp_path(name));
    ASSERT_TRUE(back.has_value()) << back.status().to_string();
    EXPECT_EQ(back->chunk_count, 2);
    const std::vector<float>& v = back->values.at("blk.0.attn_q.weight");
    ASSERT_EQ(v.size(), q.in_sum2.size());
    for (size_t j = 0; j < v.size(); ++j) EXPECT_NEAR(v[j], q.in_sum2[j] / 128.0, 1e-5 * (1 + q.in_sum2[j] / 128.0)) << name;
  }
  auto gg = gguf::GgufFile::open(tmp_path("im.gguf"));
  ASSERT_TRUE(gg.has_value());
  EXPECT_EQ(gg->get()->get_string("general.type"), "imatrix");
  EXPECT_EQ(gg->get()->find_tensor("blk.0.attn_q.weight.in_sum2")->view.ne[0], 64);
  // Quantizing with it uses the importance for every quantized matrix it covers.
  auto im = convert::read_imatrix(tmp_path("im.gguf"));
  auto in = gguf::GgufFile::open(kStories);
  convert::QuantizeOptions qo;
  qo.ftype = *quant::find_file_type("Q4_0");
  qo.imatrix = &im->values;
  auto r = convert::quantize_model(**in, tmp_path("stories-q4_0-im.gguf"), qo);
  ASSERT_TRUE(r.has_value()) << r.status().to_string();
  // attn_q/k/v/output, ffn_gate/up of 5 layers; ffn_down (172 columns) falls back to F16.
  EXPECT_EQ(r->n_with_imatrix, 5 * 6);
}

}  // namespace
}  // namespace fathom
