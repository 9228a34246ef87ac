// Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2", HF model type "BPE" + ByteLevel): text is
// cut by the pre-tokenizer regexes, each piece's bytes become GPT-2 byte-level symbols, and
// adjacent symbol pairs merge lowest merge rank first until no listed merge applies.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab.h"

namespace fathom {

class BpeTokenizer : public VocabTokenizer {
 public:
  // merges: "left right" token texts, rank = index. patterns: the pre-tokenizer passes.
  static Expected<std::unique_ptr<BpeTokenizer>> create(Vocab vocab, const std::vector<std::string>& merges,
                                                        const std::vector<std::string>& patterns);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_to_piece(int32_t id, bool render_special) const override;

  // Ids of one pre-tokenized piece (raw bytes), appended to out. Public for tests and benches.
  void encode_piece(std::string_view piece, std::vector<int32_t>* out) const;

 private:
  struct Merge {
    int32_t rank = 0;    // position in the merges list: lower merges first
    int32_t result = 0;  // token id of the merged pair
  };
  explicit BpeTokenizer(Vocab vocab);
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  std::unique_ptr<RegexSplitter> splitter_;     // pre-tokenizer passes
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> merge
  std::array<int32_t, 256> byte_token_{};       // [256] id of each byte's byte-level symbol, -1 if absent
};

}  // namespace fathom
