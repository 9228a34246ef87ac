// Tokenizer conformance: llama.cpp's vocab test vectors (GGUF), the DeepSeek-V3 HF tokenizer.json
// cases, the stories260K SentencePiece vocab, special tokens, decode round trips, UTF-8 streaming.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gguf/gguf.h"
#include "core/json_depth.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

const std::string kShared = FATHOM_SHARED_DIR;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// llama.cpp's test-tokenizer-0 convention: cases are separated by "\n__ggml_vocab_test__\n"; the
// file ends with a separator, so the text after the last one (empty) is not a case.
std::vector<std::string> split_cases(std::string text) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  size_t pos;
  while ((pos = text.find(sep)) != std::string::npos) {
    cases.push_back(text.substr(0, pos));
    text.erase(0, pos + sep.size());
  }
  return cases;
}

std::vector<std::vector<int32_t>> read_expected(const std::string& path) {
  std::vector<std::vector<int32_t>> out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (ls >> id) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

std::unique_ptr<Tokenizer> load_gguf(const std::string& path) {
  auto file = gguf::GgufFile::open(path);
  EXPECT_TRUE(file.has_value()) << file.status().to_string();
  if (!file) return nullptr;
  auto tok = Tokenizer::from_gguf(**file);
  EXPECT_TRUE(tok.has_value()) << tok.status().to_string();
  if (!tok) return nullptr;
  return std::move(*tok);
}

std::unique_ptr<Tokenizer> load_deepseek_v3() {
  const std::string dir = kShared + "/testdata/deepseek-v3/";
  auto tok = Tokenizer::from_hf_json(dir + "tokenizer.json", dir + "tokenizer_config.json");
  EXPECT_TRUE(tok.has_value()) << tok.status().to_string();
  return tok ? std::move(*tok) : nullptr;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, MatchesLlamaCppVectors) {
  const std::string base = kShared + "/testdata/vocab/ggml-vocab-" + GetParam() + ".gguf";
  auto tok = load_gguf(base);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->pre_tokenizer_name(), GetParam());
  const auto cases = split_cases(read_file(base + ".inp"));
  const auto expected = read_expected(base + ".out");
  ASSERT_EQ(cases.size(), expected.size());
  int passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto got = tok->encode(cases[i], /*add_bos=*/false, /*parse_special=*/false);
    if (got == expected[i]) {
      ++passed;
    } else {
      ADD_FAILURE() << "case " << i << " text [" << cases[i] << "]\n  expected: " << ids_to_string(expected[i])
                    << "\n  got:      " << ids_to_string(got);
    }
  }
  std::printf("[ vectors  ] %s: %d/%zu cases pass\n", GetParam().c_str(), passed, cases.size());
}

