// Tokenizer::from_hf_json: a Hugging Face tokenizer.json with a byte-level BPE model (the format
// DeepSeek-V3/R1 and Qwen2 publish), plus the BOS/EOS/template settings of tokenizer_config.json.
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace fathom {

namespace {

using nlohmann::json;

Expected<json> read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kNotFound, strprintf("cannot open %s", path.c_str()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  json doc = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return error(ErrorCode::kInvalidFile, strprintf("%s is not valid JSON", path.c_str()));
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

Expected<std::unique_ptr<Tokenizer>> load_hf(const std::string& tokenizer_path, const std::string& config_path) {
  FATHOM_ASSIGN_OR_RETURN(json doc, read_json(tokenizer_path));
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
  for (const auto& [text, id] : model.at("vocab").items()) max_id = std::max<int64_t>(max_id, id.get<int64_t>());
  for (const json& token : added) max_id = std::max<int64_t>(max_id, token.at("id").get<int64_t>());
  if (max_id < 0 || max_id >= INT32_MAX) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: vocabulary is empty or its ids are out of range",
                                                    tokenizer_path.c_str()));
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

  if (!config_path.empty()) {
    FATHOM_ASSIGN_OR_RETURN(json config, read_json(config_path));
    FATHOM_RETURN_IF_ERROR(apply_config(config, config_path, &vocab));
  }
  vocab.collect_end_of_generation();
  FATHOM_ASSIGN_OR_RETURN(auto tok, BpeTokenizer::create(std::move(vocab), merges, patterns));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

}  // namespace

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_hf_json(const std::string& tokenizer_json_path,
                                                             const std::string& tokenizer_config_path) {
  // nlohmann::json throws on type mismatches inside a well-formed document (e.g. an id that is a
  // string); turn those into an error value at this boundary.
  try {
    return load_hf(tokenizer_json_path, tokenizer_config_path);
  } catch (const nlohmann::json::exception& e) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: unexpected structure: %s", tokenizer_json_path.c_str(), e.what()));
  }
}

}  // namespace fathom
