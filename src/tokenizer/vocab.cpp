#include "tokenizer/vocab.h"

#include <algorithm>

namespace fathom {

namespace {

// Texts of tokens that end a turn in the chat formats of the supported families. A model that
// marks them only by text (no eot id in its metadata) still stops on them.
const char* const kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<｜end▁of▁sentence｜>",
    "<|EOT|>", "<EOT>", "<｜EOT｜>", "<|eom_id|>", "<|end_of_text|>",
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

void Vocab::build_index() {
  token_to_id.clear();
  token_to_id.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) token_to_id.emplace(tokens[i], static_cast<int32_t>(i));
}

void Vocab::collect_specials_from_types() {
  specials.clear();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenType t = types[i];
    if (tokens[i].empty()) continue;
    if (t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined) {
      specials.push_back({tokens[i], static_cast<int32_t>(i), t != TokenType::kUserDefined, false, false});
    }
  }
}

void Vocab::collect_end_of_generation() {
  eog_ids.clear();
  for (int32_t id : {eos_id, eot_id}) {
    if (id >= 0) eog_ids.push_back(id);
  }
  for (const char* text : kEndOfTurnTexts) {
    auto it = token_to_id.find(std::string_view(text));
    if (it == token_to_id.end()) continue;
    // Only tokens that cannot come out of ordinary text: a normal token spelled "<EOT>" is text.
    if (type(it->second) == TokenType::kNormal && model == "llama") continue;
    if (std::find(eog_ids.begin(), eog_ids.end(), it->second) == eog_ids.end()) eog_ids.push_back(it->second);
  }
}

Status Vocab::validate() const {
  if (tokens.empty()) return error(ErrorCode::kInvalidFile, "tokenizer vocabulary is empty");
  if (types.size() != tokens.size()) {
    return error(ErrorCode::kInvalidFile, strprintf("token_type has %zu entries, tokens has %zu", types.size(),
                                                    tokens.size()));
  }
  if (!scores.empty() && scores.size() != tokens.size()) {
    return error(ErrorCode::kInvalidFile, strprintf("scores has %zu entries, tokens has %zu", scores.size(),
                                                    tokens.size()));
  }
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", bos_id}, {"eos", eos_id}, {"eot", eot_id}, {"unknown", unk_id}, {"padding", pad_id}};
  for (const auto& [name, id] : ids) {
    if (id >= n_vocab()) {
      return error(ErrorCode::kInvalidFile,
                   strprintf("%s token id %d is out of range (vocabulary has %d tokens)", name, id, n_vocab()));
    }
  }
  return Status::ok();
}

SpecialMatcher::SpecialMatcher(const std::vector<SpecialToken>& specials)
    : specials_(&specials), by_first_byte_(256) {
  for (uint32_t i = 0; i < specials.size(); ++i) {
    if (specials[i].text.empty()) continue;
    by_first_byte_[static_cast<uint8_t>(specials[i].text[0])].push_back(i);
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
      return specials[a].text.size() > specials[b].text.size();
    });
  }
}

void SpecialMatcher::split(std::string_view text, bool parse_special, std::vector<Fragment>* out) const {
  out->clear();
  size_t text_begin = 0;  // start of the raw text not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    const SpecialToken* match = nullptr;
    for (uint32_t index : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      const SpecialToken& special = (*specials_)[index];
      if (special.control && !parse_special) continue;
      if (text.compare(pos, special.text.size(), special.text) == 0) {
        match = &special;
        break;
      }
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t raw_end = pos;
    if (match->lstrip) {
      while (raw_end > text_begin && is_space(text[raw_end - 1])) --raw_end;
    }
    if (raw_end > text_begin) out->push_back({text.substr(text_begin, raw_end - text_begin), -1});
    out->push_back({text.substr(pos, match->text.size()), match->id});
    pos += match->text.size();
    if (match->rstrip) {
      while (pos < text.size() && is_space(text[pos])) ++pos;
    }
    text_begin = pos;
  }
  if (text_begin < text.size()) out->push_back({text.substr(text_begin), -1});
}

VocabTokenizer::VocabTokenizer(Vocab vocab) : vocab_(std::move(vocab)), specials_(vocab_.specials) {}

bool VocabTokenizer::is_end_of_generation(int32_t id) const {
  return std::find(vocab_.eog_ids.begin(), vocab_.eog_ids.end(), id) != vocab_.eog_ids.end();
}

std::optional<int32_t> VocabTokenizer::token_id(std::string_view text) const {
  auto it = vocab_.token_to_id.find(text);
  if (it == vocab_.token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string VocabTokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return std::string();
  return vocab_.tokens[static_cast<size_t>(id)];
}

}  // namespace fathom
