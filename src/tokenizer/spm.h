// SentencePiece-style BPE over a scored vocabulary (GGUF tokenizer.ggml.model = "llama"), as
// llama.cpp runs it: spaces become U+2581 "▁", a "▁" is prepended to text that starts the prompt
// or follows a special token, adjacent pieces merge highest score first, and characters with no
// token fall back to <0xXX> byte tokens.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/vocab.h"

namespace fathom {

class SpmTokenizer : public VocabTokenizer {
 public:
  static Expected<std::unique_ptr<SpmTokenizer>> create(Vocab vocab, bool add_space_prefix);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id, bool render_special) const override;

 protected:
  bool decode_strips_leading_space() const override { return add_space_prefix_; }

 private:
  explicit SpmTokenizer(Vocab vocab) : VocabTokenizer(std::move(vocab)) {}
  // Tokenizes text already in "▁" form, appending to out.
  void encode_escaped(std::string_view text, std::vector<int32_t>* out) const;
  void append_bytes(std::string_view text, std::vector<int32_t>* out) const;

  bool add_space_prefix_ = true;            // GGUF tokenizer.ggml.add_space_prefix
  std::array<int32_t, 256> byte_token_{};   // [256] id of "<0xXX>", -1 if the vocab lacks it
};

}  // namespace fathom
