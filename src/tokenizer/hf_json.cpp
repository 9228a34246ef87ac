// Tokenizer::from_hf_json: a Hugging Face tokenizer.json with a byte-level BPE model (the format
// DeepSeek-V3/R1 and Qwen2 publish), plus the BOS/EOS/template settings of tokenizer_config.json.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_depth.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace fathom {

namespace {

using nlohmann::json;

Expected<std::string> read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kNotFound, strprintf("cannot open %s", path.c_str()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Expected<json> parse_json_text(const std::string& text, const std::string& origin) {
  if (auto at = json_depth_exceeded_at(text, kMaxFileJsonDepth)) {
    return error(ErrorCode::kInvalidFile, strprintf("%s nests arrays and objects deeper than %d levels (at byte %zu)",
                                                    origin.c_str(), kMaxFileJsonDepth, *at));
  }
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return error(ErrorCode::kInvalidFile, strprintf("%s is not valid JSON", origin.c_str()));
  return doc;
}

// Escapes a literal for use inside a PCRE2 pattern (HF Split with pattern {"String": ...}).
std::string quote_regex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// Collects the Split patterns of an HF pre_tokenizer tree into *patterns, in application order.
Status collect_patterns(const json& node, const std::string& path, std::vector<std::string>* patterns) {
  if (node.is_null()) return Status::ok();
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& child : node.value("pretokenizers", json::array())) {
      FATHOM_RETURN_IF_ERROR(collect_patterns(child, path, patterns));
    }
    return Status::ok();
  }
  if (type == "Split") {
    if (node.value("behavior", "") != "Isolated" || node.value("invert", false)) {
      return error(ErrorCode::kUnsupported, strprintf("%s: Split pre-tokenizer with behavior '%s'%s is not supported "
                                                      "(only Isolated, not inverted)",
                                                      path.c_str(), node.value("behavior", "").c_str(),
                                                      node.value("invert", false) ? ", inverted" : ""));
    }
    const json& pattern = node.at("pattern");
    if (pattern.contains("Regex")) patterns->push_back(pattern["Regex"].get<std::string>());
    else patterns->push_back(quote_regex(pattern.value("String", "")));
    return Status::ok();
  }
  if (type == "ByteLevel") {
    if (node.value("add_prefix_space", false)) {
      return error(ErrorCode::kUnsupported,
                   strprintf("%s: ByteLevel pre-tokenizer with add_prefix_space is not supported", path.c_str()));
    }
    if (node.value("use_regex", true)) patterns->push_back(gpt2_pattern());
    return Status::ok();
  }
  if (type == "Digits") {
    patterns->push_back(node.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    return Status::ok();
  }
  return error(ErrorCode::kUnsupported,
               strprintf("%s: pre-tokenizer type '%s' is not supported (supported: Sequence, Split, ByteLevel, Digits)",
                         path.c_str(), type.c_str()));
}

// tokenizer_config.json writes special tokens as a string or as {"content": ...}.
std::optional<std::string> token_content(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

Status apply_config(const json& config, const std::string& path, Vocab* vocab) {
  const auto lookup = [&](const char* key, int32_t* id) -> Status {
    const auto content = token_content(config, key);
    if (!content) return Status::ok();
    auto it = vocab->token_to_id.find(*content);
    if (it == vocab->token_to_id.end()) {
      return error(ErrorCode::kInvalidFile, strprintf("%s: %s '%s' is not in the vocabulary", path.c_str(), key,
                                                      content->c_str()));
    }
    *id = it->second;
    return Status::ok();
  };
  FATHOM_RETURN_IF_ERROR(lookup("bos_token", &vocab->bos_id));
  FATHOM_RETURN_IF_ERROR(lookup("eos_token", &vocab->eos_id));
  FATHOM_RETURN_IF_ERROR(lookup("unk_token", &vocab->unk_id));
  FATHOM_RETURN_IF_ERROR(lookup("pad_token", &vocab->pad_id));
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    vocab->add_bos = config["add_bos_token"].get<bool>();
  }
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
    vocab->add_eos = config["add_eos_token"].get<bool>();
  }
  if (config.contains("chat_template")) {
    const json& t = config["chat_template"];
    if (t.is_string()) {
      vocab->chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const json& entry : t) {
        if (entry.value("name", "") == "default" && entry.contains("template")) {
          vocab->chat_template = entry["template"].get<std::string>();
        }
      }
    }
  }
  return Status::ok();
}

