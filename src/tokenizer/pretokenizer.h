// Pre-tokenization: the regex splits that cut text into words before BPE. Each named
// pre-tokenizer (GGUF tokenizer.ggml.pre) is a sequence of patterns; every pattern splits each
// piece of the previous pass, keeping both the matches and the text between them as pieces
// (Hugging Face's Split with behavior "Isolated").
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom {

// A piece of the input: [offset, offset + length) in bytes.
struct TextSpan {
  size_t offset = 0;  // first byte, relative to the text given to split()
  size_t length = 0;  // byte count, > 0
};

class RegexSplitter {
 public:
  // Compiles the patterns (PCRE2, UTF + Unicode properties, JIT when available).
  static Expected<std::unique_ptr<RegexSplitter>> compile(const std::vector<std::string>& patterns);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Replaces *pieces with the pieces of text, in order; they cover text exactly. Thread-safe:
  // match state lives in the call. Invalid UTF-8 never matches and so stays in the gaps.
  void split(std::string_view text, std::vector<TextSpan>* pieces) const;

  size_t n_patterns() const;

 private:
  struct Impl;
  explicit RegexSplitter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;  // compiled PCRE2 patterns
};

// Patterns of a GGUF pre-tokenizer name; kUnsupported (listing the known names) otherwise.
Expected<std::vector<std::string>> pre_tokenizer_patterns(std::string_view name);
// The names pre_tokenizer_patterns accepts, for error messages and --help.
std::string supported_pre_tokenizers();
// GPT-2's own split, also what HF's ByteLevel pre-tokenizer applies when use_regex is true.
const char* gpt2_pattern();

}  // namespace fathom