TEST_P(VocabVectors, DecodeRoundTrips) {
  const std::string base = kShared + "/testdata/vocab/ggml-vocab-" + GetParam() + ".gguf";
  auto tok = load_gguf(base);
  ASSERT_NE(tok, nullptr);
  for (const std::string& text : split_cases(read_file(base + ".inp"))) {
    EXPECT_EQ(tok->decode(tok->encode(text, false, false), false), text);
    EXPECT_EQ(tok->decode(tok->encode(text, true, true), false), text);
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, VocabVectors, ::testing::Values("deepseek-llm", "deepseek-coder", "qwen2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(DeepseekV3Json, MatchesEncodeCases) {
  auto tok = load_deepseek_v3();
  ASSERT_NE(tok, nullptr);
  const auto cases = nlohmann::json::parse(read_file(kShared + "/testdata/deepseek-v3/encode-cases.json"));
  int passed = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    // HF matches added tokens in the text regardless of add_special_tokens.
    const auto got = tok->encode(text, /*add_bos=*/false, /*parse_special=*/true);
    if (got == expected) {
      ++passed;
    } else {
      ADD_FAILURE() << "text [" << text << "]\n  expected: " << ids_to_string(expected)
                    << "\n  got:      " << ids_to_string(got);
    }
    EXPECT_EQ(tok->decode(got, true), text);
  }
  std::printf("[ vectors  ] deepseek-v3 encode-cases.json: %d/%zu cases pass\n", passed, cases.size());
}

TEST(DeepseekV3Json, ConfigAndSpecialTokens) {
  auto tok = load_deepseek_v3();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_TRUE(tok->is_end_of_generation(1));
  ASSERT_TRUE(tok->chat_template().has_value());
  EXPECT_EQ(tok->encode("hi", true, true).front(), 0);
  // Special text becomes the token only when parsing specials; otherwise it is plain text.
  const std::string bos_text = "<｜begin▁of▁sentence｜>";
  EXPECT_EQ(tok->encode(bos_text + "hi", false, true), (std::vector<int32_t>{0, tok->encode("hi", false, false)[0]}));
  const auto plain = tok->encode(bos_text, false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok->decode(plain, false), bos_text);
  EXPECT_EQ(tok->decode({0}, false), "");
  EXPECT_EQ(tok->decode({0}, true), bos_text);
}

TEST(Qwen2Gguf, SpecialTokens) {
  auto tok = load_gguf(kShared + "/testdata/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_NE(tok, nullptr);
  EXPECT_FALSE(tok->add_bos());
  const auto ids = tok->encode("<|im_start|>user\nhi<|im_end|>", false, true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids.back(), 151645);
  EXPECT_TRUE(tok->is_end_of_generation(151645));
  EXPECT_TRUE(tok->is_end_of_generation(151643));
  EXPECT_EQ(tok->decode(ids, true), "<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(tok->decode(ids, false), "user\nhi");
  const auto plain = tok->encode("<|im_start|>", false, false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok->token_id("<|im_start|>"), 151644);
  EXPECT_TRUE(tok->chat_template().has_value());
}

TEST(DeepseekLlmGguf, BosAndUserDefinedTokens) {
  auto tok = load_gguf(kShared + "/testdata/vocab/ggml-vocab-deepseek-llm.gguf");
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos_id(), 100000);
  EXPECT_EQ(tok->encode("Hello", true, false).front(), 100000);
  // User-defined tokens match even without parse_special, and decode as their raw text.
  EXPECT_EQ(tok->encode("ø", false, false), (std::vector<int32_t>{100002}));
  EXPECT_EQ(tok->decode({100002}, false), "ø");
  EXPECT_EQ(tok->encode("<｜begin▁of▁sentence｜>", false, true), (std::vector<int32_t>{100000}));
}

TEST(SpmStories260k, OnceUponATime) {
  auto tok = load_gguf(kShared + "/models/tinyllamas-stories-260k-f32.gguf");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->model_name(), "llama");
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_TRUE(tok->add_bos());
  const auto ids = tok->encode("Once upon a time", true, false);
  // llama.cpp gives the same ids for this vocab.
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->token_text(403), "▁Once");
  EXPECT_EQ(tok->decode(ids, false), "Once upon a time");
  EXPECT_EQ(tok->decode(ids, true), "<s> Once upon a time");
  EXPECT_EQ(tok->decode({403, 407}, false), "Once upon");
  EXPECT_TRUE(tok->is_end_of_generation(2));
}

TEST(SpmStories260k, ByteFallbackAndRoundTrip) {
  auto tok = load_gguf(kShared + "/models/tinyllamas-stories-260k-f32.gguf");
  ASSERT_NE(tok, nullptr);
  for (const std::string text : {"Hello world", "  two  spaces ", "naïve 🦙 日本", "Tom said: \"Hi!\"\n\nThe end."}) {
    const auto ids = tok->encode(text, true, false);
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < tok->n_vocab());
    EXPECT_EQ(tok->decode(ids, false), text);
  }
  // 🦙 is not in a 512-token vocab: four <0xXX> byte tokens.
  const auto llama = tok->encode("🦙", false, false);
  EXPECT_GE(llama.size(), 4u);
  EXPECT_EQ(tok->encode("", false, false).size(), 0u);
  EXPECT_EQ(tok->encode("", true, false), (std::vector<int32_t>{1}));
  EXPECT_EQ(tok->encode("<s>", false, true), (std::vector<int32_t>{1}));
}

TEST(Utf8StreamDecoder, HoldsSplitSequences) {
  Utf8StreamDecoder d;
  const std::string emoji = "🦙";  // F0 9F A6 99
  EXPECT_EQ(d.push(std::string("a").append(emoji, 0, 1)), "a");
  EXPECT_EQ(d.push(emoji.substr(1, 2)), "");
  EXPECT_EQ(d.push(emoji.substr(3) + "b"), emoji + "b");
  EXPECT_EQ(d.flush(), "");
  EXPECT_EQ(d.push("\xC3"), "");
  EXPECT_EQ(d.push("\xA9"), "é");
}

