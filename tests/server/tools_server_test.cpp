// The agent-facing request surface end to end on the synthetic model: tools and tool histories
// reaching the prompt, forced calls coming back as tool_calls (plain and streamed), tool_choice
// "none", templates without a readable format, logit_bias, n > 1, reasoning_tokens, and
// /tokenize + /detokenize. The model's text is noise, so the parsing of well-formed calls is
// tested on fixed text in openai_format_test.cpp and tests/tokenizer/tool_calls_test.cpp.
#include <chrono>
#include <fstream>
#include <thread>
#include <set>
#include <sstream>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shared_template(const std::string& name) {
  return read_text(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/" + name);
}

// As a client writes it: "type" before "function", "name" first (not nlohmann's sorted order).
const char* const kToolsText = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
  {"type": "function", "function": {"name": "add", "description": "Add numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}])";
const json kTools = json::parse(kToolsText);

const json kToolHistory = json::parse(R"([
  {"role": "user", "content": "Weather in Lutetia?"},
  {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
    "function": {"name": "get_weather", "arguments": "{\"city\": \"Lutetia\"}"}}]},
  {"role": "tool", "tool_call_id": "call_abc", "content": "{\"sky\": \"cloudy\"}"},
  {"role": "assistant", "content": "Cloudy."},
  {"role": "user", "content": "And 2+3?"}])");

