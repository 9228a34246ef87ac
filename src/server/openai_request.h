// Parsing and validation of the OpenAI request bodies (/v1/chat/completions, /v1/completions)
// into what the engine needs. Every rejection names the parameter and says what is accepted,
// so a client author can fix the request from the message alone. Unknown parameters are
// ignored, as the OpenAI API's clients send many optional ones (user, metadata, ...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "runtime/sampler.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tool_calls.h"

namespace fathom::server {

enum class Endpoint { kChat, kCompletions };

// One /v1/completions prompt: text to tokenize, or token ids sent by the client.
struct PromptInput {
  std::string text;             // prompt text (when !is_tokens)
  std::vector<int32_t> tokens;  // prompt token ids (when is_tokens)
  bool is_tokens = false;       // the client sent token ids
};

// Values a request falls back to for what it omits (from the serve command line).
struct RequestDefaults {
  SamplingParams sampling;  // temperature, top_k, top_p, min_p, repeat penalty
  int32_t max_tokens = 0;   // 0: up to the end of the context
};

// tool_choice: whether the model may, must, or must not call a tool (and which).
enum class ToolChoiceMode { kAuto, kNone, kRequired, kNamed };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;                   // "model" as sent ("" when absent)
  std::vector<ChatTurn> messages;      // chat: the conversation, content parts joined, tool calls and results
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // chat: the tools offered, as sent
  ToolChoiceMode tool_choice = ToolChoiceMode::kAuto;  // "auto" unless sent ("none" drops the tools)
  std::string tool_choice_name;        // the function named by tool_choice (kNamed)
  bool parallel_tool_calls = true;     // false: only the first call of a turn is returned
  int32_t n = 1;                       // choices per prompt
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> bias added to its logit, in [-100, 100]
  std::vector<PromptInput> prompts;    // completions: one choice per prompt
  int32_t max_tokens = 0;              // max_completion_tokens / max_tokens; 0: to the end of the context
  SamplingParams sampling;             // sampling settings, defaults filled in
  bool seed_given = false;             // "seed" was sent (otherwise the server picks one)
  std::vector<std::string> stop;       // stop strings
  bool stream = false;                 // answer with Server-Sent Events
  bool include_usage = false;          // stream_options.include_usage: a final usage chunk
  bool logprobs = false;               // report the chosen tokens' log probabilities
  int32_t top_logprobs = 0;            // alternatives per token (chat top_logprobs, completions logprobs)
  bool ignore_eos = false;             // extension: generate past end-of-generation tokens
  bool reasoning_inline = false;       // extension: "reasoning_format": "none" keeps <think> text in content
  nlohmann::json chat_template_kwargs = nlohmann::json::object();  // extension: extra template variables
                                       // (e.g. {"enable_thinking": true}), as vLLM and llama.cpp accept  // Set by the Ollama API (src/server/ollama_api.cpp), never read from an OpenAI body:
  int64_t context_tokens = 0;          // options.num_ctx: the request's context window, at most the server's; 0: the server's
  bool close_reasoning = false;        // think false: a chat prompt left inside <think> gets the block closed
};

// Limits on what one request may ask for.
inline constexpr int kMaxStopStrings = 16;   // stop strings per request
inline constexpr int kMaxTopLogprobs = 20;   // alternatives per token
inline constexpr int kMaxPrompts = 16;       // prompts in one /v1/completions request
// Arrays and objects nested in a request body. Real requests nest about 6 deep (messages ->
// content parts -> image_url, tools -> parameters schema); the limit leaves room for deep tool
// schemas while keeping every later dump(), copy and template walk far from the stack's end.
inline constexpr int kMaxRequestJsonDepth = 64;
inline constexpr int kMaxChoices = 16;       // n, and prompts x n in one request
inline constexpr int kMaxTools = 128;        // tools offered in one request
inline constexpr int kMaxToolCalls = 128;    // calls in one assistant message of the history
inline constexpr int kMaxLogitBias = 1024;   // logit_bias entries

// Parses the body text as JSON; a syntax error names the byte offset, and a body nested deeper
// than kMaxRequestJsonDepth is rejected before parsing.
std::variant<nlohmann::json, ApiError> parse_json_body(const std::string& body);

// Validates an endpoint's request object. The ApiError is always a 400 naming the parameter.
// The body in its key order (ordered_json) keeps the tools and a json_schema as the client
// wrote them; a nlohmann::json body converts, with its keys sorted.
std::variant<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, const nlohmann::ordered_json& body,
                                                           const RequestDefaults& defaults);

}  // namespace fathom::server
