// Tokenizers: byte-level BPE (tokenizer.ggml.model = "gpt2") with the pre-tokenizers of
// deepseek-llm, deepseek-coder, deepseek-v3 and qwen2; SentencePiece-style ("llama") vocab;
// special/added tokens; BOS/EOS. Loaded from GGUF metadata or a Hugging Face tokenizer.json.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom {

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  static Expected<std::unique_ptr<Tokenizer>> from_gguf(const gguf::GgufFile& file);
  // tokenizer_config_path may be empty; when given, BOS/EOS, add_bos and chat_template come from it.
  static Expected<std::unique_ptr<Tokenizer>> from_hf_json(const std::string& tokenizer_json_path,
                                                           const std::string& tokenizer_config_path);
  // The same from the documents' text (tokenizer_config_json may be empty); the origins name
  // them in error messages. Documents nested deeper than kMaxFileJsonDepth are rejected.
  static Expected<std::unique_ptr<Tokenizer>> from_hf_json_text(const std::string& tokenizer_json,
                                                                const std::string& tokenizer_json_origin,
                                                                const std::string& tokenizer_config_json,
                                                                const std::string& tokenizer_config_origin);
  // A path ending in ".json" loads as from_hf_json (with tokenizer_config_path, or else a
  // tokenizer_config.json beside it when present); anything else opens as GGUF (metadata only).
  static Expected<std::unique_ptr<Tokenizer>> from_file(const std::string& path,
                                                        const std::string& tokenizer_config_path = "");

  // parse_special: text matching a special/added token's content becomes that token's id.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;
  // Raw bytes of one token (may be a partial UTF-8 sequence). Control tokens render as their
  // text only when render_special is true, otherwise as "".
  virtual std::string token_to_piece(int32_t id, bool render_special) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool render_special) const;

  virtual int32_t n_vocab() const = 0;
  virtual int32_t bos_id() const = 0;      // -1 when none
  virtual int32_t eos_id() const = 0;      // -1 when none
  virtual bool add_bos() const = 0;        // whether prompts start with BOS by default
  virtual bool is_end_of_generation(int32_t id) const = 0;  // eos, eot, <|im_end|>, ...
  virtual std::optional<int32_t> token_id(std::string_view text) const = 0;  // exact vocab lookup
  virtual std::string token_text(int32_t id) const = 0;  // vocab string as stored
  virtual std::string model_name() const = 0;            // "gpt2" or "llama"
  virtual std::string pre_tokenizer_name() const = 0;    // "deepseek-llm", "qwen2", ...
  // Chat template from tokenizer.chat_template (GGUF) or tokenizer_config.json.
  virtual std::optional<std::string> chat_template() const = 0;
  // Things the loader tolerated but the user should hear about (e.g. an unknown pre-tokenizer
  // name replaced by the GPT-2 default); the caller decides how to report them.
  virtual const std::vector<std::string>& warnings() const = 0;

 protected:
  // SentencePiece vocabularies prepend a space when encoding; decode() removes it again from the
  // first piece that has text.
  virtual bool decode_strips_leading_space() const { return false; }
};

// Turns a stream of token byte pieces into valid UTF-8 text: bytes of an incomplete sequence are
// held back until completed; invalid bytes become U+FFFD.
class Utf8StreamDecoder {
 public:
  std::string push(std::string_view bytes);  // returns the text that is now complete
  std::string flush();                       // remaining bytes (invalid ones as U+FFFD)

 private:
  std::string pending_;  // bytes of an unfinished UTF-8 sequence
};

}  // namespace fathom
