// Tokenizer factories for GGUF metadata, decode, and the streaming UTF-8 decoder.
#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "gguf/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace fathom {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// A string-array metadata value; kNotFound / kInvalidFile name the key.
Expected<const std::vector<std::string>*> string_array(const gguf::GgufFile& file, const char* key) {
  const gguf::Value* value = file.find(key);
  if (value == nullptr) return error(ErrorCode::kNotFound, strprintf("%s: missing key %s", file.path().c_str(), key));
  if (value->type != gguf::ValueType::kArray || value->elem_type != gguf::ValueType::kString) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s is not an array of strings", file.path().c_str(), key));
  }
  return &value->strings;
}

// A numeric-array metadata value, or nullptr when the key is absent.
Expected<const std::vector<double>*> number_array(const gguf::GgufFile& file, const char* key) {
  const gguf::Value* value = file.find(key);
  if (value == nullptr) return static_cast<const std::vector<double>*>(nullptr);
  if (value->type != gguf::ValueType::kArray || value->elem_type == gguf::ValueType::kString ||
      value->elem_type == gguf::ValueType::kArray) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s is not a numeric array", file.path().c_str(), key));
  }
  return &value->numbers;
}

int32_t optional_id(const gguf::GgufFile& file, const char* key) {
  const auto id = file.get_int(key);
  // Some converters write -1 or UINT32_MAX for "none".
  if (!id || *id < 0 || *id > INT32_MAX) return -1;
  return static_cast<int32_t>(*id);
}

}  // namespace

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const gguf::GgufFile& file) {
  const auto model = file.get_string("tokenizer.ggml.model");
  if (!model) {
    return error(ErrorCode::kNotFound,
                 strprintf("%s has no tokenizer (tokenizer.ggml.model missing)", file.path().c_str()));
  }
  if (*model != "gpt2" && *model != "llama") {
    return error(ErrorCode::kUnsupported, strprintf("%s: unknown tokenizer model '%s' (supported: gpt2, llama)",
                                                    file.path().c_str(), model->c_str()));
  }

  Vocab vocab;
  vocab.model = *model;
  FATHOM_ASSIGN_OR_RETURN(const std::vector<std::string>* tokens, string_array(file, "tokenizer.ggml.tokens"));
  vocab.tokens = *tokens;
  FATHOM_ASSIGN_OR_RETURN(const std::vector<double>* types, number_array(file, "tokenizer.ggml.token_type"));
  if (types != nullptr) {
    if (types->size() != tokens->size()) {
      return error(ErrorCode::kInvalidFile, strprintf("%s: token_type has %zu entries, tokens has %zu",
                                                      file.path().c_str(), types->size(), tokens->size()));
    }
    vocab.types.reserve(types->size());
    for (double t : *types) {
      const bool known = t >= 0 && t <= static_cast<double>(TokenType::kByte);
      vocab.types.push_back(known ? static_cast<TokenType>(static_cast<int32_t>(t)) : TokenType::kNormal);
    }
  } else {
    vocab.types.assign(tokens->size(), TokenType::kNormal);
  }
  FATHOM_ASSIGN_OR_RETURN(const std::vector<double>* scores, number_array(file, "tokenizer.ggml.scores"));
  if (scores != nullptr) vocab.scores.assign(scores->begin(), scores->end());

  vocab.bos_id = optional_id(file, "tokenizer.ggml.bos_token_id");
  vocab.eos_id = optional_id(file, "tokenizer.ggml.eos_token_id");
  vocab.eot_id = optional_id(file, "tokenizer.ggml.eot_token_id");
  vocab.unk_id = optional_id(file, "tokenizer.ggml.unknown_token_id");
  vocab.pad_id = optional_id(file, "tokenizer.ggml.padding_token_id");
  // SentencePiece models start prompts with BOS unless told otherwise; GPT-2 style ones do not.
  vocab.add_bos = file.get_bool("tokenizer.ggml.add_bos_token").value_or(*model == "llama");
  vocab.add_eos = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  vocab.chat_template = file.get_string("tokenizer.chat_template");
  FATHOM_RETURN_IF_ERROR(vocab.validate());
  if (vocab.unk_id < 0) {
    for (int32_t i = 0; i < vocab.n_vocab(); ++i) {
      if (vocab.type(i) == TokenType::kUnknown) {
        vocab.unk_id = i;
        break;
      }
    }
  }
  vocab.build_index();
  vocab.collect_specials_from_types();
  vocab.collect_end_of_generation();

  if (*model == "llama") {
    vocab.pre = "spm";
    const bool add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    FATHOM_ASSIGN_OR_RETURN(auto tok, SpmTokenizer::create(std::move(vocab), add_space_prefix));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  }

  vocab.pre = file.get_string("tokenizer.ggml.pre").value_or("default");
  auto patterns = pre_tokenizer_patterns(vocab.pre);
  if (!patterns) return Status(patterns.status().code(), file.path() + ": " + patterns.status().message());
  if (vocab.pre == "default" || vocab.pre == "gpt2") {
    vocab.warnings.push_back(strprintf(
        "%s: tokenizer.ggml.pre is '%s'; using the GPT-2 pre-tokenizer, which may split text differently "
        "from the model's own (supported: %s)",
        file.path().c_str(), vocab.pre.c_str(), supported_pre_tokenizers().c_str()));
  }
  FATHOM_ASSIGN_OR_RETURN(const std::vector<std::string>* merges, string_array(file, "tokenizer.ggml.merges"));
  FATHOM_ASSIGN_OR_RETURN(auto tok, BpeTokenizer::create(std::move(vocab), *merges, *patterns));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_file(const std::string& path,
                                                         const std::string& tokenizer_config_path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return error(ErrorCode::kNotFound, strprintf("tokenizer file %s does not exist or is not a file", path.c_str()));
  }
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    std::string config = tokenizer_config_path;
    if (config.empty()) {
      const auto sibling = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
      if (std::filesystem::is_regular_file(sibling, ec)) config = sibling.string();
    }
    return from_hf_json(path, config);
  }
  FATHOM_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::open(path));
  return from_gguf(*file);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string text;
  bool strip = decode_strips_leading_space();  // until the first piece with text
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (piece.empty()) continue;
    if (strip && piece[0] == ' ') piece.erase(0, 1);
    strip = false;
    text += piece;
  }
  return text;
}

std::string Utf8StreamDecoder::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    bool truncated = false;
    const size_t n = unicode::valid_utf8_length(pending_, pos, &truncated);
    if (n > 0) {
      out.append(pending_, pos, n);
      pos += n;
    } else if (truncated) {
      break;  // a valid prefix of a longer sequence: wait for the rest
    } else {
      out += kReplacementChar;
      ++pos;
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8StreamDecoder::flush() {
  // Whatever is left is an unfinished sequence: one replacement character for it.
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementChar);
  pending_.clear();
  return out;
}

}  // namespace fathom
