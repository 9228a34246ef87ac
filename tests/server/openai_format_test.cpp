// Request parsing, response shapes, reasoning split, metrics text and API keys, without a server.
#include <gtest/gtest.h>

#include <fstream>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "tokenizer/tokenizer.h"

namespace fathom::server {
namespace {

using nlohmann::json;

OpenAiRequest parse_ok(Endpoint e, const json& body) {
  auto r = parse_openai_request(e, body, RequestDefaults{});
  if (auto* err = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << err->message;
    return {};
  }
  return std::get<OpenAiRequest>(r);
}

ApiError parse_error(Endpoint e, const json& body) {
  auto r = parse_openai_request(e, body, RequestDefaults{});
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body.dump();
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

const json kHello = json::array({{{"role", "user"}, {"content", "hi"}}});

TEST(OpenAiRequest, ChatDefaultsAndFields) {
  RequestDefaults d;
  d.sampling.temperature = 0.3f;
  d.max_tokens = 7;
  auto parsed = parse_openai_request(Endpoint::kChat, {{"messages", kHello}}, d);
  const auto& r = std::get<OpenAiRequest>(parsed);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.3f);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seed_given);

  const OpenAiRequest full = parse_ok(
      Endpoint::kChat,
      {{"model", "m"}, {"messages", json::array({{{"role", "developer"}, {"content", "sys"}},
                                                  {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}})}}})},
       {"max_tokens", 5}, {"max_completion_tokens", 9}, {"temperature", 1.5}, {"top_p", 0.5}, {"top_k", 3},
       {"min_p", 0.1}, {"presence_penalty", 0.5}, {"frequency_penalty", -0.5}, {"repetition_penalty", 1.1},
       {"seed", 42}, {"stop", "END"}, {"stream", true}, {"stream_options", {{"include_usage", true}}},
       {"logprobs", true}, {"top_logprobs", 3}, {"n", 1}, {"user", "ignored"}, {"reasoning_format", "none"}});
  EXPECT_EQ(full.model, "m");
  ASSERT_EQ(full.messages.size(), 2u);
  EXPECT_EQ(full.messages[0].message.role, "system");
  EXPECT_EQ(full.messages[1].message.content, "ab");
  EXPECT_EQ(full.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(full.sampling.temperature, 1.5f);
  EXPECT_EQ(full.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(full.sampling.repeat_penalty, 1.1f);
  EXPECT_EQ(full.sampling.seed, 42u);
  EXPECT_TRUE(full.seed_given);
  EXPECT_EQ(full.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(full.stream && full.include_usage && full.logprobs && full.reasoning_inline);
  EXPECT_EQ(full.top_logprobs, 3);
}

TEST(OpenAiRequest, RejectionsNameTheParameter) {
  struct Case {
    json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {{{"messages", kHello}, {"temperature", "hot"}}, "temperature"},
      {{{"messages", kHello}, {"temperature", 3}}, "temperature"},
      {{{"messages", kHello}, {"top_p", -0.1}}, "top_p"},
      {{{"messages", kHello}, {"max_tokens", 0}}, "max_tokens"},
      {{{"messages", kHello}, {"max_tokens", 1.5}}, "max_tokens"},
      {{{"messages", kHello}, {"n", 17}}, "n"},
      {{{"messages", kHello}, {"n", 0}}, "n"},
      {{{"messages", kHello}, {"response_format", {{"type", "yaml"}}}}, "response_format.type"},
      {{{"messages", kHello}, {"response_format", {{"type", "json_schema"}}}}, "response_format.json_schema"},
      {{{"messages", kHello}, {"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", {{"not", {{"type", "string"}}}}}}}}}}, "response_format.json_schema.schema"},
      {{{"messages", kHello}, {"grammar", "root ::= x"}}, "grammar"},
      {{{"messages", kHello}, {"grammar", "root ::= \"a\""}, {"response_format", {{"type", "json_object"}}}}, "grammar"},
      {{{"messages", kHello}, {"guided_json", {{"type", "object"}}}}, "guided_json"},
      {{{"messages", kHello}, {"logit_bias", {{"abc", 1}}}}, "logit_bias"},
      {{{"messages", kHello}, {"logit_bias", {{"5", 101}}}}, "logit_bias"},
      {{{"messages", kHello}, {"tool_choice", "required"}}, "tool_choice"},
      {{{"messages", kHello}, {"tools", json::array({{{"type", "function"}, {"function", {{"name", "bad name"}}}}})}}, "tools[0].function.name"},
      {{{"messages", kHello}, {"tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "g"}}}}}}, "tool_choice"},
      {{{"messages", json::array({{{"role", "tool"}, {"content", "x"}, {"tool_call_id", "nope"}}})}}, "messages[0].tool_call_id"},
      {{{"messages", json::array({{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({{{"id", "c1"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", "not json"}}}}})}}})}}, "messages[0].tool_calls[0].function.arguments"},
      {{{"messages", kHello}, {"stop", json::array({1})}}, "stop"},
      {{{"messages", kHello}, {"stream", "yes"}}, "stream"},
      {{{"messages", kHello}, {"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"messages", kHello}, {"top_logprobs", 2}}, "top_logprobs"},
      {{{"messages", kHello}, {"logprobs", true}, {"top_logprobs", 99}}, "top_logprobs"},
      {{{"messages", kHello}, {"reasoning_format", "xml"}}, "reasoning_format"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", json::array({{{"role", "robot"}, {"content", "x"}}})}}, "messages[0].role"},
      {{{"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}}})}}})}}, "messages[0].content"},
  };
  for (const Case& c : cases) {
    const ApiError e = parse_error(Endpoint::kChat, c.body);
    EXPECT_EQ(e.http_status, 400) << c.body.dump();
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param) << c.body.dump() << " -> " << e.message;
    EXPECT_NE(e.message.find(c.param.substr(0, c.param.find('['))), std::string::npos) << e.message;
  }
  EXPECT_EQ(parse_error(Endpoint::kChat, json::array()).http_status, 400);
}

TEST(OpenAiRequest, CompletionPrompts) {
  EXPECT_EQ(parse_ok(Endpoint::kCompletions, {{"prompt", "hi"}}).prompts.size(), 1u);
  const OpenAiRequest two = parse_ok(Endpoint::kCompletions, {{"prompt", {"a", "b"}}});
  ASSERT_EQ(two.prompts.size(), 2u);
  EXPECT_EQ(two.prompts[1].text, "b");
  const OpenAiRequest ids = parse_ok(Endpoint::kCompletions, {{"prompt", {1, 2, 3}}});
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  const OpenAiRequest legacy = parse_ok(Endpoint::kCompletions, {{"prompt", "x"}, {"logprobs", 2}});
  EXPECT_TRUE(legacy.logprobs);
  EXPECT_EQ(legacy.top_logprobs, 2);
  EXPECT_EQ(parse_error(Endpoint::kCompletions, {{"prompt", 5}}).param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, {{"prompt", {-1}}}).param, "prompt");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, {{"prompt", "x"}, {"echo", true}}).param, "echo");
}

TEST(OpenAiRequest, MalformedJson) {
  auto r = parse_json_body("{\"messages\": [");
  ASSERT_TRUE(std::holds_alternative<ApiError>(r));
  EXPECT_EQ(std::get<ApiError>(r).code, "invalid_json");
  const json body = json::parse(std::get<ApiError>(r).to_json());
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(body["error"]["param"].is_null());
}

// chat_template_kwargs of `depth` nested arrays around a string, as a body text.
std::string nested_kwargs_body(int depth) {
  std::string body = R"({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"x": )";
  // The kwargs object itself and the outer body are two of the levels.
  body += std::string(depth - 2, '[');
  body += "\"[{\\\"[\"";  // brackets inside strings, after an escaped quote, do not count
  body += std::string(depth - 2, ']');
  body += "}}";
  return body;
}

TEST(OpenAiRequest, NestingPastTheLimitIsA400) {
  // The case that killed the server: 200,000 nested arrays in chat_template_kwargs (~400 KB).
  auto deep = parse_json_body(nested_kwargs_body(200000));
  ASSERT_TRUE(std::holds_alternative<ApiError>(deep));
  const ApiError& err = std::get<ApiError>(deep);
  EXPECT_EQ(err.http_status, 400);
  EXPECT_EQ(err.type, "invalid_request_error");
  EXPECT_NE(err.message.find("deeper than 64 levels"), std::string::npos) << err.message;

  auto just_over = parse_json_body(nested_kwargs_body(kMaxRequestJsonDepth + 1));
  EXPECT_TRUE(std::holds_alternative<ApiError>(just_over));

  // At the limit the body parses, validates, and the kwargs survive the dump/parse round trip
  // the server applies before rendering.
  auto at_limit = parse_json_body(nested_kwargs_body(kMaxRequestJsonDepth));
  ASSERT_TRUE(std::holds_alternative<json>(at_limit));
  const OpenAiRequest req = parse_ok(Endpoint::kChat, std::get<json>(at_limit));
  const auto copy = nlohmann::ordered_json::parse(req.chat_template_kwargs.dump());
  EXPECT_EQ(copy["x"].dump().size(), req.chat_template_kwargs["x"].dump().size());
}

TEST(OpenAiRequest, NumberOutOfRangeIsA400) {
  // nlohmann reports a too-large number as out_of_range, not parse_error.
  auto r = parse_json_body(R"({"temperature": 1e999})");
  ASSERT_TRUE(std::holds_alternative<ApiError>(r));
  EXPECT_EQ(std::get<ApiError>(r).code, "invalid_json");
}

std::unique_ptr<Tokenizer> qwen2_tokenizer() {
  auto t = Tokenizer::from_file(std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf");
  EXPECT_TRUE(t) << t.status().to_string();
  return t ? std::move(t).value() : nullptr;
}

TokenEvent text_event(const std::string& text) {
  TokenEvent e;
  e.token = 1;
  e.text = text;
  return e;
}

TokenEvent final_event(FinishReason reason) {
  TokenEvent e;
  e.finished = true;
  e.reason = reason;
  e.stats.n_prompt = 3;
  e.stats.n_generated = 4;
  return e;
}

TEST(ChoiceBuilder, SplitsReasoningStartedByThePrompt) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options o;
  o.split_reasoning = true;
  o.starts_in_reasoning = true;
  ChoiceBuilder b(*tok, o);
  std::string reasoning, content;
  for (const char* piece : {"Let me ", "think.\n</th", "ink>\n\n", "The answer", " is 4."}) {
    ChoiceBuilder::Delta d = b.push(text_event(piece));
    reasoning += d.reasoning;
    content += d.content;
  }
  ChoiceBuilder::Delta d = b.push(final_event(FinishReason::kStop));
  content += d.content;
  EXPECT_EQ(reasoning, "Let me think.\n");
  EXPECT_EQ(content, "The answer is 4.");
  EXPECT_EQ(b.reasoning(), reasoning);
  EXPECT_EQ(b.content(), content);
  EXPECT_TRUE(b.has_reasoning());
  EXPECT_TRUE(b.finished());

  ResponseMeta meta;
  meta.id = "chatcmpl-1";
  meta.model = "m";
  std::vector<ChoiceBuilder> choices{b};
  const json body = completion_body(meta, choices, Usage{3, 4});
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["reasoning_content"], "Let me think.\n");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "The answer is 4.");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["total_tokens"], 7);
}

TEST(ChoiceBuilder, ThinkTagInOutputAndInlineMode) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options split;
  split.split_reasoning = true;
  ChoiceBuilder b(*tok, split);
  EXPECT_FALSE(b.has_reasoning());
  b.push(text_event("<think>\nhmm</think>ok"));
  b.push(final_event(FinishReason::kLength));
  EXPECT_EQ(b.reasoning(), "hmm");
  EXPECT_EQ(b.content(), "ok");
  EXPECT_TRUE(b.has_reasoning());

  ChoiceBuilder inl(*tok, ChoiceBuilder::Options{});
  inl.push(text_event("<think>\nhmm</think>ok"));
  EXPECT_EQ(inl.content(), "<think>\nhmm</think>ok");
  EXPECT_FALSE(inl.has_reasoning());

  ResponseMeta meta;
  std::vector<ChoiceBuilder> choices{inl};
  EXPECT_FALSE(completion_body(meta, choices, Usage{})["choices"][0]["message"].contains("reasoning_content"));
}

TEST(ChoiceBuilder, StreamChunkShapes) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options o;
  o.split_reasoning = true;
  o.starts_in_reasoning = true;
  ChoiceBuilder b(*tok, o);
  ResponseMeta meta;
  meta.id = "chatcmpl-2";
  meta.include_usage = true;
  const json role = role_chunk(meta, 0);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(role["usage"].is_null());
  const json r = delta_chunk(meta, 0, b.push(text_event("why")));
  EXPECT_EQ(r["choices"][0]["delta"]["reasoning_content"], "why");
  EXPECT_FALSE(r["choices"][0]["delta"].contains("content"));
  const json c = delta_chunk(meta, 0, b.push(text_event("</think>yes")));
  EXPECT_EQ(c["choices"][0]["delta"]["content"], "yes");
  const json f = finish_chunk(meta, 0, FinishReason::kLength);
  EXPECT_EQ(f["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(f["choices"][0]["delta"].empty());
  const json u = usage_chunk(meta, Usage{2, 3});
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["completion_tokens"], 3);
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
}

TEST(ChoiceBuilder, LogprobShapes) {
  auto tok = qwen2_tokenizer();
  TokenEvent e = text_event("Hello");
  const int32_t hello = *tok->token_id("Hello");
  const int32_t world = *tok->token_id("world");
  e.token = hello;
  e.top_logprobs = {{hello, -0.5f}, {hello, -0.5f}, {world, -1.5f}, {world + 1, -2.0f}};

  ChoiceBuilder::Options chat;
  chat.logprobs = true;
  chat.top_logprobs = 2;
  chat.engine_logprobs = 3;  // the list above: the chosen token, then the top 3
  ChoiceBuilder b(*tok, chat);
  const ChoiceBuilder::Delta d = b.push(e);
  const json entry = d.logprobs["content"][0];
  EXPECT_EQ(entry["token"], "Hello");
  EXPECT_FLOAT_EQ(entry["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(entry["bytes"], json::array({72, 101, 108, 108, 111}));
  ASSERT_EQ(entry["top_logprobs"].size(), 2u);
  EXPECT_EQ(entry["top_logprobs"][1]["token"], "world");
  EXPECT_EQ(b.logprobs_json()["content"].size(), 1u);

  ChoiceBuilder::Options legacy;
  legacy.endpoint = Endpoint::kCompletions;
  legacy.logprobs = true;
  legacy.top_logprobs = 1;
  legacy.engine_logprobs = 3;
  ChoiceBuilder l(*tok, legacy);
  l.push(e);
  l.push(e);
  const json lp = l.logprobs_json();
  EXPECT_EQ(lp["tokens"], json::array({"Hello", "Hello"}));
  EXPECT_EQ(lp["text_offset"], json::array({0, 5}));
  EXPECT_EQ(lp["top_logprobs"][0].size(), 1u);
  EXPECT_FLOAT_EQ(lp["top_logprobs"][0]["Hello"].get<float>(), -0.5f);

  // An engine that lists only the top n: the chosen token's value is found among them.
  ChoiceBuilder top_only(*tok, chat);
  TokenEvent t = text_event(" world");
  t.token = hello;
  t.top_logprobs = {{world, -1.0f}, {hello, -1.5f}, {world + 1, -2.0f}};
  const json found = top_only.push(t).logprobs["content"][0];
  EXPECT_FLOAT_EQ(found["logprob"].get<float>(), -1.5f);
  EXPECT_EQ(found["top_logprobs"][0]["token"], "world");
  EXPECT_EQ(found["top_logprobs"].size(), 2u);
  t.token = world + 2;
  EXPECT_FLOAT_EQ(top_only.push(t).logprobs["content"][0]["logprob"].get<float>(), -9999.0f);
}

// Replays `text` through a ChoiceBuilder in pieces of `piece` bytes as a stream would, and
// returns the final body's choice and the tool-call deltas the stream carried.
struct Replayed {
  json choice;                        // completion_body's choices[0]
  std::vector<json> stream_calls;     // delta.tool_calls entries of the stream chunks, in order
  std::string stream_content;         // delta.content of the stream, joined
  std::string stream_reasoning;       // delta.reasoning_content, joined
  std::string finish;                 // the finish chunk's reason
  int64_t reasoning_tokens = 0;
};

Replayed replay(const Tokenizer& tok, ChoiceBuilder::Options o, const std::string& text, size_t piece) {
  ChoiceBuilder b(tok, o);
  ResponseMeta meta;
  Replayed r;
  auto collect = [&](const ChoiceBuilder::Delta& d) {
    for (const json& chunk : delta_chunks(meta, 0, d)) {
      const json& delta = chunk["choices"][0]["delta"];
      if (delta.contains("tool_calls")) r.stream_calls.push_back(delta["tool_calls"][0]);
      if (delta.contains("content")) r.stream_content += delta["content"].get<std::string>();
      if (delta.contains("reasoning_content")) r.stream_reasoning += delta["reasoning_content"].get<std::string>();
    }
  };
  for (size_t at = 0; at < text.size(); at += piece) collect(b.push(text_event(text.substr(at, piece))));
  collect(b.push(final_event(FinishReason::kStop)));
  r.finish = finish_chunk(meta, 0, b.finish_reason_text())["choices"][0]["finish_reason"];
  std::vector<ChoiceBuilder> choices{b};
  r.choice = completion_body(meta, choices, Usage{})["choices"][0];
  r.reasoning_tokens = b.reasoning_tokens();
  return r;
}

TEST(ChoiceBuilder, ToolCallsAfterReasoningWhateverTheChunking) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options o;
  o.split_reasoning = true;
  o.starts_in_reasoning = true;
  o.tool_format = ToolCallFormat::kDeepSeekR1;
  o.call_id_seed = 42;
  const std::string text =
      "The user wants the weather.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
      "```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n"
      "{\"a\": 1, \"b\": 2}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const Replayed whole = replay(*tok, o, text, text.size());
  const json& message = whole.choice["message"];
  EXPECT_TRUE(message["content"].is_null()) << message.dump();
  EXPECT_EQ(message["reasoning_content"], "The user wants the weather.\n");
  ASSERT_EQ(message["tool_calls"].size(), 2u) << message.dump();
  EXPECT_EQ(message["tool_calls"][0]["type"], "function");
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\"}");
  EXPECT_EQ(message["tool_calls"][1]["function"]["name"], "add");
  const std::string id = message["tool_calls"][0]["id"];
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(id.size(), 29u);
  EXPECT_NE(id, message["tool_calls"][1]["id"]);
  EXPECT_EQ(whole.choice["finish_reason"], "tool_calls");
  EXPECT_EQ(whole.finish, "tool_calls");
  // The stream: per call a header {index, id, type, function: {name}} then the arguments.
  ASSERT_EQ(whole.stream_calls.size(), 4u);
  EXPECT_EQ(whole.stream_calls[0]["index"], 0);
  EXPECT_EQ(whole.stream_calls[0]["id"], id);
  EXPECT_EQ(whole.stream_calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(whole.stream_calls[1]["function"]["arguments"], "{\"city\": \"Paris\"}");
  EXPECT_FALSE(whole.stream_calls[1].contains("id"));
  EXPECT_EQ(whole.stream_calls[2]["index"], 1);
  EXPECT_EQ(whole.stream_content, "");
  EXPECT_EQ(whole.stream_reasoning, "The user wants the weather.\n");
  for (size_t piece = 1; piece <= 7; ++piece) {
    SCOPED_TRACE(piece);
    const Replayed split = replay(*tok, o, text, piece);
    EXPECT_EQ(split.choice, whole.choice);
    EXPECT_EQ(split.stream_calls, whole.stream_calls);
    EXPECT_EQ(split.stream_content, whole.stream_content);
    EXPECT_EQ(split.stream_reasoning, whole.stream_reasoning);
  }
}

TEST(ChoiceBuilder, MalformedCallIsContentAndNoToolsNoParsing) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options o;
  o.tool_format = ToolCallFormat::kQwen;
  const std::string broken = "Sure.<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}}\n</tool_call>";
  const Replayed r = replay(*tok, o, broken, 3);
  EXPECT_EQ(r.choice["message"]["content"], broken);
  EXPECT_FALSE(r.choice["message"].contains("tool_calls"));
  EXPECT_EQ(r.choice["finish_reason"], "stop");
  EXPECT_EQ(r.stream_content, broken);
  // tool_choice "none" (or no tools): the markers are text.
  const std::string call = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
  const Replayed plain = replay(*tok, ChoiceBuilder::Options{}, call, 4);
  EXPECT_EQ(plain.choice["message"]["content"], call);
  o.tool_format = ToolCallFormat::kQwen;
  const Replayed parsed = replay(*tok, o, "Checking. " + call, 4);
  EXPECT_EQ(parsed.choice["message"]["content"], "Checking.");  // the space before the call is layout
  EXPECT_EQ(parsed.choice["message"]["tool_calls"][0]["function"]["arguments"], "{}");
}

TEST(ChoiceBuilder, ForcedCallAndReasoningTokens) {
  auto tok = qwen2_tokenizer();
  ChoiceBuilder::Options o;
  o.tool_format = ToolCallFormat::kQwen;
  o.forced_call_name = "add";
  o.forced_call_prefix = forced_call_prefix(ToolCallFormat::kQwen, "", "add");
  const Replayed r = replay(*tok, o, "{\"a\": 1}}\n</tool_call>", 2);
  ASSERT_EQ(r.choice["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(r.choice["message"]["tool_calls"][0]["function"]["name"], "add");
  EXPECT_EQ(r.choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
  // Reasoning tokens: each event inside <think> (the tags' tokens included) counts once.
  ChoiceBuilder::Options think;
  think.split_reasoning = true;
  ChoiceBuilder b(*tok, think);
  for (const char* piece : {"<think>", "a", "b", "</think>", "answer", "!"}) b.push(text_event(piece));
  b.push(final_event(FinishReason::kStop));
  EXPECT_EQ(b.reasoning_tokens(), 4);
  const json usage = usage_json(Usage{1, 6, b.reasoning_tokens()});
  EXPECT_EQ(usage["completion_tokens_details"]["reasoning_tokens"], 4);
}

TEST(OpenAiRequest, ToolsAndToolHistory) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])");
  const json messages = json::parse(R"([
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])");
  const OpenAiRequest r = parse_ok(Endpoint::kChat, {{"messages", messages}, {"tools", tools},
                                                     {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
                                                     {"logit_bias", {{"11", -100}, {"12", 5.5}}}, {"n", 3}});
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_TRUE(r.messages[1].content_null);
  ASSERT_EQ(r.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[1].tool_calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(r.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r.tool_choice, ToolChoiceMode::kNamed);
  EXPECT_EQ(r.tool_choice_name, "get_weather");
  EXPECT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.n, 3);
  ASSERT_EQ(r.logit_bias.size(), 2u);
  EXPECT_EQ(r.logit_bias[0], (std::pair<int32_t, float>{11, -100.0f}));
  EXPECT_EQ(parse_ok(Endpoint::kChat, {{"messages", kHello}, {"tools", tools}, {"tool_choice", "none"}}).tool_choice,
            ToolChoiceMode::kNone);
  EXPECT_EQ(parse_error(Endpoint::kCompletions, {{"prompt", "x"}, {"tools", tools}}).param, "tools");
  EXPECT_EQ(parse_error(Endpoint::kCompletions, {{"prompt", {"a", "b"}}, {"n", 9}}).param, "n");
}

TEST(Reasoning, PromptEndsInReasoning) {
  EXPECT_TRUE(prompt_ends_in_reasoning("<｜Assistant｜><think>\n"));
  EXPECT_TRUE(prompt_ends_in_reasoning("x<think>"));
  EXPECT_FALSE(prompt_ends_in_reasoning("<think>\n\n</think>\n\n"));
  EXPECT_FALSE(prompt_ends_in_reasoning("<|im_start|>assistant\n"));
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/completions", 400);
  RequestStats s;
  s.n_prompt = 10;
  s.n_generated = 5;
  s.t_submit = 1.0;
  s.t_first_token = 1.02;
  s.t_end = 1.1;
  m.record_generation(s, "");
  s.n_prompt = 7;
  s.n_generated = 2;
  m.record_generation(s, "key-2");
  m.record_unfinished(s, /*cancelled=*/true, "key-2");
  EngineGauges g;
  g.kv_blocks_used = 3;
  g.kv_blocks_free = 61;
  g.prefix_query_tokens = 40;
  g.prefix_hit_tokens = 16;
  m.set_engine_gauges(g);
  const std::string text = m.render();
  EXPECT_NE(text.find("fathom_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("fathom_requests_total{route=\"/v1/completions\",status=\"400\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_prompt_tokens_total 24\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_generated_tokens_total 9\n"), std::string::npos);
  // Per key: only keys that made requests, never the anonymous ones.
  EXPECT_NE(text.find("fathom_key_prompt_tokens_total{key=\"key-2\"} 14\n"), std::string::npos) << text;
  EXPECT_NE(text.find("fathom_key_generated_tokens_total{key=\"key-2\"} 4\n"), std::string::npos);
  EXPECT_EQ(text.find("key=\"\""), std::string::npos);
  EXPECT_NE(text.find("fathom_prefix_cache_query_tokens_total 40\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_prefix_cache_hit_tokens_total 16\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_kv_blocks_used 3\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_kv_blocks_free 61\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_prefix_cache_hit_rate 0\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE fathom_ttft_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_ttft_seconds_bucket{le=\"0.01\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_ttft_seconds_bucket{le=\"0.025\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_ttft_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_tpot_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(text.find("fathom_e2e_seconds_count 2\n"), std::string::npos);
}

TEST(ApiKeys, BearerMatchingAndKeyFile) {
  const std::string file = std::string(FATHOM_TEST_TMP) + "/serve-keys.txt";
  std::ofstream(file) << "# team keys\n  sk-file-one \n\nsk-file-two\n";
  auto keys = ApiKeys::load({"sk-cli"}, file);
  ASSERT_TRUE(keys) << keys.status().to_string();
  EXPECT_TRUE(keys->enabled());
  EXPECT_EQ(keys->match("Bearer sk-cli"), std::optional<size_t>(0));
  EXPECT_EQ(keys->match("bearer sk-file-one"), std::optional<size_t>(1));
  EXPECT_EQ(keys->match("Bearer sk-file-two"), std::optional<size_t>(2));
  EXPECT_FALSE(keys->match("Bearer sk-file"));
  EXPECT_FALSE(keys->match("Bearer sk-file-two-and-more"));
  EXPECT_FALSE(keys->match("sk-cli"));
  EXPECT_FALSE(keys->match(""));
  EXPECT_EQ(ApiKeys::key_id(2), "key-3");
  EXPECT_FALSE(ApiKeys::load({}, file + ".missing"));
  auto none = ApiKeys::load({}, "");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->enabled());
}

}  // namespace
}  // namespace fathom::server
