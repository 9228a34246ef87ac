// The Ollama API: request translation (options -> sampler, format -> grammar, think, keep_alive,
// refused fields), the NDJSON framing and final statistics checked against the OpenAI routes'
// answers for the same request, the info routes, CORS and the web chat's static files.
#include "server/ollama_api.h"

#include <fstream>
#include <sstream>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

constexpr int64_t kServerContext = 512;

OllamaRequest parse_ok(OllamaEndpoint endpoint, const json& body) {
  auto r = parse_ollama_request(endpoint, body, RequestDefaults{}, kServerContext);
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << e->message;
  return std::holds_alternative<OllamaRequest>(r) ? std::get<OllamaRequest>(r) : OllamaRequest{};
}

// The field an error names (its param), "" when the body was accepted.
std::string rejected_param(OllamaEndpoint endpoint, const json& body) {
  auto r = parse_ollama_request(endpoint, body, RequestDefaults{}, kServerContext);
  if (auto* e = std::get_if<ApiError>(&r)) {
    EXPECT_EQ(e->http_status, 400);
    EXPECT_NE(e->message.find(e->param.substr(e->param.rfind('.') + 1)), std::string::npos) << e->message;
    return e->param;
  }
  return "";
}

const json kChat = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};

json with(json body, const json& extra) {
  body.update(extra);
  return body;
}

TEST(OllamaRequest, OptionsMapToTheSampler) {
  const OllamaRequest r = parse_ok(
      OllamaEndpoint::kChat,
      with(kChat, {{"options", {{"temperature", 0.3}, {"top_p", 0.5}, {"top_k", 7}, {"min_p", 0.2}, {"seed", 42},
                                {"num_predict", 9}, {"stop", {"END", "STOP"}}, {"repeat_penalty", 1.3},
                                {"repeat_last_n", 32}, {"presence_penalty", 0.4}, {"frequency_penalty", 0.6},
                                {"num_ctx", 256}, {"typical_p", 1.0}, {"mirostat", 0}}}}));
  const SamplingParams& s = r.request.sampling;
  EXPECT_FLOAT_EQ(s.temperature, 0.3f);
  EXPECT_FLOAT_EQ(s.top_p, 0.5f);
  EXPECT_EQ(s.top_k, 7);
  EXPECT_FLOAT_EQ(s.min_p, 0.2f);
  EXPECT_EQ(s.seed, 42u);
  EXPECT_TRUE(r.request.seed_given);
  EXPECT_FLOAT_EQ(s.repeat_penalty, 1.3f);
  EXPECT_FLOAT_EQ(s.presence_penalty, 0.4f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, 0.6f);
  EXPECT_EQ(r.repeat_last_n, 32);
  EXPECT_EQ(r.request.max_tokens, 9);
  EXPECT_EQ(r.request.stop, (std::vector<std::string>{"END", "STOP"}));
  EXPECT_EQ(r.request.context_tokens, 256);
  EXPECT_TRUE(r.request.stream);  // Ollama's default
  EXPECT_EQ(r.request.endpoint, Endpoint::kChat);
  ASSERT_EQ(r.request.messages.size(), 1u);
  EXPECT_EQ(r.request.messages[0].message.content, "hi");
  // -1 and -2 mean no limit: generation runs to the end of the context.
  EXPECT_EQ(parse_ok(OllamaEndpoint::kChat, with(kChat, {{"options", {{"num_predict", -1}}}})).request.max_tokens, 0);
}

TEST(OllamaRequest, WhatCannotBeHonouredIsAnErrorNamingIt) {
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"num_ctx", 4096}}}})), "options.num_ctx");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"num_gpu", 1}}}})), "options.num_gpu");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"mirostat", 2}}}})), "options.mirostat");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"temperature", 9}}}})), "options.temperature");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"num_predict", 0}}}})), "options.num_predict");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"keep_alive", 0}})), "keep_alive");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"keep_alive", "0s"}})), "keep_alive");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"keep_alive", "soon"}})), "keep_alive");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"format", "yaml"}})), "format");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"think", "high"}})), "think");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"tools", {{{"type", "function"}}}}})), "tools");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat,
                           with(kChat, {{"messages", {{{"role", "user"}, {"content", "x"}, {"images", {"AAAA"}}}}}})),
            "messages[0].images");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kGenerate, {{"model", "tiny"}, {"prompt", "x"}, {"suffix", "y"}}), "suffix");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kGenerate, {{"model", "tiny"}, {"prompt", "x"}, {"context", {1, 2}}}), "context");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kGenerate, {{"model", "tiny"}, {"prompt", "x"}, {"raw", true}, {"system", "s"}}),
            "system");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, {{"messages", kChat["messages"]}}), "model");
  // Accepted: durations that keep the model loaded, neutral values of unsupported samplers.
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"keep_alive", "1h30m"}})), "");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"keep_alive", -1}})), "");
  EXPECT_EQ(rejected_param(OllamaEndpoint::kChat, with(kChat, {{"options", {{"typical_p", 1}}}})), "");
}

