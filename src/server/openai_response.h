// Response bodies and Server-Sent Event chunks in the shapes of the OpenAI API:
// chat.completion / chat.completion.chunk and text_completion, usage, logprobs (the chat shape
// and the legacy completions shape), and DeepSeek reasoning split into reasoning_content.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/request.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace fathom::server {

// What every body and chunk of one response repeats.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kChat;
  std::string id;        // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;   // unix seconds at the request's arrival
  std::string model;     // the model name clients address
  bool include_usage = false;  // streaming: every chunk carries "usage" (null until the last)
};

struct Usage {
  int64_t prompt_tokens = 0;      // prompt tokens of all choices
  int64_t completion_tokens = 0;  // generated tokens of all choices (end-of-generation included)
  int64_t reasoning_tokens = 0;   // of those, the tokens inside <think> blocks (the tags included)
  int64_t context_shifts = 0;     // times choices shifted the context to continue (serve --context-shift)
};

// One tool call of a choice, as the API returns it.
struct ApiToolCall {
  size_t index = 0;       // position among the choice's calls
  std::string id;         // "call_<random>"
  std::string name;       // function name
  std::string arguments;  // JSON text
};

// True when a rendered chat prompt leaves the model inside a <think> block (DeepSeek-R1
// templates end with "<think>\n"), so the generation begins as reasoning.
bool prompt_ends_in_reasoning(const std::string& rendered_prompt);

// Turns one choice's engine events into API text: splits reasoning from the answer (chat,
// unless kept inline), formats log probabilities, and remembers everything for the final body.
class ChoiceBuilder {
 public:
  struct Options {
    Endpoint endpoint = Endpoint::kChat;
    bool split_reasoning = false;      // chat with reasoning_format "deepseek"
    bool starts_in_reasoning = false;  // the prompt ended inside <think>
    bool logprobs = false;             // report log probabilities
    int32_t top_logprobs = 0;          // alternatives per token
    int32_t engine_logprobs = 0;       // GenerationRequest::logprobs the engine was asked for
    ToolCallFormat tool_format = ToolCallFormat::kNone;  // parse calls in this format (kNone: no tools offered)
    std::string forced_call_prefix;    // tool_choice required/named: the call opening the prompt ended with
    std::string forced_call_name;      // ... and the function it names ("" when the model picks)
    std::vector<std::string> tool_names;  // the functions offered: a call of another one is content
    size_t max_tool_calls = SIZE_MAX;  // parallel_tool_calls false: 1 (later calls are dropped)
    uint64_t call_id_seed = 0;         // call ids are "call_" + a hash of this and the call's index
  };
  ChoiceBuilder(const Tokenizer& tokenizer, const Options& options);

  struct Delta {
    std::string content;    // new answer text
    std::string reasoning;  // new reasoning text
    nlohmann::json logprobs;  // chat: {"content": [...]}; completions: legacy object; null when none
    std::vector<ApiToolCall> tool_calls;  // calls completed by this event
    bool empty() const { return content.empty() && reasoning.empty() && logprobs.is_null() && tool_calls.empty(); }
  };
  // Consumes one event (the final one flushes text held back as a possible partial tag).
  Delta push(const TokenEvent& event);

  bool finished() const { return finished_; }
  FinishReason finish_reason() const { return reason_; }
  const Status& status() const { return status_; }         // why, when finish_reason() == kError
  const RequestStats& stats() const { return stats_; }     // filled once finished
  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<ApiToolCall>& tool_calls() const { return tool_calls_; }
  int64_t reasoning_tokens() const { return reasoning_tokens_; }  // tokens generated inside <think>
  // "stop", "length", or "tool_calls" when the choice stopped after calling tools.
  const char* finish_reason_text() const;
  // Whether "reasoning_content" belongs in the message: the choice was ever in reasoning.
  bool has_reasoning() const { return options_.split_reasoning && (options_.starts_in_reasoning || !reasoning_.empty()); }
  nlohmann::json logprobs_json() const;  // all tokens so far, or null when not requested

 private:
  // The chosen token's log probability and the best alternatives, from an event's list.
  struct TokenChoice {
    TokenLogprob chosen;                    // the sampled token
    std::vector<TokenLogprob> alternatives; // most likely first, at most top_logprobs
  };
  TokenChoice split_logprobs(const TokenEvent& event) const;
  nlohmann::json chat_entry(const TokenChoice& t) const;
  nlohmann::json legacy_entry(const TokenChoice& t);  // one token, legacy shape

  const Tokenizer& tokenizer_;
  Options options_;
  std::optional<ReasoningSplitter> splitter_;  // chat: tracks <think> (splits only with split_reasoning)
  std::optional<ToolCallParser> tool_parser_;  // present when tools were offered
  std::vector<ApiToolCall> tool_calls_;        // calls so far
  int64_t reasoning_tokens_ = 0;               // sampled tokens inside <think>
  std::string content_;                        // answer text so far (tool calls excluded)
  bool answer_started_ = false;                // answer text was seen (calls included): newlines are text
  std::string reasoning_;                      // reasoning text so far
  nlohmann::json chat_logprobs_ = nlohmann::json::array();  // chat: entries so far
  nlohmann::json legacy_logprobs_;             // completions: {tokens, token_logprobs, top_logprobs, text_offset}
  int64_t text_offset_ = 0;                    // completions: bytes of token text so far
  bool finished_ = false;
  FinishReason reason_ = FinishReason::kNone;
  Status status_;
  RequestStats stats_;
};

// "stop" or "length" (a cancelled or failed choice never reaches a response body).
const char* finish_reason_string(FinishReason reason);
nlohmann::json usage_json(const Usage& usage);

// The non-streaming body: chat.completion or text_completion.
nlohmann::json completion_body(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage& usage);

// Streaming chunks.
nlohmann::json role_chunk(const ResponseMeta& meta, size_t index);  // chat: the first delta
nlohmann::json delta_chunk(const ResponseMeta& meta, size_t index, const ChoiceBuilder::Delta& delta);
// The chunks of one delta: text (and logprobs) first, then per completed call one chunk with
// {index, id, type, function: {name, arguments: ""}} and one with {index, function: {arguments}}.
std::vector<nlohmann::json> delta_chunks(const ResponseMeta& meta, size_t index, const ChoiceBuilder::Delta& delta);
nlohmann::json finish_chunk(const ResponseMeta& meta, size_t index, FinishReason reason);
nlohmann::json finish_chunk(const ResponseMeta& meta, size_t index, const std::string& finish_reason);
nlohmann::json usage_chunk(const ResponseMeta& meta, const Usage& usage);  // stream_options.include_usage

// "data: {json}\n\n"; invalid UTF-8 in generated text (possible mid-character with a random
// model) is replaced rather than failing the stream.
std::string sse_event(const nlohmann::json& data);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";
std::string json_text(const nlohmann::json& value);  // dump with invalid UTF-8 replaced

}  // namespace fathom::server
