// Helpers shared by the convert tests: temp paths, synth models, logits of a model on fixed
// tokens, and a tiny byte-level BPE tokenizer.json for handmade Hugging Face checkpoints.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/synth.h"

namespace fathom::testing {

inline std::string tmp_path(const std::string& name) { return std::string(FATHOM_TEST_TMP) + "/convert-" + name; }

inline std::string synth_model_file(const std::string& arch, const std::string& preset, DType type, int64_t n_layer,
                                    const std::string& name) {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dtype = type;
  o.seed = 11;
  if (n_layer > 0) o.n_layer = n_layer;
  const std::string path = tmp_path(name);
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

// Logits of every position of `tokens` (one sequence), [n_tokens, n_vocab].
inline std::vector<float> model_logits(const std::string& path, const std::vector<int32_t>& tokens) {
  LoadOptions lo;
  lo.n_threads = 2;
  auto m = Model::load(path, lo);
  EXPECT_TRUE(m.has_value()) << m.status().to_string();
  if (!m) return {};
  const KvCacheShape shape = (*m)->kv_shape(static_cast<int64_t>(tokens.size()));
  KvCache kv(shape, static_cast<int32_t>((tokens.size() + shape.block_size - 1) / shape.block_size));
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, true);
  std::vector<float> logits;
  const Status st = (*m)->forward(b, kv, logits);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return logits;
}

// Max |a - b| over max |b|.
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0.0, ref = 1e-9;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    ref = std::max(ref, std::fabs(static_cast<double>(b[i])));
  }
  return diff / ref;
}

// GPT-2's byte -> printable character map, as byte-level BPE vocabularies spell bytes.
inline std::string byte_char(int b) {
  auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      if (!printable(c)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// A byte-level BPE tokenizer.json with n_vocab ids: 256 byte tokens, merges of letter pairs, and
// three DeepSeek-style special tokens at the end; the DeepSeek-V3 pre-tokenizer.
inline void write_tiny_tokenizer(const std::string& dir, int64_t n_vocab) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  nlohmann::json merges = nlohmann::json::array();
  int64_t id = 256;
  const std::string letters = "etaoinshrdlu";
  for (char a : letters)
    for (char c : letters) {
      if (id >= n_vocab - 3) break;
      const std::string m = std::string(1, a) + std::string(1, c);
      if (vocab.contains(m)) continue;
      vocab[m] = id++;
      merges.push_back(std::string(1, a) + " " + std::string(1, c));
    }
  for (; id < n_vocab - 3; ++id) vocab["<filler" + std::to_string(id) + ">"] = id;
  const char* specials[] = {"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                            "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "<|user|>"};
  nlohmann::json added = nlohmann::json::array();
  for (int i = 0; i < 3; ++i)
    added.push_back({{"id", n_vocab - 3 + i}, {"content", specials[i]}, {"special", i < 2}, {"normalized", false}});
  nlohmann::json pre = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}},
                          {{"type", "Split"}, {"pattern", {{"Regex", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"}}}, {"behavior", "Isolated"}},
                          {{"type", "Split"},
                           {"pattern",
                            {{"Regex", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
                                       "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}}},
                           {"behavior", "Isolated"}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  nlohmann::json tj = {{"version", "1.0"}, {"added_tokens", added}, {"pre_tokenizer", pre},
                       {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  std::ofstream(dir + "/tokenizer.json") << tj.dump();
  nlohmann::json tc = {{"add_bos_token", true}, {"add_eos_token", false},
                       {"bos_token", {{"content", specials[0]}}}, {"eos_token", specials[1]},
                       {"chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}"}};
  std::ofstream(dir + "/tokenizer_config.json") << tc.dump();
}

}  // namespace fathom::testing