TEST(OllamaRequest, FormatThinkAndGenerateShapes) {
  EXPECT_TRUE(parse_ok(OllamaEndpoint::kChat, with(kChat, {{"format", "json"}})).request.sampling.grammar);
  const json schema = {{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}, {"required", {"n"}}};
  EXPECT_TRUE(parse_ok(OllamaEndpoint::kChat, with(kChat, {{"format", schema}})).request.sampling.grammar);
  EXPECT_FALSE(parse_ok(OllamaEndpoint::kChat, kChat).request.sampling.grammar);

  const OllamaRequest think = parse_ok(OllamaEndpoint::kChat, with(kChat, {{"think", true}}));
  EXPECT_EQ(think.request.chat_template_kwargs, (json{{"enable_thinking", true}, {"thinking", true}}));
  EXPECT_FALSE(think.request.close_reasoning);
  EXPECT_FALSE(think.request.reasoning_inline);  // reasoning goes to message.thinking
  EXPECT_TRUE(parse_ok(OllamaEndpoint::kChat, with(kChat, {{"think", false}})).request.close_reasoning);

  const OllamaRequest templated = parse_ok(OllamaEndpoint::kGenerate, {{"model", "tiny"}, {"prompt", "why?"}, {"system", "be brief"}});
  EXPECT_EQ(templated.request.endpoint, Endpoint::kChat);
  ASSERT_EQ(templated.request.messages.size(), 2u);
  EXPECT_EQ(templated.request.messages[0].message.role, "system");
  EXPECT_EQ(templated.request.messages[1].message.content, "why?");
  const OllamaRequest raw = parse_ok(OllamaEndpoint::kGenerate, {{"model", "tiny"}, {"prompt", "why?"}, {"raw", true}, {"stream", false}});
  EXPECT_EQ(raw.request.endpoint, Endpoint::kCompletions);
  ASSERT_EQ(raw.request.prompts.size(), 1u);
  EXPECT_EQ(raw.request.prompts[0].text, "why?");
  EXPECT_FALSE(raw.request.stream);
  EXPECT_TRUE(parse_ok(OllamaEndpoint::kGenerate, {{"model", "tiny"}}).load_only);
  EXPECT_TRUE(parse_ok(OllamaEndpoint::kChat, {{"model", "tiny"}, {"messages", json::array()}}).load_only);
}

TEST(OllamaRequest, NamesAndTimes) {
  EXPECT_TRUE(ollama_model_matches("tiny", "tiny"));
  EXPECT_TRUE(ollama_model_matches("tiny:latest", "tiny"));
  EXPECT_FALSE(ollama_model_matches("tiny:7b", "tiny"));
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(rfc3339(1714564800123456789), "2024-05-01T12:00:00.123456789Z");
}

// The objects of an NDJSON body, one per line; fails on a line that is not an object.
std::vector<json> ndjson_lines(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON object line: " << line;
    out.push_back(j);
  }
  EXPECT_TRUE(body.empty() || body.back() == '\n');
  return out;
}

