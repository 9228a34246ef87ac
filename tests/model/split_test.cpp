// A model written as llama.cpp-style split GGUF parts loads as one model: the same tensors,
// bytes and logits as the same weights in one file.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"

namespace fathom {
namespace {

std::string tmp_path(const std::string& name) { return std::string(FATHOM_TEST_TMP) + "/" + name; }

// Logits of every position of a short prompt, one forward pass.
std::vector<float> prompt_logits(const std::string& path) {
  auto model = Model::load(path, LoadOptions{1});
  EXPECT_TRUE(model) << model.status().to_string();
  if (!model) return {};
  KvCache kv((*model)->kv_shape(64), 16);
  Batch b;
  const int64_t n_vocab = (*model)->config().n_vocab;
  for (int32_t i = 0; i < 9; ++i) b.add(static_cast<int32_t>((i * 37 + 5) % n_vocab), i, 0, true);
  std::vector<float> logits;
  EXPECT_TRUE((*model)->forward(b, kv, logits).is_ok());
  return logits;
}

class SplitModel : public ::testing::TestWithParam<const char*> {};

TEST_P(SplitModel, LoadsWithIdenticalLogits) {
  const std::string arch = GetParam();
  SynthOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.dtype = DType::Q8_0;
  const std::string single = tmp_path("split-" + arch + ".gguf");
  ASSERT_TRUE(synth_model(o, single).is_ok());
  o.n_split = 3;
  const std::string prefix = tmp_path("split-" + arch + "-parts");
  ASSERT_TRUE(synth_model(o, prefix + ".gguf").is_ok());
  const std::string first = gguf::split_path(prefix, 0, 3);

  auto one = gguf::GgufFile::open(single);
  auto parts = gguf::GgufFile::open(first);
  ASSERT_TRUE(one && parts) << (one ? parts.status().to_string() : one.status().to_string());
  EXPECT_EQ((*parts)->split_count(), 3);
  ASSERT_EQ((*one)->tensors().size(), (*parts)->tensors().size());
  for (const gguf::TensorInfo& t : (*one)->tensors()) {
    const gguf::TensorInfo* p = (*parts)->find_tensor(t.view.name);
    ASSERT_NE(p, nullptr) << t.view.name;
    ASSERT_EQ(p->n_bytes, t.n_bytes);
    EXPECT_EQ(std::memcmp(p->view.data, t.view.data, t.n_bytes), 0) << t.view.name;
  }
  // Every part holds some of the tensors; the metadata is in the first only.
  for (int i = 1; i < 3; ++i) {
    auto mapped = MappedFile::open(gguf::split_path(prefix, i, 3));
    ASSERT_TRUE(mapped);
    auto part = gguf::GgufFile::parse(std::move(mapped).value());
    ASSERT_TRUE(part);
    EXPECT_FALSE((*part)->tensors().empty());
    EXPECT_EQ((*part)->architecture(), "");
    EXPECT_EQ((*part)->get_int(gguf::kSplitNoKey), i);
  }
  const std::vector<float> a = prompt_logits(single), b = prompt_logits(first);
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, SplitModel, ::testing::Values("llama", "deepseek2"));

TEST(SplitModel, PartsOtherThanTheFirstAndMissingPartsAreClearErrors) {
  SynthOptions o;
  o.n_split = 2;
  const std::string prefix = tmp_path("split-errors");
  ASSERT_TRUE(synth_model(o, prefix + ".gguf").is_ok());
  auto second = gguf::GgufFile::open(gguf::split_path(prefix, 1, 2));
  ASSERT_FALSE(second);
  EXPECT_NE(second.status().message().find("part 2 of 2 of a split model; open the first part"), std::string::npos)
      << second.status().message();
  std::remove(gguf::split_path(prefix, 1, 2).c_str());
  auto first = gguf::GgufFile::open(gguf::split_path(prefix, 0, 2));
  ASSERT_FALSE(first);
  EXPECT_NE(first.status().message().find("split-errors-00002-of-00002.gguf"), std::string::npos) << first.status().message();
  SynthOptions too_many;
  too_many.n_split = 10000;
  EXPECT_FALSE(synth_model(too_many, prefix + "-many.gguf"));
}

TEST(SplitPath, FollowsLlamaCppNaming) {
  EXPECT_EQ(gguf::split_path("dir/m", 0, 3), "dir/m-00001-of-00003.gguf");
  auto n = gguf::parse_split_path("dir/m-Q4_K_M-00002-of-00009.gguf");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->prefix, "dir/m-Q4_K_M");
  EXPECT_EQ(n->split_no, 1);
  EXPECT_EQ(n->split_count, 9);
  for (const char* bad : {"m.gguf", "m-00003-of-00002.gguf", "m-00000-of-00002.gguf", "m-0001-of-00002.gguf",
                          "-00001-of-00002.gguf", "m-00001-of-00002.bin", "m-0000a-of-00002.gguf"})
    EXPECT_FALSE(gguf::parse_split_path(bad)) << bad;
}

}  // namespace
}  // namespace fathom
