// Chat templates: a Jinja subset interpreter that renders the templates shipped with DeepSeek
// models (GGUF tokenizer.chat_template / tokenizer_config.json) byte-identically to python's
// jinja2. An unsupported construct is an error naming it and its position.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool"
  std::string content;
  std::string reasoning_content;  // assistant's <think> text, if kept separately ("" when none)
};

// Renders any template with a JSON context (variables visible to the template), with jinja2's
// defaults: trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=False — and, like
// transformers' apply_chat_template, trim_blocks=True and lstrip_blocks=True when
// `hf_chat_mode` is set. Globals are transformers': raise_exception(msg), strftime_now(fmt),
// namespace, range, dict; `tojson` is transformers' json.dumps(ensure_ascii=False) version.
// Errors: kInvalidArgument for syntax and runtime errors (including raise_exception, whose
// message is kept), kUnsupported for a construct outside the subset; both name line and column.
// nlohmann::json sorts object keys, so dicts reach the template in key order; callers whose
// templates print dicts (`tools | tojson`) and must match python should pass ordered_json.
Expected<std::string> render_template(const std::string& source, const nlohmann::json& context,
                                      bool hf_chat_mode = true);
// Same, keeping the objects' key order as python's json.loads would.
Expected<std::string> render_template(const std::string& source, const nlohmann::ordered_json& context,
                                      bool hf_chat_mode = true);

// Convenience: messages + add_generation_prompt + bos_token + eos_token.
Expected<std::string> apply_chat_template(const std::string& source, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, const std::string& bos_token,
                                          const std::string& eos_token);

// Splits generated text into reasoning (between <think> and </think>) and answer, incrementally.
// DeepSeek-R1 templates end the prompt with "<think>\n", so generation may begin inside the
// reasoning block: construct with starts_in_reasoning = true in that case.
class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(bool starts_in_reasoning = false) : in_reasoning_(starts_in_reasoning) {}
  struct Delta {
    std::string reasoning;  // new reasoning text
    std::string content;    // new answer text
  };
  Delta push(std::string_view text);  // holds back a possible partial tag at the end
  Delta flush();
  bool in_reasoning() const { return in_reasoning_; }

 private:
  bool in_reasoning_;
  std::string pending_;  // text that might be the start of a tag
};

}  // namespace fathom
