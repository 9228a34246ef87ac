// tokenizer.json / tokenizer_config.json -> GGUF tokenizer.* keys, as llama.cpp's converter
// (_set_vocab_gpt2 + SpecialVocab) writes them.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "convert/hf_checkpoint.h"
#include "convert/hf_convert.h"
#include "core/mapped_file.h"
#include "gguf/gguf.h"

namespace fathom::convert {

namespace {

// GGUF tokenizer.ggml.token_type values.
enum TokenKind { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

// llama.cpp's does_token_look_special: added tokens that behave as control tokens even when
// tokenizer.json does not mark them special.
bool looks_special(const std::string& t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (t.starts_with("<|") && t.ends_with("|>")) return true;
  if (t.starts_with("<\xef\xbd\x9c") && t.ends_with("\xef\xbd\x9c>")) return true;  // <｜...｜> (deepseek)
  return t.starts_with("<unused") && t.ends_with(">");
}

// Split regexes of a pre_tokenizer (a Split or a Sequence of them), and whether a ByteLevel
// pre-tokenizer applies GPT-2's own regex.
void collect_patterns(const nlohmann::json& pt, std::vector<std::string>* patterns, bool* byte_level_regex) {
  if (!pt.is_object()) return;
  const std::string type = pt.value("type", "");
  if (type == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array()) {
    for (const auto& p : pt["pretokenizers"]) collect_patterns(p, patterns, byte_level_regex);
  } else if (type == "Split" && pt.contains("pattern") && pt["pattern"].is_object()) {
    const auto& pat = pt["pattern"];
    if (pat.contains("Regex") && pat["Regex"].is_string()) patterns->push_back(pat["Regex"].get<std::string>());
    if (pat.contains("String") && pat["String"].is_string()) patterns->push_back(pat["String"].get<std::string>());
  } else if (type == "ByteLevel") {
    *byte_level_regex = pt.value("use_regex", true);
  }
}

// Content of a tokenizer_config special-token entry: a string or {"content": ...}.
std::optional<std::string> token_content(const nlohmann::json& entry) {
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_object() && entry.contains("content") && entry["content"].is_string()) return entry["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

std::string recognize_pre_tokenizer(const std::vector<std::string>& p, bool byte_level_regex) {
  if (p.empty()) return byte_level_regex ? "gpt-2" : "";
  if (p.size() == 3 && p[0] == "\\p{N}{1,3}" && p[2].find("[\\p{L}\\p{M}]+") != std::string::npos) return "deepseek-v3";
  if (p.size() == 5 && p[0] == "[\r\n]" && p[1] == "\\s?\\p{L}+" && p[2] == "\\s?\\p{P}+") return "deepseek-coder";
  if (p.size() == 6 && p[0] == "[\r\n]" && p[1].starts_with("\\s?[A-Za-z")) return "deepseek-llm";
  if (p.size() == 1 && p[0].starts_with("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"))
    return "qwen2";
  if (p.size() == 1 && p[0].starts_with("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"))
    return "llama-bpe";
  return "";
}

Status add_hf_tokenizer(const std::string& dir, int64_t n_vocab, const nlohmann::json& config, gguf::GgufWriter& w,
                        const std::function<void(const std::string&)>& warn) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string tok_path = dir + "/tokenizer.json";
  if (!fs::exists(tok_path, ec))
    return error(ErrorCode::kNotFound, dir + ": no tokenizer.json (SentencePiece tokenizer.model files are not supported)");
  FATHOM_ASSIGN_OR_RETURN(nlohmann::json tj, read_json_object(tok_path));
  nlohmann::json tc = nlohmann::json::object();
  if (fs::exists(dir + "/tokenizer_config.json", ec)) {
    FATHOM_ASSIGN_OR_RETURN(tc, read_json_object(dir + "/tokenizer_config.json"));
  }
  const nlohmann::json& model = tj.contains("model") ? tj["model"] : nlohmann::json();
  if (!model.is_object() || model.value("type", "BPE") != "BPE" || !model.contains("vocab") || !model["vocab"].is_object())
    return error(ErrorCode::kUnsupported, tok_path + ": only byte-level BPE tokenizers (model.type BPE with a vocab) are supported");

  // id -> (text, type); added tokens override the base vocabulary.
  std::map<int64_t, std::pair<std::string, int>> by_id;
  for (const auto& [text, id] : model["vocab"].items())
    if (id.is_number_integer()) by_id[id.get<int64_t>()] = {text, kNormal};
  std::map<std::string, int64_t> added_ids;  // content -> id, for special-token lookup
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (const auto& a : tj["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
        return error(ErrorCode::kInvalidFile, tok_path + ": malformed added_tokens entry");
      std::string content = a["content"].get<std::string>();
      const int64_t id = a["id"].get<int64_t>();
      added_ids.emplace(content, id);
      int kind = kControl;
      if (!a.value("special", false) && !looks_special(content)) {
        kind = kUserDefined;
        // llama.cpp expects user-defined tokens pre-normalized: SentencePiece's U+2581 is a space.
        for (size_t pos; (pos = content.find("\xe2\x96\x81")) != std::string::npos;) content.replace(pos, 3, " ");
      }
      by_id[id] = {content, kind};
    }
  }
  if (n_vocab <= 0) n_vocab = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  std::vector<std::string> tokens;
  std::vector<double> types;
  for (int64_t i = 0; i < n_vocab; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(kUnused);
    } else {
      tokens.push_back(it->second.first);
      types.push_back(it->second.second);
    }
  }
  if (!by_id.empty() && by_id.rbegin()->first >= n_vocab)
    warn(strprintf("tokenizer has ids up to %lld but vocab_size is %lld; the extra tokens are dropped",
                   static_cast<long long>(by_id.rbegin()->first), static_cast<long long>(n_vocab)));