void expect_final_stats(const json& last, int64_t eval_count) {
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["eval_count"], eval_count);
  EXPECT_GT(last["prompt_eval_count"].get<int64_t>(), 0);
  for (const char* d : {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"})
    EXPECT_TRUE(last[d].is_number_integer() && last[d].get<int64_t>() >= 0) << d << ": " << last.dump();
  EXPECT_GE(last["total_duration"].get<int64_t>(), last["load_duration"].get<int64_t>() +
                                                       last["prompt_eval_duration"].get<int64_t>() +
                                                       last["eval_duration"].get<int64_t>() - 1000);
}

using OllamaServerTest = DefaultServerTest;

TEST_F(OllamaServerTest, ChatStreamsNdjsonThatMatchesTheOpenAiAnswer) {
  auto c = client();
  const json messages = {{{"role", "user"}, {"content", "Say something."}}};
  const Reply openai = post_json(c, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 8}});
  ASSERT_EQ(openai.status, 200) << openai.text;

  // Greedy (the server's default here); the random model rarely ends before 8 tokens, and when
  // it does both answers end at the same token.
  const json body = {{"model", "tiny:latest"}, {"messages", messages}, {"options", {{"num_predict", 8}}}};
  const Reply plain = post_json(c, "/api/chat", with(body, {{"stream", false}}));
  ASSERT_EQ(plain.status, 200) << plain.text;
  EXPECT_EQ(plain.body["model"], "tiny:latest");
  EXPECT_EQ(plain.body["message"]["role"], "assistant");
  EXPECT_EQ(plain.body["message"]["content"], openai.body["choices"][0]["message"]["content"]);
  EXPECT_EQ(plain.body["done_reason"], openai.body["choices"][0]["finish_reason"]);
  expect_final_stats(plain.body, openai.body["usage"]["completion_tokens"]);
  EXPECT_EQ(plain.body["prompt_eval_count"], openai.body["usage"]["prompt_tokens"]);

  auto res = c.Post("/api/chat", body.dump(), "application/json");  // streams by default
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/x-ndjson");
  const std::vector<json> lines = ndjson_lines(res->body);
  ASSERT_GE(lines.size(), 2u);
  std::string content;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["done"], false);
    EXPECT_EQ(lines[i]["message"]["role"], "assistant");
    EXPECT_TRUE(lines[i]["created_at"].is_string());
    content += lines[i]["message"]["content"].get<std::string>();
  }
  EXPECT_EQ(content, plain.body["message"]["content"]);
  EXPECT_EQ(lines.back()["message"]["content"], "");
  EXPECT_EQ(lines.back()["done_reason"], plain.body["done_reason"]);
  expect_final_stats(lines.back(), plain.body["eval_count"]);
}

TEST_F(OllamaServerTest, GenerateRawMatchesCompletionsAndNumCtxBoundsTheWindow) {
  auto c = client();
  const Reply openai = post_json(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 6}});
  ASSERT_EQ(openai.status, 200) << openai.text;
  const Reply raw = post_json(c, "/api/generate", {{"model", "tiny"}, {"prompt", "Once upon a time"}, {"raw", true},
                                                   {"stream", false}, {"options", {{"num_predict", 6}}}});
  ASSERT_EQ(raw.status, 200) << raw.text;
  EXPECT_EQ(raw.body["response"], openai.body["choices"][0]["text"]);
  expect_final_stats(raw.body, openai.body["usage"]["completion_tokens"]);

  // A window 3 tokens larger than the prompt leaves room for 3 tokens, whatever num_predict says.
  const int64_t prompt_tokens = raw.body["prompt_eval_count"];
  const Reply bounded = post_json(c, "/api/generate", {{"model", "tiny"}, {"prompt", "Once upon a time"}, {"raw", true},
                                                       {"stream", false},
                                                       {"options", {{"num_predict", 50}, {"num_ctx", prompt_tokens + 3}}}});
  ASSERT_EQ(bounded.status, 200) << bounded.text;
  EXPECT_LE(bounded.body["eval_count"].get<int64_t>(), 3);
  const Reply too_small = post_json(c, "/api/generate", {{"model", "tiny"}, {"prompt", "Once upon a time"}, {"raw", true},
                                                         {"stream", false}, {"options", {{"num_ctx", prompt_tokens}}}});
  EXPECT_EQ(too_small.status, 400) << too_small.text;

  // Templated generate: the one-turn chat's answer, streamed in "response" fields.
  auto res = c.Post("/api/generate", json{{"model", "tiny"}, {"prompt", "hi"}, {"options", {{"num_predict", 4}}}}.dump(),
                    "application/json");
  ASSERT_TRUE(res);
  const std::vector<json> lines = ndjson_lines(res->body);
  ASSERT_FALSE(lines.empty());
  for (const json& l : lines) EXPECT_TRUE(l["response"].is_string()) << l.dump();
  EXPECT_EQ(lines.back()["done"], true);

  const Reply load = post_json(c, "/api/generate", {{"model", "tiny"}});
  EXPECT_EQ(load.body["done_reason"], "load");
}

