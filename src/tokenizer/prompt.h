// Prompt preparation, the one way every front end (run and chat, the server, the local load
// generator) turns text or a conversation into prompt tokens: which chat template renders the
// conversation, the variables it is rendered with, and where BOS goes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom {

// The template for a model file without tokenizer.chat_template (base models): plain turns,
// "User: ..." and "Assistant: ...", ending with an open "Assistant:".
extern const char* const kPlainChatTemplate;

// BOS per the tokenizer's metadata (and allow_bos) unless the text already starts with the BOS
// token's text, as chat templates often write it; special tokens in the text are parsed.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text, bool allow_bos = true);

// Renders conversations for one model, always with the generation prompt opened.
class ChatFormatter {
 public:
  // template_override: Jinja source replacing the model's; "" keeps the model's, or
  // kPlainChatTemplate when the model has none.
  explicit ChatFormatter(const Tokenizer& tokenizer, const std::string& template_override = "");

  const std::string& source() const { return source_; }
  // Neither an override nor the model's template: kPlainChatTemplate is in use.
  bool plain_fallback() const { return plain_fallback_; }

  // transformers' apply_chat_template context: messages, tools (left out when null),
  // add_generation_prompt, bos_token and eos_token; `extra` adds variables
  // (chat_template_kwargs), which cannot replace those.
  Expected<std::string> render(nlohmann::ordered_json messages, const nlohmann::ordered_json& tools = nullptr,
                               const nlohmann::json& extra = nlohmann::json::object()) const;
  Expected<std::string> render(const std::vector<ChatMessage>& messages) const;

 private:
  std::string source_;          // the Jinja template
  bool plain_fallback_ = false;
  std::string bos_;             // BOS token text ("" when the vocabulary has none)
  std::string eos_;             // EOS token text ("" when none)
};

}  // namespace fathom
