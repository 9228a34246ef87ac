// The model hub's pieces without a network: model names, repository listings, file selection,
// the store's manifests and sha256. tests/hub/pull_test.py runs `fathom pull` end to end.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "hub/catalogue.h"
#include "hub/pull.h"
#include "hub/sha256.h"
#include "hub/store.h"

namespace fathom::hub {
namespace {

TEST(ModelRef, CatalogueNamesAndRepositories) {
  auto r = parse_model_ref("deepseek-r1:1.5b");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF");
  EXPECT_EQ(r->quant, "Q4_K_M");
  EXPECT_EQ(r->name, "deepseek-r1:1.5b");
  r = parse_model_ref("hf.co/bartowski/Some-Model-GGUF:Q8_0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "bartowski/Some-Model-GGUF");
  EXPECT_EQ(r->quant, "Q8_0");
  EXPECT_EQ(r->name, "bartowski/Some-Model-GGUF:Q8_0");
  r = parse_model_ref("org/repo:sub/dir/m-Q2_K.gguf");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->file, "sub/dir/m-Q2_K.gguf");
  EXPECT_TRUE(r->quant.empty());
  r = parse_model_ref("org/repo");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "org/repo");
  EXPECT_TRUE(r->quant.empty() && r->file.empty());
  for (const char* bad : {"org/../x", "org/repo:../x.gguf", "../repo", "org/re po", "org/repo:Q4 K", "org/repo:/abs.gguf"})
    EXPECT_FALSE(parse_model_ref(bad)) << bad;
  auto unknown = parse_model_ref("deepseek-r9");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("deepseek-r1:7b"), std::string::npos);
  for (const CatalogueEntry& e : catalogue()) EXPECT_TRUE(parse_model_ref(e.name)) << e.name;
}

std::vector<RepoFile> files(std::initializer_list<const char*> paths) {
  std::vector<RepoFile> out;
  for (const char* p : paths) out.push_back({p, 100, ""});
  return out;
}

std::vector<std::string> selected(const std::vector<RepoFile>& all, const std::string& ref_text) {
  auto ref = parse_model_ref(ref_text);
  EXPECT_TRUE(ref);
  auto got = select_files(all, *ref);
  if (!got) return {"error: " + got.status().message()};
  std::vector<std::string> names;
  for (const RepoFile& f : *got) names.push_back(f.path);
  return names;
}

TEST(SelectFiles, QuantizationsFilesAndSplitModels) {
  const auto repo = files({"README.md", "M-Q4_K_M.gguf", "M-Q4_K_S.gguf", "M-Q8_0.gguf", "M-IQ2_XXS.gguf",
                           "Q2_K/M-Q2_K-00002-of-00002.gguf", "Q2_K/M-Q2_K-00001-of-00002.gguf"});
  EXPECT_EQ(selected(repo, "o/r:Q4_K_M"), std::vector<std::string>{"M-Q4_K_M.gguf"});
  EXPECT_EQ(selected(repo, "o/r:q8_0"), std::vector<std::string>{"M-Q8_0.gguf"});
  EXPECT_EQ(selected(repo, "o/r"), std::vector<std::string>{"M-Q4_K_M.gguf"});  // the default quant
  EXPECT_EQ(selected(repo, "o/r:Q2_K"), (std::vector<std::string>{"Q2_K/M-Q2_K-00001-of-00002.gguf", "Q2_K/M-Q2_K-00002-of-00002.gguf"}));
  EXPECT_EQ(selected(repo, "o/r:Q2_K/M-Q2_K-00002-of-00002.gguf"),
            (std::vector<std::string>{"Q2_K/M-Q2_K-00001-of-00002.gguf", "Q2_K/M-Q2_K-00002-of-00002.gguf"}));
  const std::string missing = selected(repo, "o/r:Q5_K_M").front();
  EXPECT_NE(missing.find("no Q5_K_M file; its quantizations: IQ2_XXS, Q2_K, Q4_K_M, Q4_K_S, Q8_0"), std::string::npos) << missing;
  EXPECT_EQ(selected(files({"only.gguf"}), "o/r"), std::vector<std::string>{"only.gguf"});
  EXPECT_NE(selected(files({"a-00001-of-00003.gguf", "a-00003-of-00003.gguf"}), "o/r").front().find("missing"), std::string::npos);
  EXPECT_NE(selected(files({"a-Q8_0.gguf", "b-Q8_0.gguf"}), "o/r:Q8_0").front().find("name one file"), std::string::npos);
}