TEST_F(OllamaServerTest, ErrorsAreOllamaShaped) {
  auto c = client();
  const Reply unknown = post_json(c, "/api/chat", with(kChat, {{"model", "other"}}));
  EXPECT_EQ(unknown.status, 404);
  ASSERT_TRUE(unknown.body["error"].is_string()) << unknown.text;
  EXPECT_NE(unknown.body["error"].get<std::string>().find("other"), std::string::npos);
  const Reply bad = post_json(c, "/api/chat", with(kChat, {{"options", {{"num_thread", 8}}}}));
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body["error"].get<std::string>().find("options.num_thread"), std::string::npos) << bad.text;
  const Reply show = post_json(c, "/api/show", {{"model", "nope"}});
  EXPECT_EQ(show.status, 404);
  EXPECT_TRUE(show.body["error"].is_string());
}

TEST_F(OllamaServerTest, InfoRoutes) {
  auto c = client();
  auto tags = c.Get("/api/tags");
  ASSERT_TRUE(tags);
  const json t = json::parse(tags->body);
  ASSERT_EQ(t["models"].size(), 1u);
  EXPECT_EQ(t["models"][0]["name"], "tiny");
  EXPECT_EQ(t["models"][0]["details"]["family"], "qwen2");
  EXPECT_EQ(t["models"][0]["size"].get<int64_t>(), static_cast<int64_t>(std::filesystem::file_size(tiny_model_path())));
  EXPECT_EQ(t["models"][0]["modified_at"].get<std::string>().back(), 'Z');

  const Reply show = post_json(c, "/api/show", {{"model", "tiny"}});
  ASSERT_EQ(show.status, 200) << show.text;
  EXPECT_EQ(show.body["model_info"]["general.architecture"], "qwen2");
  EXPECT_GT(show.body["model_info"]["general.parameter_count"].get<int64_t>(), 0);
  EXPECT_EQ(show.body["model_info"]["fathom.context_length"], 512);
  EXPECT_NE(show.body["parameters"].get<std::string>().find("temperature 0"), std::string::npos);
  EXPECT_EQ(show.body["capabilities"][0], "completion");

  auto ps = c.Get("/api/ps");
  ASSERT_TRUE(ps);
  const json p = json::parse(ps->body);
  EXPECT_EQ(p["models"][0]["model"], "tiny");
  EXPECT_EQ(p["models"][0]["context_length"], 512);
  auto version = c.Get("/api/version");
  ASSERT_TRUE(version);
  EXPECT_EQ(json::parse(version->body)["version"], "0.1.0");
}

// The R1-Distill-Llama template always opens <think>: think true (or absent) puts the reasoning in
// message.thinking; think false closes the block in the prompt, so the model answers at once.
TEST(OllamaThink, FalseClosesTheBlockTheTemplateOpens) {
  ServerOptions o = test_options();
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const json body = with(kChat, {{"stream", false}, {"options", {{"num_predict", 6}}}});
  const Reply thinking = post_json(c, "/api/chat", with(body, {{"think", true}}));
  const Reply plain = post_json(c, "/api/chat", body);
  const Reply direct = post_json(c, "/api/chat", with(body, {{"think", false}}));
  ASSERT_EQ(thinking.status, 200) << thinking.text;
  ASSERT_EQ(direct.status, 200) << direct.text;
  EXPECT_TRUE(thinking.body["message"]["thinking"].is_string()) << thinking.text;
  EXPECT_EQ(plain.body["message"]["thinking"], thinking.body["message"]["thinking"]);
  EXPECT_FALSE(direct.body["message"].contains("thinking")) << direct.text;
  EXPECT_FALSE(direct.body["message"]["content"].get<std::string>().empty());
  // The prompt grew by the closing tag's tokens.
  EXPECT_GT(direct.body["prompt_eval_count"].get<int64_t>(), thinking.body["prompt_eval_count"].get<int64_t>());
}