  std::vector<std::string> patterns;
  bool byte_level_regex = false;
  if (tj.contains("pre_tokenizer")) collect_patterns(tj["pre_tokenizer"], &patterns, &byte_level_regex);
  std::string pre = recognize_pre_tokenizer(patterns, byte_level_regex);
  if (pre.empty()) {
    warn("the tokenizer's pre-tokenizer regexes match none llama.cpp names here (deepseek-llm, deepseek-coder, "
         "deepseek-v3, qwen2, llama-bpe, gpt-2); writing \"default\"");
    pre = "default";
  }

  std::vector<std::string> merges;
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        return error(ErrorCode::kInvalidFile, tok_path + ": malformed merges entry");
      }
    }
  }

  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  w.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(std::move(tokens)));
  w.set("tokenizer.ggml.token_type", gguf::Value::make_array(gguf::ValueType::kInt32, std::move(types)));
  if (!merges.empty()) w.set("tokenizer.ggml.merges", gguf::Value::make_string_array(std::move(merges)));

  // Special tokens: tokenizer_config.json names them by content; config.json's *_token_id fills gaps.
  const std::pair<const char*, const char*> kSpecial[] = {
      {"bos", "tokenizer.ggml.bos_token_id"},      {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"},  {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"},  {"cls", "tokenizer.ggml.cls_token_id"},
      {"mask", "tokenizer.ggml.mask_token_id"},
  };
  for (const auto& [typ, key] : kSpecial) {
    std::optional<int64_t> id;
    if (auto e = tc.find(std::string(typ) + "_token"); e != tc.end())
      if (auto content = token_content(*e)) {
        if (auto a = added_ids.find(*content); a != added_ids.end()) {
          id = a->second;
        } else if (model["vocab"].contains(*content) && model["vocab"][*content].is_number_integer()) {
          id = model["vocab"][*content].get<int64_t>();
        }
      }
    if (!id)
      if (auto e = config.find(std::string(typ) + "_token_id"); e != config.end() && e->is_number_integer()) id = e->get<int64_t>();
    if (id && *id >= 0 && *id < n_vocab) w.set_u32(key, static_cast<uint32_t>(*id));
  }
  for (const char* typ : {"bos", "eos"}) {
    const std::string k = std::string("add_") + typ + "_token";
    if (auto e = tc.find(k); e != tc.end() && e->is_boolean()) w.set_bool("tokenizer.ggml." + k, e->get<bool>());
  }
  std::optional<std::string> chat_template;
  if (auto e = tc.find("chat_template"); e != tc.end()) {
    if (e->is_string()) {
      chat_template = e->get<std::string>();
    } else if (e->is_array()) {  // named templates: llama.cpp keeps "default"
      for (const auto& t : *e)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
          chat_template = t["template"].get<std::string>();
    }
  }
  if (!chat_template && fs::exists(dir + "/chat_template.jinja", ec)) {
    FATHOM_ASSIGN_OR_RETURN(std::string t, read_text_file(dir + "/chat_template.jinja"));
    chat_template = t;
  }
  if (chat_template) w.set_string("tokenizer.chat_template", *chat_template);
  return Status::ok();
}

}  // namespace fathom::convert