TEST(RepoInfo, ParsesTheBlobsListingAndRefusesBadEntries) {
  const std::string sha(64, 'a');
  auto info = parse_repo_info(R"({"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
      {"rfilename":"README.md"},
      {"rfilename":"m.gguf","size":1234,"lfs":{"sha256":")" + sha + R"(","size":1234}}]})");
  ASSERT_TRUE(info) << info.status().to_string();
  EXPECT_EQ(info->revision, "0123456789abcdef0123456789abcdef01234567");
  ASSERT_EQ(info->files.size(), 1u);
  EXPECT_EQ(info->files[0].size, 1234u);
  EXPECT_EQ(info->files[0].sha256, sha);
  EXPECT_EQ(parse_repo_info(R"({"siblings":[]})")->revision, "main");
  for (const std::string& bad : {std::string("[]"), std::string(R"({"siblings":[{"rfilename":"m.gguf"}]})"),
                                std::string(R"({"siblings":[{"rfilename":"../m.gguf","size":1}]})"),
                                std::string(R"({"siblings":[{"rfilename":"m.gguf","size":1,"lfs":{"sha256":"xyz"}}]})"),
                                std::string(R"({"siblings":[{"rfilename":"m.gguf","size":4398046511105}]})")})
    EXPECT_FALSE(parse_repo_info(bad)) << bad;
}

TEST(Sha256, KnownDigests) {
  Sha256 h;
  EXPECT_EQ(h.hex_digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.update("ab", 2);
  h.update("c", 1);
  EXPECT_EQ(h.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ModelStore, RootManifestsListFindRemove) {
  EXPECT_EQ(*store_root("/m", "/x", "/h"), "/m");
  EXPECT_EQ(*store_root("", "/x", "/h"), "/x/fathom/models");
  EXPECT_EQ(*store_root(nullptr, nullptr, "/h"), "/h/.cache/fathom/models");
  EXPECT_FALSE(store_root(nullptr, "", nullptr));

  const std::string root = std::string(FATHOM_TEST_TMP) + "/hub-store";
  std::filesystem::remove_all(root);
  const ModelStore store(root);
  EXPECT_EQ(store.model_dir("org/repo:Q4_K_M"), root + "/org%2Frepo%3AQ4_K_M");
  EXPECT_EQ(store.model_dir(".."), root + "/%2E.");
  Manifest m{"deepseek-r1:1.5b", "o/r", "main", "Q4_K_M", "http://x", 1700000000, {{"m.gguf", "m.gguf", 5, std::string(64, 'b')}}};
  std::filesystem::create_directories(store.model_dir(m.name));
  ASSERT_TRUE(store.install(m));
  std::filesystem::create_directories(store.model_dir("in-progress"));  // no manifest: not listed
  auto list = store.list();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].files[0].size, 5u);
  EXPECT_EQ(store.model_path(**store.find("deepseek-r1:1.5b")), store.model_dir(m.name) + "/m.gguf");
  EXPECT_FALSE(*store.find("other"));
  std::ofstream(store.model_dir(m.name) + "/manifest.json") << R"({"name":"deepseek-r1:1.5b","files":[]})";
  auto bad = store.find("deepseek-r1:1.5b");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("fathom rm"), std::string::npos);
  EXPECT_TRUE(store.remove("deepseek-r1:1.5b"));
  EXPECT_FALSE(std::filesystem::exists(store.model_dir(m.name)));
  EXPECT_EQ(store.remove("deepseek-r1:1.5b").code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace fathom::hub