TEST(Utf8StreamDecoder, ReplacesInvalidBytes) {
  Utf8StreamDecoder d;
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(d.push("x\xFFy"), "x" + fffd + "y");
  EXPECT_EQ(d.push("\x80"), fffd);
  EXPECT_EQ(d.push("\xC0\xAF"), fffd + fffd);      // overlong
  EXPECT_EQ(d.push("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(d.push("\xE2\x82"), "");
  EXPECT_EQ(d.push("z"), fffd + fffd + "z");  // sequence broken by an ASCII byte
  EXPECT_EQ(d.push("\xE2\x82"), "");
  EXPECT_EQ(d.flush(), fffd);
  EXPECT_EQ(d.flush(), "");
}

TEST(Tokenizer, InvalidUtf8InputIsEncodedByteForByte) {
  auto tok = load_gguf(kShared + "/testdata/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_NE(tok, nullptr);
  const std::string text = "ok \xFF\xFE broken \xE2\x82 end";
  EXPECT_EQ(tok->decode(tok->encode(text, false, false), false), text);
}

TEST(Tokenizer, LoadErrorsNameTheProblem) {
  auto missing = Tokenizer::from_hf_json("/nonexistent/tokenizer.json", "");
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);
  gguf::GgufWriter writer;
  writer.set_string("tokenizer.ggml.model", "wordpiece");
  auto bytes = writer.write_to_memory();
  ASSERT_TRUE(bytes.has_value()) << bytes.status().to_string();
  const std::string path = std::string(FATHOM_TEST_TMP) + "/bad-model.gguf";
  ASSERT_TRUE(writer.write(path).is_ok());
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file.has_value()) << file.status().to_string();
  auto tok = Tokenizer::from_gguf(**file);
  ASSERT_FALSE(tok.has_value());
  EXPECT_NE(tok.status().message().find("wordpiece"), std::string::npos);
  EXPECT_NE(tok.status().message().find("gpt2, llama"), std::string::npos);

  gguf::GgufWriter writer2;
  writer2.set_string("tokenizer.ggml.model", "gpt2");
  writer2.set_string("tokenizer.ggml.pre", "mystery");
  writer2.set("tokenizer.ggml.tokens", gguf::Value::make_string_array({"a", "b"}));
  writer2.set("tokenizer.ggml.merges", gguf::Value::make_string_array({"a b"}));
  ASSERT_TRUE(writer2.write(path).is_ok());
  auto file2 = gguf::GgufFile::open(path);
  ASSERT_TRUE(file2.has_value()) << file2.status().to_string();
  auto tok2 = Tokenizer::from_gguf(**file2);
  ASSERT_FALSE(tok2.has_value());
  EXPECT_EQ(tok2.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(tok2.status().message().find("mystery"), std::string::npos);
  EXPECT_NE(tok2.status().message().find("deepseek-v3"), std::string::npos);
}

// A hand-written tokenizer.json: byte-level BPE over "a", "b", " " with added tokens that use
// HF's lstrip/rstrip, a literal Split pattern, and a config whose BOS is a plain string.
TEST(HfJson, AddedTokenStripAndConfig) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/hf-mini";
  std::filesystem::create_directories(dir);
  nlohmann::json doc = {
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"\u0120", 2}, {"ab", 3}, {"\u0120ab", 4}}},
        {"merges", {"a b", "\u0120 ab"}}}},
      {"added_tokens",
       {{{"id", 5}, {"content", "<L>"}, {"special", true}, {"lstrip", true}, {"rstrip", false}},
        {{"id", 6}, {"content", "<R>"}, {"special", false}, {"lstrip", false}, {"rstrip", true}},
        {{"id", 7}, {"content", "<s>"}, {"special", true}}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"String", "|"}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
  };
  const std::string text = doc.dump();  // "Ġ" is the byte-level symbol of a space
  std::ofstream(dir + "/tokenizer.json") << text;
  std::ofstream(dir + "/tokenizer_config.json") << R"({"bos_token": "<s>", "add_bos_token": true,
      "chat_template": [{"name": "default", "template": "{{ x }}"}]})";
  auto tok = Tokenizer::from_file(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.has_value()) << tok.status().to_string();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.bos_id(), 7);
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.chat_template(), std::optional<std::string>("{{ x }}"));
  EXPECT_EQ(t.encode("ab ab", true, true), (std::vector<int32_t>{7, 3, 4}));
  // lstrip swallows the spaces before <L>; rstrip the spaces after <R> (matched even without
  // parse_special because it is not special).
  EXPECT_EQ(t.encode("ab  <L>ab", false, true), (std::vector<int32_t>{3, 5, 3}));
  EXPECT_EQ(t.encode("ab<R>  ab", false, false), (std::vector<int32_t>{3, 6, 3}));
  EXPECT_EQ(t.decode({3, 5, 4}, true), "ab<L> ab");
  EXPECT_EQ(t.decode({3, 5, 4}, false), "ab ab");
}