// tokenizer_path and config_path name the documents in messages; config_text may be empty.
Expected<std::unique_ptr<Tokenizer>> load_hf(const std::string& tokenizer_text, const std::string& tokenizer_path,
                                             const std::string& config_text, const std::string& config_path) {
  FATHOM_ASSIGN_OR_RETURN(json doc, parse_json_text(tokenizer_text, tokenizer_path));
  const json& model = doc.value("model", json::object());
  const std::string model_type = model.value("type", "");
  if (model_type != "BPE") {
    return error(ErrorCode::kUnsupported, strprintf("%s: tokenizer model type '%s' is not supported (supported: BPE)",
                                                    tokenizer_path.c_str(), model_type.c_str()));
  }
  Vocab vocab;
  vocab.model = "gpt2";
  vocab.pre = "hf";

  const json& added = doc.value("added_tokens", json::array());
  int64_t max_id = -1;
  int64_t min_id = 0;
  size_t n_listed = 0;
  const auto see_id = [&](const json& id) {
    // A float id would pass get<int64_t>() truncated; only integers index the vocabulary.
    const int64_t value = id.is_number_integer() ? id.get<int64_t>() : -1;
    max_id = std::max(max_id, value);
    min_id = std::min(min_id, value);
    ++n_listed;
  };
  for (const auto& [text, id] : model.at("vocab").items()) see_id(id);
  for (const json& token : added) see_id(token.at("id"));
  // Ids missing from both lists become unused tokens, so the table is as long as the largest id;
  // bounding the holes keeps a one-line file from allocating gigabytes.
  if (max_id < 0 || min_id < 0 || max_id >= INT32_MAX || static_cast<uint64_t>(max_id) >= 2 * n_listed + 1024) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("%s: vocabulary ids must be integers from 0 to about twice the %zu tokens listed "
                           "(found %lld to %lld)",
                           tokenizer_path.c_str(), n_listed, static_cast<long long>(min_id),
                           static_cast<long long>(max_id)));
  }
  // Ids missing from both lists stay as empty, unused tokens so that ids index directly.
  vocab.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  vocab.types.assign(static_cast<size_t>(max_id + 1), TokenType::kUnused);
  for (const auto& [text, id] : model.at("vocab").items()) {
    const auto index = id.get<size_t>();
    vocab.tokens[index] = text;
    vocab.types[index] = TokenType::kNormal;
  }
  for (const json& token : added) {
    const auto index = token.at("id").get<size_t>();
    const bool special = token.value("special", false);
    vocab.tokens[index] = token.at("content").get<std::string>();
    vocab.types[index] = special ? TokenType::kControl : TokenType::kUserDefined;
    vocab.specials.push_back({vocab.tokens[index], static_cast<int32_t>(index), special,
                              token.value("lstrip", false), token.value("rstrip", false)});
  }
  vocab.build_index();

  std::vector<std::string> merges;
  for (const json& merge : model.value("merges", json::array())) {
    if (merge.is_string()) merges.push_back(merge.get<std::string>());
    else if (merge.is_array() && merge.size() == 2) merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    else return error(ErrorCode::kInvalidFile, strprintf("%s: malformed merge entry", tokenizer_path.c_str()));
  }

  std::vector<std::string> patterns;
  FATHOM_RETURN_IF_ERROR(collect_patterns(doc.value("pre_tokenizer", json()), tokenizer_path, &patterns));
  const json& normalizer = doc.value("normalizer", json());
  const bool no_normalizer = normalizer.is_null() || (normalizer.value("type", "") == "Sequence" &&
                                                      normalizer.value("normalizers", json::array()).empty());
  if (!no_normalizer) {
    vocab.warnings.push_back(strprintf("%s: normalizer '%s' is not applied; text is tokenized as given",
                                       tokenizer_path.c_str(), normalizer.value("type", "?").c_str()));
  }
  if (model.value("ignore_merges", false)) {
    vocab.warnings.push_back(strprintf("%s: ignore_merges is not supported; whole-word vocabulary hits are "
                                       "merged like any other word", tokenizer_path.c_str()));
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.token_to_id.find(model["unk_token"].get<std::string>());
    if (it != vocab.token_to_id.end()) vocab.unk_id = it->second;
  }

  if (!config_text.empty()) {
    FATHOM_ASSIGN_OR_RETURN(json config, parse_json_text(config_text, config_path));
    FATHOM_RETURN_IF_ERROR(apply_config(config, config_path, &vocab));
  }
  vocab.collect_end_of_generation();
  FATHOM_ASSIGN_OR_RETURN(auto tok, BpeTokenizer::create(std::move(vocab), merges, patterns));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_hf_json(const std::string& tokenizer_json_path,
                                                             const std::string& tokenizer_config_path) {
  FATHOM_ASSIGN_OR_RETURN(std::string tokenizer_text, read_file_text(tokenizer_json_path));
  std::string config_text;
  if (!tokenizer_config_path.empty()) {
    FATHOM_ASSIGN_OR_RETURN(config_text, read_file_text(tokenizer_config_path));
  }
  return from_hf_json_text(tokenizer_text, tokenizer_json_path, config_text, tokenizer_config_path);
}

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_hf_json_text(const std::string& tokenizer_json,
                                                                  const std::string& tokenizer_json_origin,
                                                                  const std::string& tokenizer_config_json,
                                                                  const std::string& tokenizer_config_origin) {
  // nlohmann::json throws on type mismatches inside a well-formed document (e.g. an id that is a
  // string); turn those into an error value at this boundary.
  try {
    return load_hf(tokenizer_json, tokenizer_json_origin, tokenizer_config_json, tokenizer_config_origin);
  } catch (const nlohmann::json::exception& e) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: unexpected structure: %s", tokenizer_json_origin.c_str(), e.what()));
  }
}

}  // namespace fathom