// The prompt text of audit line `n` (1-based; the server runs with --audit-log-content). The
// line is written just after the response is handed to the socket, so it is waited for.
std::string audited_prompt(const std::string& audit_path, size_t n) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    std::ifstream in(audit_path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) lines.push_back(line);
    if (lines.size() >= n) {
      const json j = json::parse(lines[n - 1], nullptr, false);
      return j.is_object() && j.contains("prompt") ? j["prompt"].get<std::string>() : "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

class ToolsServerTest : public ::testing::Test {
 protected:
  void start(const std::string& chat_template, int64_t n_ctx = 512) {
    audit_ = std::string(FATHOM_TEST_TMP) + "/tools-audit-" + std::to_string(getpid()) + ".jsonl";
    std::filesystem::remove(audit_);
    ServerOptions o = test_options();
    o.chat_template = chat_template;
    o.engine.n_ctx = n_ctx;
    o.audit_log = audit_;
    o.audit_log_content = true;
    server_ = start_server(o);
    ASSERT_TRUE(server_);
  }
  void TearDown() override { std::filesystem::remove(audit_); }
  httplib::Client client() { return client_for(*server_); }
  std::unique_ptr<Server> server_;
  std::string audit_;
};

// A named tool_choice on the R1 template: the history's call and result reach the prompt in
// R1's format, the prompt ends with the opened call, and the answer is that call, its
// arguments valid for the function's schema (the grammar), the same plain and streamed.
TEST_F(ToolsServerTest, ForcedCallRoundTripOnR1Template) {
  start(shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"));
  auto c = client();
  const json request = {{"messages", kToolHistory}, {"tools", kTools}, {"max_tokens", 300}, {"ignore_eos", true},
                        {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}}};
  const Reply r = post_json(c, "/v1/chat/completions", request);
  ASSERT_EQ(r.status, 200) << r.text;
  const std::string prompt = audited_prompt(audit_, 1);
  EXPECT_NE(prompt.find("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                        "{\"city\": \"Lutetia\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("<｜tool▁output▁begin｜>{\"sky\": \"cloudy\"}<｜tool▁output▁end｜>"), std::string::npos) << prompt;
  const std::string opened = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n";
  ASSERT_GE(prompt.size(), opened.size());
  EXPECT_EQ(prompt.substr(prompt.size() - opened.size()), opened);

  const json& choice = r.body["choices"][0];
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r.text;
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "add");
  EXPECT_TRUE(call["function"]["arguments"].is_string());
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  // Noise, but the grammar closes the call: {"a": number?, "b": number?} and nothing else.
  const json arguments = json::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
  ASSERT_TRUE(arguments.is_object()) << r.text;
  for (const auto& [key, value] : arguments.items()) EXPECT_TRUE((key == "a" || key == "b") && value.is_number()) << arguments.dump();
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null()) << r.text;

  json streamed_request = request;
  streamed_request["stream"] = true;
  const Reply s = post_json(c, "/v1/chat/completions", streamed_request);
  ASSERT_EQ(s.status, 200) << s.text;
  json calls = json::array();
  std::string finish;
  for (const std::string& p : sse_payloads(s.text)) {
    if (p == "[DONE]") continue;
    const json chunk = json::parse(p);
    for (const json& ch : chunk["choices"]) {
      if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
      if (!ch["delta"].contains("tool_calls")) continue;
      for (const json& d : ch["delta"]["tool_calls"]) {
        const size_t i = d["index"];
        if (i == calls.size()) calls.push_back({{"id", d["id"]}, {"type", d["type"]}, {"function", {{"name", d["function"]["name"]}, {"arguments", ""}}}});
        calls[i]["function"]["arguments"] = calls[i]["function"]["arguments"].get<std::string>() + d["function"].value("arguments", "");
      }
    }
  }
  ASSERT_EQ(calls.size(), 1u) << s.text;
  EXPECT_EQ(calls[0]["function"], call["function"]);
  EXPECT_EQ(finish, "tool_calls");

  // A forced call's grammar is the function's schema: it cannot also follow response_format.
  json both = request;
  both["response_format"] = {{"type", "json_object"}};
  const Reply conflict = post_json(c, "/v1/chat/completions", both);
  EXPECT_EQ(conflict.status, 400);
  EXPECT_EQ(conflict.body["error"]["param"], "response_format");
  // strict is guaranteed for forced calls only.
  json strict = {{"messages", kToolHistory}, {"tools", kTools}, {"max_tokens", 1}};
  strict["tools"][1]["function"]["strict"] = true;
  EXPECT_EQ(post_json(c, "/v1/chat/completions", strict).body["error"]["param"], "tools[1].function.strict");
  strict["tool_choice"] = "required";
  EXPECT_EQ(post_json(c, "/v1/chat/completions", strict).status, 200);
  // A schema the grammar engine cannot enforce is a 400, not a looser call.
  json unenforceable = request;
  unenforceable["tools"][1]["function"]["parameters"]["properties"]["a"] = {{"type", "number"}, {"multipleOf", 3}};
  const Reply refused = post_json(c, "/v1/chat/completions", unenforceable);
  EXPECT_EQ(refused.status, 400) << refused.text;
  EXPECT_EQ(refused.body["error"]["param"], "tools");
  EXPECT_NE(refused.text.find("multipleOf"), std::string::npos) << refused.text;
}

// tool_choice "none" hides the tools from the template; "auto" shows them (Qwen2.5 prints them).
TEST_F(ToolsServerTest, ToolChoiceNoneHidesTheTools) {
  start(shared_template("Qwen-Qwen2.5-7B-Instruct.jinja"));
  auto c = client();
  const json base = {{"messages", kToolHistory}, {"tools", kTools}, {"max_tokens", 2}};
  // Sent as text, to keep the client's key order.
  const std::string auto_body = "{\"messages\": " + kToolHistory.dump() + ", \"tools\": " + kToolsText + ", \"max_tokens\": 2}";
  auto res = c.Post("/v1/chat/completions", auto_body, "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const std::string offered = audited_prompt(audit_, 1);
  EXPECT_NE(offered.find("# Tools"), std::string::npos);
  // The client's key order reaches the template ("type" before "function", "name" first).
  EXPECT_NE(offered.find("{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""), std::string::npos) << offered;
  // The history's call, in Qwen's format, with the arguments as an object.
  EXPECT_NE(offered.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lutetia\"}}\n</tool_call>"),
            std::string::npos) << offered;
  json none = base;
  none["tool_choice"] = "none";
  ASSERT_EQ(post_json(c, "/v1/chat/completions", none).status, 200);
  EXPECT_EQ(audited_prompt(audit_, 2).find("# Tools"), std::string::npos);
  // "required" with several tools opens the call up to the name.
  json required = base;
  required["tool_choice"] = "required";
  const Reply r = post_json(c, "/v1/chat/completions", required);
  ASSERT_EQ(r.status, 200) << r.text;
  const std::string prompt = audited_prompt(audit_, 3);
  const std::string opened = "<|im_start|>assistant\n<tool_call>\n{\"name\": \"";
  EXPECT_EQ(prompt.substr(prompt.size() - opened.size()), opened);
  EXPECT_EQ(r.body["choices"][0]["message"]["tool_calls"].size(), 1u) << r.text;
}

TEST_F(ToolsServerTest, TemplateWithoutCallsRefusesTools) {
  start(read_text(std::string(FATHOM_SOURCE_DIR) + "/tests/tokenizer/data/deepseek-llm-7b-chat.jinja"));
  auto c = client();
  const json messages = {{{"role", "user"}, {"content", "Weather?"}}};
  const Reply r = post_json(c, "/v1/chat/completions", {{"messages", messages}, {"tools", kTools}});
  EXPECT_EQ(r.status, 400) << r.text;
  EXPECT_EQ(r.body["error"]["param"], "tools");
  // With tool_choice "none" the tools are not offered, so nothing needs reading back.
  EXPECT_EQ(post_json(c, "/v1/chat/completions",
                      {{"messages", messages}, {"tools", kTools}, {"tool_choice", "none"}, {"max_tokens", 1}}).status, 200);
}

// V3.2's DSML: the history's call rendered as DSML, the forced call opened in DSML.
TEST_F(ToolsServerTest, ForcedCallOnV32Template) {
  start(shared_template("deepseek-ai-DeepSeek-V3.2.jinja"), 1024);  // its tools preamble is long
  auto c = client();
  const Reply r = post_json(c, "/v1/chat/completions", {{"messages", kToolHistory}, {"tools", kTools}, {"max_tokens", 300},
                                                       {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}}});
  ASSERT_EQ(r.status, 200) << r.text;
  const std::string prompt = audited_prompt(audit_, 1);
  EXPECT_NE(prompt.find("<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Lutetia"
                        "</｜DSML｜parameter>"), std::string::npos) << prompt;
  const std::string opened = "<think></think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"add\">\n";
  ASSERT_GE(prompt.size(), opened.size());
  EXPECT_EQ(prompt.substr(prompt.size() - opened.size()), opened);
  const json& call = r.body["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["function"]["name"], "add") << r.text;
  const json arguments = json::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
  ASSERT_TRUE(arguments.is_object()) << r.text;
  for (const auto& [key, value] : arguments.items()) EXPECT_TRUE((key == "a" || key == "b") && value.is_number()) << arguments.dump();
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "tool_calls") << r.text;
}

class SurfaceTest : public DefaultServerTest {};

TEST_F(SurfaceTest, TokenizeAndDetokenize) {
  auto c = client();
  const Reply t = post_json(c, "/tokenize", {{"content", "Hello world, tokens!"}});
  ASSERT_EQ(t.status, 200) << t.text;
  ASSERT_TRUE(t.body["tokens"].is_array());
  EXPECT_GE(t.body["tokens"].size(), 3u);
  const Reply d = post_json(c, "/detokenize", {{"tokens", t.body["tokens"]}});
  ASSERT_EQ(d.status, 200) << d.text;
  EXPECT_EQ(d.body["content"], "Hello world, tokens!");
  const Reply p = post_json(c, "/tokenize", {{"content", "Hello world"}, {"with_pieces", true}});
  ASSERT_EQ(p.status, 200);
  std::string joined;
  for (const json& piece : p.body["tokens"]) {
    EXPECT_TRUE(piece["id"].is_number_integer());
    joined += piece["piece"].get<std::string>();
  }
  EXPECT_EQ(joined, "Hello world");
  // Special tokens are parsed by default.
  const Reply special = post_json(c, "/tokenize", {{"content", "<|im_start|>"}});
  EXPECT_EQ(special.body["tokens"].size(), 1u) << special.text;
  EXPECT_EQ(post_json(c, "/tokenize", {{"content", "<|im_start|>"}, {"parse_special", false}}).body["tokens"].size() > 1, true);
  const Reply bad = post_json(c, "/detokenize", {{"tokens", {1, -5}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["param"], "tokens");
  EXPECT_EQ(post_json(c, "/detokenize", {{"tokens", {999999999}}}).status, 400);
  EXPECT_EQ(post_json(c, "/tokenize", {{"content", 5}}).body["error"]["param"], "content");
}

TEST(TokenizeAuth, NeedsTheKeyLikeTheApi) {
  ServerOptions o = test_options();
  o.api_keys = {"sk-1"};
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  EXPECT_EQ(post_json(c, "/tokenize", {{"content", "hi"}}).status, 401);
  EXPECT_EQ(post_json(c, "/detokenize", {{"tokens", {1}}}).status, 401);
  EXPECT_EQ(post_json(c, "/tokenize", {{"content", "hi"}}, {{"Authorization", "Bearer sk-1"}}).status, 200);
}

std::vector<int32_t> tokenize(httplib::Client& c, const std::string& text) {
  return post_json(c, "/tokenize", {{"content", text}}).body["tokens"].get<std::vector<int32_t>>();
}

TEST_F(SurfaceTest, LogitBias) {
  auto c = client();
  const std::vector<int32_t> ids = tokenize(c, " banana");
  ASSERT_EQ(ids.size(), 1u);
  const json base = {{"prompt", "The weather today"}, {"max_tokens", 3}, {"ignore_eos", true}, {"temperature", 0}};
  // +100 on one token: greedy picks it every time (also through the logprobs path).
  json boosted = base;
  boosted["logit_bias"] = {{std::to_string(ids[0]), 100}};
  boosted["logprobs"] = 1;
  const Reply b = post_json(c, "/v1/completions", boosted);
  ASSERT_EQ(b.status, 200) << b.text;
  EXPECT_EQ(b.body["choices"][0]["text"], " banana banana banana");
  EXPECT_GT(b.body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(), -0.01);
  // -100 bans the token greedy would pick first.
  const Reply plain = post_json(c, "/v1/completions", base);
  ASSERT_EQ(plain.status, 200);
  json one = base;
  one["max_tokens"] = 1;
  const std::string first = post_json(c, "/v1/completions", one).body["choices"][0]["text"];
  const std::vector<int32_t> first_ids = tokenize(c, first);
  ASSERT_EQ(first_ids.size(), 1u) << first;
  json banned = one;
  banned["logit_bias"] = {{std::to_string(first_ids[0]), -100}};
  const Reply n = post_json(c, "/v1/completions", banned);
  ASSERT_EQ(n.status, 200);
  EXPECT_NE(n.body["choices"][0]["text"], first);
  // Chat too, and an id past the vocabulary is a 400 naming the parameter.
  const Reply chat = post_json(c, "/v1/chat/completions",
                               {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}, {"ignore_eos", true},
                                {"logit_bias", {{std::to_string(ids[0]), 100}}}});
  EXPECT_EQ(chat.body["choices"][0]["message"]["content"], " banana banana") << chat.text;
  const Reply past = post_json(c, "/v1/completions", {{"prompt", "x"}, {"logit_bias", {{"999999999", 1}}}});
  EXPECT_EQ(past.status, 400);
  EXPECT_EQ(past.body["error"]["param"], "logit_bias");
}

TEST_F(SurfaceTest, SeveralChoices) {
  auto c = client();
  const json request = {{"messages", {{{"role", "user"}, {"content", "Tell me a story."}}}}, {"n", 3}, {"max_tokens", 6},
                        {"ignore_eos", true}, {"temperature", 1.0}, {"seed", 11}, {"logprobs", true}};
  const Reply r = post_json(c, "/v1/chat/completions", request);
  ASSERT_EQ(r.status, 200) << r.text;
  ASSERT_EQ(r.body["choices"].size(), 3u);
  std::set<std::string> texts;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.body["choices"][i]["index"], i);
    EXPECT_EQ(r.body["choices"][i]["logprobs"]["content"].size(), 6u);
    texts.insert(r.body["choices"][i]["message"]["content"].get<std::string>());
  }
  EXPECT_GE(texts.size(), 2u) << r.text;  // seeds seed+i: the choices differ
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 18);
  // The prompt counts once.
  const Reply one = post_json(c, "/v1/chat/completions", {{"messages", request["messages"]}, {"max_tokens", 1}});
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], one.body["usage"]["prompt_tokens"]);
  // Streamed: the same choices, by index.
  json streamed = request;
  streamed["stream"] = true;
  const Reply s = post_json(c, "/v1/chat/completions", streamed);
  ASSERT_EQ(s.status, 200) << s.text;
  std::vector<std::string> content(3);
  for (const std::string& p : sse_payloads(s.text)) {
    if (p == "[DONE]") continue;
    const json chunk = json::parse(p);
    for (const json& ch : chunk["choices"])
      if (ch["delta"].contains("content")) content[ch["index"].get<size_t>()] += ch["delta"]["content"].get<std::string>();
  }
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(content[i], r.body["choices"][i]["message"]["content"]);
  // n per prompt on /v1/completions: choices prompt-major.
  const Reply comp = post_json(c, "/v1/completions", {{"prompt", {"a", "b"}}, {"n", 2}, {"max_tokens", 1}});
  ASSERT_EQ(comp.status, 200) << comp.text;
  EXPECT_EQ(comp.body["choices"].size(), 4u);
}

