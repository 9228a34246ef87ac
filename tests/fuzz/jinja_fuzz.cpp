// The chat-template engine: input = template text, optionally followed by a NUL byte and a JSON
// context. The template is parsed and rendered in both lexer modes (hf_chat_mode on and off)
// against the given context, or else a small fixed conversation. Any outcome is fine except a
// crash, a sanitizer report, a leak or a hang.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& fixed_context() {
  static const nlohmann::ordered_json context = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi <think> {{ x }} \u00e9"},
      {"role": "assistant", "content": "Hello", "reasoning_content": "greet",
       "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "content": "42"},
      {"role": "user", "content": [{"type": "text", "text": "parts"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "enable_thinking": false
  })");
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(text, '\0', size);
  const size_t template_size = nul ? static_cast<size_t>(static_cast<const char*>(nul) - text) : size;
  const std::string source(text, template_size);
  nlohmann::ordered_json context = fixed_context();
  if (nul) {
    auto parsed = nlohmann::ordered_json::parse(text + template_size + 1, text + size, nullptr, /*allow_exceptions=*/false,
                                                /*ignore_comments=*/false);
    // Deep contexts are refused by render_template itself; malformed ones fall back.
    if (!parsed.is_discarded() && parsed.is_object()) context = std::move(parsed);
  }
  for (bool hf_chat_mode : {true, false}) (void)fathom::render_template(source, context, hf_chat_mode);
  return 0;
}