TEST(Cors, NothingByDefault) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  auto res = c.Get("/v1/models", {{"Origin", "http://evil.example"}});
  ASSERT_TRUE(res);
  EXPECT_FALSE(res->has_header("Access-Control-Allow-Origin"));
  auto preflight = c.Options("/v1/chat/completions", {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 404);
  EXPECT_FALSE(preflight->has_header("Access-Control-Allow-Origin"));
}

TEST(Cors, AllowedOriginsOnBothApisAndStreams) {
  ServerOptions o = test_options();
  o.cors_origins = {"http://app.example:3000", "https://other.example"};
  o.api_keys = {"k"};
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const httplib::Headers from_app = {{"Origin", "http://app.example:3000"}, {"Authorization", "Bearer k"}};

  auto preflight = c.Options("/v1/chat/completions", {{"Origin", "http://app.example:3000"},
                                                      {"Access-Control-Request-Method", "POST"},
                                                      {"Access-Control-Request-Headers", "authorization, content-type, x-stainless-os"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Origin"), "http://app.example:3000");
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Headers"), "authorization, content-type, x-stainless-os");
  EXPECT_EQ(preflight->get_header_value("Access-Control-Max-Age"), "600");
  auto foreign = c.Options("/api/chat", {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(foreign);
  EXPECT_EQ(foreign->status, 403);
  EXPECT_FALSE(foreign->has_header("Access-Control-Allow-Origin"));

  // Streams and errors carry the header too: the page must be able to read a 401.
  auto stream = c.Post("/v1/chat/completions", from_app,
                       json{{"messages", kChat["messages"]}, {"max_tokens", 3}, {"stream", true}}.dump(), "application/json");
  ASSERT_TRUE(stream);
  EXPECT_EQ(stream->status, 200);
  EXPECT_EQ(stream->get_header_value("Access-Control-Allow-Origin"), "http://app.example:3000");
  EXPECT_EQ(stream->get_header_value("Vary"), "Origin");
  auto ollama = c.Post("/api/chat", from_app, with(kChat, {{"options", {{"num_predict", 3}}}}).dump(), "application/json");
  ASSERT_TRUE(ollama);
  EXPECT_EQ(ollama->status, 200);
  EXPECT_EQ(ollama->get_header_value("Access-Control-Allow-Origin"), "http://app.example:3000");
  auto unauthorized = c.Get("/api/tags", {{"Origin", "https://other.example"}});
  ASSERT_TRUE(unauthorized);
  EXPECT_EQ(unauthorized->status, 401);
  EXPECT_EQ(unauthorized->get_header_value("Access-Control-Allow-Origin"), "https://other.example");
  auto evil = c.Get("/v1/models", {{"Origin", "http://evil.example"}, {"Authorization", "Bearer k"}});
  ASSERT_TRUE(evil);
  EXPECT_FALSE(evil->has_header("Access-Control-Allow-Origin"));
}

TEST(Cors, AnyOriginOnlyWhenAskedAndOriginsAreChecked) {
  ServerOptions o = test_options();
  o.cors_origins = {"*"};
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  auto res = c.Get("/api/version", {{"Origin", "http://anything.example"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Access-Control-Allow-Origin"), "*");
  for (const char* bad : {"localhost:3000", "http://app.example/", "http://app.example/path", ""}) {
    ServerOptions b = test_options();
    b.cors_origins = {bad};
    EXPECT_FALSE(Server::create(b)) << bad;
  }
}

TEST(WebChat, ServedFromTheBinaryWithoutAKey) {
  ServerOptions o = test_options();
  o.api_keys = {"k"};
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
  EXPECT_NE(page->body.find("<script src=\"/webchat/app.js\">"), std::string::npos);
  for (const auto& [path, type] : {std::pair<const char*, const char*>{"/webchat/app.js", "text/javascript; charset=utf-8"},
                                   {"/webchat/style.css", "text/css; charset=utf-8"}}) {
    auto asset = c.Get(path);
    ASSERT_TRUE(asset);
    EXPECT_EQ(asset->status, 200) << path;
    EXPECT_EQ(asset->get_header_value("Content-Type"), type);
    EXPECT_GT(asset->body.size(), 500u);
  }
  // The page's script never hands model text to the HTML parser.
  auto script = c.Get("/webchat/app.js");
  EXPECT_EQ(script->body.find("innerHTML"), std::string::npos);
  auto missing = c.Get("/webchat/nope.js");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

}  // namespace
}  // namespace fathom::server::test
