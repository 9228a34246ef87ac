#include "tokenizer/prompt.h"

namespace fathom {

const char* const kPlainChatTemplate =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text, bool allow_bos) {
  bool add_bos = allow_bos && tokenizer.add_bos() && tokenizer.bos_id() >= 0;
  if (add_bos) {
    const std::string bos_text = tokenizer.token_text(tokenizer.bos_id());
    if (!bos_text.empty() && text.compare(0, bos_text.size(), bos_text) == 0) add_bos = false;
  }
  return tokenizer.encode(text, add_bos, /*parse_special=*/true);
}

ChatFormatter::ChatFormatter(const Tokenizer& tokenizer, const std::string& template_override)
    : source_(!template_override.empty() ? template_override : tokenizer.chat_template().value_or("")),
      bos_(tokenizer.bos_id() >= 0 ? tokenizer.token_text(tokenizer.bos_id()) : ""),
      eos_(tokenizer.eos_id() >= 0 ? tokenizer.token_text(tokenizer.eos_id()) : "") {
  if (source_.empty()) {
    source_ = kPlainChatTemplate;
    plain_fallback_ = true;
  }
}

Expected<std::string> ChatFormatter::render(nlohmann::ordered_json messages, const nlohmann::ordered_json& tools,
                                            const nlohmann::json& extra) const {
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  for (const auto& [key, value] : extra.items()) context[key] = nlohmann::ordered_json::parse(value.dump());
  context["messages"] = std::move(messages);
  if (!tools.is_null()) context["tools"] = tools;
  else context.erase("tools");
  context["add_generation_prompt"] = true;
  context["bos_token"] = bos_;
  context["eos_token"] = eos_;
  return render_template(source_, context, /*hf_chat_mode=*/true);
}

Expected<std::string> ChatFormatter::render(const std::vector<ChatMessage>& messages) const {
  return apply_chat_template(source_, messages, /*add_generation_prompt=*/true, bos_, eos_);
}

}  // namespace fathom
