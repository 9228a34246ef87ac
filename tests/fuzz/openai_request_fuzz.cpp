// The request path of `fathom serve` from body bytes to a rendered prompt: parse_json_body, then
// parse_openai_request for both endpoints, then what the server does with an accepted chat
// request (chat_template_kwargs copied through dump/parse, messages rendered with a real
// template). Every input must end in a value or an ApiError, never a crash or an exception.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "server/openai_request.h"
#include "tokenizer/tool_calls.h"
#include "tokenizer/chat_template.h"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string& chat_template() {
  static const std::string text =
      read_file(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-V3.1.jinja");
  return text;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (chat_template().empty()) __builtin_trap();  // shared test data missing: fail loudly
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fathom;
  using namespace fathom::server;
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_json_body(body);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    (void)err->to_json();
    return 0;
  }
  const nlohmann::json& json = std::get<nlohmann::json>(parsed);
  for (Endpoint endpoint : {Endpoint::kChat, Endpoint::kCompletions}) {
    auto request = parse_openai_request(endpoint, json, RequestDefaults{});
    if (auto* err = std::get_if<ApiError>(&request)) {
      (void)err->to_json();
      continue;
    }
    const OpenAiRequest& r = std::get<OpenAiRequest>(request);
    if (endpoint != Endpoint::kChat) continue;
    // As the server builds the template context (generation.cpp).
    nlohmann::ordered_json context = nlohmann::ordered_json::object();
    for (const auto& [key, value] : r.chat_template_kwargs.items())
      context[key] = nlohmann::ordered_json::parse(value.dump());
    context["messages"] = chat_messages_json(r.messages, /*object_arguments=*/(json.dump().size() & 1) != 0);
    if (!r.tools.empty()) context["tools"] = r.tools;
    context["add_generation_prompt"] = true;
    context["bos_token"] = "<s>";
    context["eos_token"] = "</s>";
    (void)render_template(chat_template(), context);
  }
  return 0;
}