// tokenizer.json with a vocabulary of "a" and "b" and the given pre_tokenizer JSON text.
std::string mini_tokenizer_json(const std::string& pre_tokenizer) {
  return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "pre_tokenizer": )" + pre_tokenizer +
         "}";
}

// Pre-tokenizer Sequences nested `levels` deep around a ByteLevel: the loader walks them
// recursively.
std::string nested_sequences(int levels) {
  std::string text;
  for (int i = 0; i < levels; ++i) text += R"({"type": "Sequence", "pretokenizers": [)";
  text += R"({"type": "ByteLevel", "add_prefix_space": false})";
  for (int i = 0; i < levels; ++i) text += "]}";
  return text;
}

TEST(HfJson, NestingPastTheLimitIsAnError) {
  // Each Sequence is two levels (the object and its list); the document and "pre_tokenizer"
  // add one more.
  const int allowed = (kMaxFileJsonDepth - 2) / 2;
  auto ok = Tokenizer::from_hf_json_text(mini_tokenizer_json(nested_sequences(allowed)), "deep.json", "", "");
  ASSERT_TRUE(ok) << ok.status().to_string();
  EXPECT_EQ((*ok)->encode("ab", false, false), (std::vector<int32_t>{0, 1}));

  for (int levels : {allowed + 1, 100000}) {
    auto deep = Tokenizer::from_hf_json_text(mini_tokenizer_json(nested_sequences(levels)), "deep.json", "", "");
    ASSERT_FALSE(deep) << levels;
    EXPECT_EQ(deep.status().code(), ErrorCode::kInvalidFile);
    EXPECT_NE(deep.status().message().find("deep.json nests arrays and objects deeper than 128 levels"),
              std::string::npos)
        << deep.status().message();
  }
  auto deep_config = Tokenizer::from_hf_json_text(mini_tokenizer_json("null"), "t.json",
                                                  std::string(200000, '[') + std::string(200000, ']'), "config.json");
  ASSERT_FALSE(deep_config);
  EXPECT_NE(deep_config.status().message().find("config.json nests"), std::string::npos) << deep_config.status().message();
}

TEST(HfJson, IdsOutsideTheVocabularyAreAnError) {
  // A negative id once indexed the token table at SIZE_MAX; a huge one allocated gigabytes.
  for (const char* vocab : {R"({"a": -1, "b": 1})", R"({"a": 0, "b": 2000000000})", R"({"a": 0.5, "b": 1})"}) {
    const std::string text = std::string(R"({"model": {"type": "BPE", "vocab": )") + vocab + R"(, "merges": []}})";
    auto t = Tokenizer::from_hf_json_text(text, "ids.json", "", "");
    ASSERT_FALSE(t) << vocab;
    EXPECT_EQ(t.status().code(), ErrorCode::kInvalidFile);
    EXPECT_NE(t.status().message().find("vocabulary ids must be integers"), std::string::npos) << t.status().message();
  }
}

TEST(Tokenizer, LongWhitespaceRunsRoundTrip) {
  auto tok = load_deepseek_v3();
  ASSERT_NE(tok, nullptr);
  const std::string text = "x" + std::string(200000, ' ') + "y\n" + std::string(100000, '\n') + "z";
  EXPECT_EQ(tok->decode(tok->encode(text, false, false), false), text);
}

// Encode throughput on ~2 MB of mixed prose, code and CJK. The bound is loose so that debug and
// sanitizer builds pass; the measured figure is printed.
TEST(Tokenizer, EncodeSpeed) {
  auto tok = load_gguf(kShared + "/testdata/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_NE(tok, nullptr);
  std::string corpus;
  const std::string inp = read_file(kShared + "/testdata/vocab/ggml-vocab-qwen2.gguf.inp");
  const std::string prose =
      "The quick brown fox jumps over the lazy dog, while 42 engineers debate tokenizers in 2024. "
      "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n在8GB内存主机上运行模型。 ";
  while (corpus.size() < 2 * 1024 * 1024) corpus += prose + inp;
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok->encode(corpus, false, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double mb_per_s = static_cast<double>(corpus.size()) / 1e6 / seconds;
  std::printf("[ speed    ] qwen2 encode: %.2f MB in %.3f s = %.2f MB/s (%zu tokens)\n",
              static_cast<double>(corpus.size()) / 1e6, seconds, mb_per_s, ids.size());
  EXPECT_EQ(tok->decode(ids, false), corpus);
  EXPECT_GT(mb_per_s, 0.1);
}

}  // namespace
}  // namespace fathom