// n choices share the prompt's prefill through the prefix cache: the first copy computes it,
// the others its last partial block only.
TEST(SeveralChoicesPrefill, PrefixCacheHitRate) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  std::string story = "Tell me a long story about";
  for (int i = 0; i < 40; ++i) story += " the sea";
  const Reply r = post_json(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", story}}}}, {"n", 4},
                                                       {"max_tokens", 2}, {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200);
  const double rate = metric_value(c.Get("/metrics")->body, "fathom_prefix_cache_hit_rate");
  const int64_t prompt_tokens = r.body["usage"]["prompt_tokens"].get<int64_t>();
  const double computed = 4.0 * static_cast<double>(prompt_tokens) * (1.0 - rate);
  std::printf("[ n=4 ] prompt of %lld tokens: prefix cache hit rate %.3f, %.0f prefill tokens computed (%lld without sharing)\n",
              static_cast<long long>(prompt_tokens), rate, computed, static_cast<long long>(4 * prompt_tokens));
  // Three copies reuse every whole block before the prompt's last token (block size 16).
  EXPECT_NEAR(rate, 3.0 * static_cast<double>((prompt_tokens - 1) / 16 * 16) / (4.0 * static_cast<double>(prompt_tokens)), 1e-3);
}

TEST_F(SurfaceTest, ReasoningTokensAndUnsupportedParameters) {
  ServerOptions o = test_options();
  o.chat_template = shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const json messages = {{{"role", "user"}, {"content", "2+2?"}}};
  const Reply thinking = post_json(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 6}, {"ignore_eos", true},
                                                               {"chat_template_kwargs", {{"enable_thinking", true}}}});
  ASSERT_EQ(thinking.status, 200) << thinking.text;
  const int64_t reasoning = thinking.body["usage"]["completion_tokens_details"]["reasoning_tokens"];
  EXPECT_GT(reasoning, 0);
  EXPECT_LE(reasoning, 6);
  const Reply plain = post_json(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 6}, {"ignore_eos", true}});
  EXPECT_EQ(plain.body["usage"]["completion_tokens_details"]["reasoning_tokens"], 0) << plain.text;
  const Reply bad = post_json(c, "/v1/chat/completions", {{"messages", messages}, {"grammar", {{"type", "json_object"}}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["param"], "grammar");
}

// The model's words are noise (random weights); the constraint must still make them valid.
TEST(ToolsServer, ResponseFormatAndGrammarConstrainTheOutput) {
  ServerOptions o = test_options();
  o.defaults.sampling.temperature = 1.0f;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const json messages = {{{"role", "user"}, {"content", "Pick."}}};
  const json schema = {{"type", "object"},
                       {"properties", {{"ok", {{"type", "boolean"}}},
                                       {"n", {{"type", "integer"}, {"minimum", 0}, {"maximum", 99}}},
                                       {"color", {{"enum", {"red", "green"}}}},
                                       {"tags", {{"type", "array"}, {"items", {{"enum", {"a", "b"}}}}, {"maxItems", 3}}}}},
                       {"required", {"ok", "n", "color"}},
                       {"additionalProperties", false}};
  for (int seed = 0; seed < 8; ++seed) {
    const Reply r = post_json(c, "/v1/chat/completions",
                              {{"messages", messages}, {"seed", seed}, {"max_tokens", 200},
                               {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "pick"}, {"schema", schema}}}}}});
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop") << r.text;
    const json v = json::parse(r.body["choices"][0]["message"]["content"].get<std::string>(), nullptr, false);
    ASSERT_TRUE(v.is_object()) << r.text;
    EXPECT_TRUE(v["ok"].is_boolean());
    EXPECT_TRUE(v["n"].is_number_integer() && v["n"] >= 0 && v["n"] <= 99) << v.dump();
    EXPECT_TRUE(v["color"] == "red" || v["color"] == "green") << v.dump();
    for (const auto& [key, value] : v.items()) EXPECT_TRUE(schema["properties"].contains(key)) << key;
    if (v.contains("tags")) {
      EXPECT_LE(v["tags"].size(), 3u);
    }
  }
  // Properties come out in the schema's order, not sorted (the body is read in its key order).
  const std::string ordered_body = R"({"messages": [{"role": "user", "content": "Pick."}], "max_tokens": 100, "seed": 3,
    "response_format": {"type": "json_schema", "json_schema": {"name": "zyx", "schema": {"type": "object",
      "properties": {"zeta": {"type": "boolean"}, "alpha": {"type": "boolean"}, "mid": {"type": "null"}},
      "required": ["zeta", "alpha", "mid"], "additionalProperties": false}}}})";
  const auto ordered = c.Post("/v1/chat/completions", ordered_body, "application/json");
  ASSERT_TRUE(ordered);
  ASSERT_EQ(ordered->status, 200) << ordered->body;
  const std::string content = json::parse(ordered->body)["choices"][0]["message"]["content"];
  const auto keys = nlohmann::ordered_json::parse(content);
  std::vector<std::string> order;
  for (const auto& [key, value] : keys.items()) order.push_back(key);
  EXPECT_EQ(order, (std::vector<std::string>{"zeta", "alpha", "mid"})) << content;
  const Reply g = post_json(c, "/v1/completions", {{"prompt", "Answer:"}, {"max_tokens", 20}, {"grammar", "root ::= (\"yes\" | \"no\") \".\""}});
  ASSERT_EQ(g.status, 200) << g.text;
  const std::string text = g.body["choices"][0]["text"];
  EXPECT_TRUE(text == "yes." || text == "no.") << text;
}

}  // namespace
}  // namespace fathom::server::test
