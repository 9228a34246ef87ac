// The vocabulary shared by both tokenizer models, and the base class that answers the vocabulary
// questions of the Tokenizer interface. Model classes (bpe.h, spm.h) add encode and decode.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fathom {

// Hash that lets unordered_map<std::string, ...> be searched with a string_view, no copy.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;

// A token matched in raw text before pre-tokenization (control, user-defined, HF added token).
struct SpecialToken {
  std::string text;      // exact raw text that is replaced by the token
  int32_t id = -1;       // token id
  bool control = false;  // true: matched only when parse_special; false: always (user-defined)
  bool lstrip = false;   // HF lstrip: swallows whitespace before the match
  bool rstrip = false;   // HF rstrip: swallows whitespace after the match
};

struct Vocab {
  std::vector<std::string> tokens;  // [n_vocab] token text as stored (byte-level or "▁" form)
  std::vector<TokenType> types;     // [n_vocab] GGUF token types
  std::vector<float> scores;        // [n_vocab] SentencePiece merge scores; empty for BPE
  TokenIdMap token_to_id;           // text -> id for every entry of tokens
  int32_t bos_id = -1;              // beginning of sequence, -1 when none
  int32_t eos_id = -1;              // end of sequence
  int32_t eot_id = -1;              // end of turn (chat), when the model has one
  int32_t unk_id = -1;              // replaces unknown text where the model has no byte fallback
  int32_t pad_id = -1;              // padding
  bool add_bos = false;             // prompts start with BOS by default
  bool add_eos = false;             // prompts end with EOS by default
  std::vector<int32_t> eog_ids;     // ids that end generation (eos, eot, <|im_end|>, ...)
  std::vector<SpecialToken> specials;          // raw-text matches, see split_special
  std::optional<std::string> chat_template;    // Jinja chat template, when the file has one
  std::string model;                // "gpt2" or "llama"
  std::string pre;                  // pre-tokenizer name ("deepseek-llm", "hf", ...)
  std::vector<std::string> warnings;  // load-time notes for the user (see Tokenizer::warnings)

  int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }
  TokenType type(int32_t id) const { return types[static_cast<size_t>(id)]; }
  // Fills token_to_id from tokens (first id wins on duplicates, as llama.cpp does).
  void build_index();
  // Fills specials from types (control/unknown/user-defined) and eog_ids from the ids and the
  // well-known end-of-turn texts.
  void collect_specials_from_types();
  void collect_end_of_generation();
  // Validates the special ids against n_vocab.
  Status validate() const;
};

// A piece of input after special-token matching: either raw text or one token.
struct Fragment {
  std::string_view text;  // raw text when token < 0
  int32_t token = -1;     // matched token id, or -1 for raw text
};

// Matches Vocab::specials in text, leftmost first and longest at each position (HF's added-token
// matcher), and cuts text around them. Control tokens are matched only when parse_special.
class SpecialMatcher {
 public:
  explicit SpecialMatcher(const std::vector<SpecialToken>& specials);
  void split(std::string_view text, bool parse_special, std::vector<Fragment>* out) const;

 private:
  const std::vector<SpecialToken>* specials_;
  std::vector<std::vector<uint32_t>> by_first_byte_;  // [256] indices into specials, longest first
};

// Implements the vocabulary half of Tokenizer for both models.
class VocabTokenizer : public Tokenizer {
 public:
  explicit VocabTokenizer(Vocab vocab);
  VocabTokenizer(const VocabTokenizer&) = delete;  // specials_ points into vocab_
  VocabTokenizer& operator=(const VocabTokenizer&) = delete;
  int32_t n_vocab() const override { return vocab_.n_vocab(); }
  int32_t bos_id() const override { return vocab_.bos_id; }
  int32_t eos_id() const override { return vocab_.eos_id; }
  bool add_bos() const override { return vocab_.add_bos; }
  bool is_end_of_generation(int32_t id) const override;
  std::optional<int32_t> token_id(std::string_view text) const override;
  std::string token_text(int32_t id) const override;
  std::string model_name() const override { return vocab_.model; }
  std::string pre_tokenizer_name() const override { return vocab_.pre; }
  std::optional<std::string> chat_template() const override { return vocab_.chat_template; }
  const std::vector<std::string>& warnings() const override { return vocab_.warnings; }
  const Vocab& vocab() const { return vocab_; }

 protected:
  Vocab vocab_;
  SpecialMatcher specials_;  // refers to vocab_.specials
};

}  // namespace fathom
