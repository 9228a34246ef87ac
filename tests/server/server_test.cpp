// The HTTP API end to end on an in-process server: response shapes (plain and streamed),
// usage, stop strings, logprobs, reasoning_content, every error status, auth and the audit
// log, /health while loading, /metrics, graceful shutdown.
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "server_fixture.h"
#include "tokenizer/tokenizer.h"

namespace fathom::server::test {
namespace {

const json kUser = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});

class ServerTest : public DefaultServerTest {};

TEST_F(ServerTest, ChatCompletion) {
  auto c = client();
  const Reply r = post_json(c, "/v1/chat/completions", {{"model", "tiny"}, {"messages", kUser}, {"max_tokens", 8}});
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_EQ(r.body["model"], "tiny");
  EXPECT_EQ(r.body["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  const json& choice = r.body["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_TRUE(choice["message"]["content"].is_string());
  EXPECT_FALSE(choice["message"].contains("reasoning_content"));  // the qwen2 template has no <think>
  EXPECT_TRUE(choice["finish_reason"] == "stop" || choice["finish_reason"] == "length");
  const json& u = r.body["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 5);
  EXPECT_GE(u["completion_tokens"].get<int>(), 1);
  EXPECT_LE(u["completion_tokens"].get<int>(), 8);
  EXPECT_EQ(u["total_tokens"].get<int>(), u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
  // Greedy: the same request gives the same answer.
  const Reply again = post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"max_tokens", 8}});
  EXPECT_EQ(again.body["choices"][0]["message"]["content"], choice["message"]["content"]);
}

TEST_F(ServerTest, CompletionLengthAndPromptForms) {
  auto c = client();
  const Reply r = post_json(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 5);
  EXPECT_TRUE(r.body["choices"][0]["logprobs"].is_null());
  // Two prompts -> two choices, each the answer its prompt gets alone.
  const Reply two = post_json(c, "/v1/completions", {{"prompt", {"Once upon a time", "Hello"}}, {"max_tokens", 5}, {"ignore_eos", true}});
  ASSERT_EQ(two.status, 200) << two.text;
  ASSERT_EQ(two.body["choices"].size(), 2u);
  EXPECT_EQ(two.body["choices"][0]["text"], r.body["choices"][0]["text"]);
  EXPECT_EQ(two.body["choices"][1]["index"], 1);
  EXPECT_EQ(two.body["usage"]["completion_tokens"], 10);
  // A token-id prompt works like its text.
  auto tok = Tokenizer::from_file(std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_TRUE(tok);
  const Reply ids = post_json(c, "/v1/completions", {{"prompt", (*tok)->encode("Hello", false, false)}, {"max_tokens", 3}, {"ignore_eos", true}});
  const Reply text = post_json(c, "/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 3}, {"ignore_eos", true}});
  EXPECT_EQ(ids.body["choices"][0]["text"], text.body["choices"][0]["text"]);
}

TEST_F(ServerTest, ChatStreamShape) {
  auto c = client();
  const json req = {{"messages", kUser}, {"max_tokens", 10}, {"ignore_eos", true}};
  const Reply whole = post_json(c, "/v1/chat/completions", req);
  json sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  const Reply s = post_json(c, "/v1/chat/completions", sreq);
  ASSERT_EQ(s.status, 200) << s.text;
  ASSERT_TRUE(s.headers.count("Content-Type"));
  EXPECT_EQ(s.headers.find("Content-Type")->second, "text/event-stream");
  const std::vector<std::string> payloads = sse_payloads(s.text);
  ASSERT_GE(payloads.size(), 4u) << s.text;
  EXPECT_EQ(payloads.back(), "[DONE]");
  const json first = json::parse(payloads[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  const json usage = json::parse(payloads[payloads.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 10);
  EXPECT_EQ(usage["usage"], whole.body["usage"]);
  const json finish = json::parse(payloads[payloads.size() - 3]);
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "length");
  for (size_t i = 0; i + 1 < payloads.size(); ++i) {
    const json chunk = json::parse(payloads[i]);
    EXPECT_EQ(chunk["id"], first["id"]);
    EXPECT_TRUE(chunk.contains("usage"));  // null until the last chunk, as OpenAI sends it
  }
  EXPECT_EQ(streamed_text(s.text), whole.body["choices"][0]["message"]["content"].get<std::string>());
}

TEST_F(ServerTest, CompletionStream) {
  auto c = client();
  const json req = {{"prompt", "Hello"}, {"max_tokens", 6}, {"ignore_eos", true}};
  const Reply whole = post_json(c, "/v1/completions", req);
  json sreq = req;
  sreq["stream"] = true;
  const Reply s = post_json(c, "/v1/completions", sreq);
  ASSERT_EQ(s.status, 200);
  const auto payloads = sse_payloads(s.text);
  EXPECT_EQ(payloads.back(), "[DONE]");
  EXPECT_EQ(json::parse(payloads[0])["object"], "text_completion");
  EXPECT_FALSE(json::parse(payloads[0]).contains("usage"));  // only with include_usage
  EXPECT_EQ(json::parse(payloads[payloads.size() - 2])["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(streamed_text(s.text), whole.body["choices"][0]["text"].get<std::string>());
}

TEST_F(ServerTest, StopStrings) {
  auto c = client();
  const json req = {{"prompt", "The weather today"}, {"max_tokens", 24}, {"ignore_eos", true}};
  const std::string text = post_json(c, "/v1/completions", req).body["choices"][0]["text"];
  // A two-character ASCII piece of the greedy text, past its start, as the stop string.
  std::string stop;
  for (size_t i = 2; i + 1 < text.size() && stop.empty(); ++i)
    if (std::isalpha(static_cast<unsigned char>(text[i])) && std::isalpha(static_cast<unsigned char>(text[i + 1]))) stop = text.substr(i, 2);
  ASSERT_FALSE(stop.empty()) << text;
  for (bool stream : {false, true}) {
    json sreq = req;
    sreq["stop"] = json::array({"@@never@@", stop});
    sreq["stream"] = stream;
    const Reply r = post_json(c, "/v1/completions", sreq);
    ASSERT_EQ(r.status, 200);
    const std::string got = stream ? streamed_text(r.text) : r.body["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(got, text.substr(0, text.find(stop))) << "stop '" << stop << "' in '" << text << "'";
    if (!stream) EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
    else EXPECT_NE(r.text.find("\"finish_reason\":\"stop\""), std::string::npos);
  }
}

TEST_F(ServerTest, Logprobs) {
  auto c = client();
  const Reply r = post_json(c, "/v1/chat/completions",
                            {{"messages", kUser}, {"max_tokens", 3}, {"ignore_eos", true}, {"logprobs", true}, {"top_logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.text;
  const json& content = r.body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u);
  for (const json& e : content) {
    EXPECT_TRUE(e["token"].is_string());
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    EXPECT_TRUE(e["bytes"].is_array());
    ASSERT_EQ(e["top_logprobs"].size(), 2u);
    EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]);  // greedy picks the most likely
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(), e["top_logprobs"][1]["logprob"].get<double>());
  }
  const Reply legacy = post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"ignore_eos", true}, {"logprobs", 3}});
  const json& lp = legacy.body["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 2u);
  EXPECT_EQ(lp["token_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 3u);
  EXPECT_EQ(lp["text_offset"][0], 0);
}

void expect_error(const Reply& r, int status, const std::string& type, const std::string& code = "") {
  EXPECT_EQ(r.status, status) << r.text;
  ASSERT_TRUE(r.body.is_object()) << r.text;
  ASSERT_TRUE(r.body.contains("error")) << r.text;
  EXPECT_EQ(r.body["error"]["type"], type) << r.text;
  EXPECT_TRUE(r.body["error"]["message"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(r.body["error"]["code"], code) << r.text;
  }
}

TEST_F(ServerTest, ClientErrors) {
  auto c = client();
  {
    auto res = c.Post("/v1/chat/completions", "{\"messages\": [", "application/json");
    ASSERT_TRUE(res);
    Reply r{res->status, json::parse(res->body, nullptr, false), res->body, {}};
    expect_error(r, 400, "invalid_request_error", "invalid_json");
  }
  const Reply temp = post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"temperature", "hot"}});
  expect_error(temp, 400, "invalid_request_error");
  EXPECT_EQ(temp.body["error"]["param"], "temperature");
  const Reply n2 = post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"n", 17}});
  expect_error(n2, 400, "invalid_request_error");
  EXPECT_EQ(n2.body["error"]["param"], "n");
  expect_error(post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"model", "gpt-4o"}}), 404, "invalid_request_error",
               "model_not_found");
  expect_error(post_json(c, "/v1/embeddings", {{"input", "x"}}), 404, "invalid_request_error", "unknown_route");
  {
    auto res = c.Get("/nope");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404);
  }
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += " hello";
  const Reply too_long = post_json(c, "/v1/completions", {{"prompt", long_prompt}});
  expect_error(too_long, 400, "invalid_request_error", "context_length_exceeded");
  EXPECT_EQ(too_long.body["error"]["param"], "prompt");  // the completions field, not chat's "messages"
  const Reply too_long_chat = post_json(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", long_prompt}}}}});
  expect_error(too_long_chat, 400, "invalid_request_error", "context_length_exceeded");
  EXPECT_EQ(too_long_chat.body["error"]["param"], "messages");
  expect_error(post_json(c, "/v1/completions", {{"prompt", {999999999}}}), 400, "invalid_request_error");
  expect_error(post_json(c, "/v1/completions", {{"prompt", ""}}), 400, "invalid_request_error");
  // The server is unharmed.
  EXPECT_EQ(post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}}).status, 200);
}

TEST_F(ServerTest, Models) {
  auto c = client();
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const json list = json::parse(res->body);
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][0]["id"], "tiny");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(c.Get("/v1/models/tiny")->status, 200);
  EXPECT_EQ(c.Get("/v1/models/other")->status, 404);
}

TEST_F(ServerTest, Metrics) {
  auto c = client();
  post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"max_tokens", 4}, {"ignore_eos", true}});
  post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"n", 99}});
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string& m = res->body;
  EXPECT_NE(m.find("fathom_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("fathom_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1"), std::string::npos) << m;
  EXPECT_EQ(metric_value(m, "fathom_generated_tokens_total"), 4);
  EXPECT_GT(metric_value(m, "fathom_prompt_tokens_total"), 5);
  EXPECT_EQ(metric_value(m, "fathom_requests_waiting"), 0);
  EXPECT_EQ(metric_value(m, "fathom_requests_running"), 0);
  EXPECT_EQ(metric_value(m, "fathom_kv_blocks_used"), 0);
  EXPECT_EQ(metric_value(m, "fathom_kv_blocks_free"), 4 * 512 / 16);  // n_seq_max full contexts
  EXPECT_EQ(metric_value(m, "fathom_prefix_cache_hit_rate"), 0);
  EXPECT_EQ(metric_value(m, "fathom_ttft_seconds_count"), 1);
  EXPECT_EQ(metric_value(m, "fathom_tpot_seconds_count"), 1);
  EXPECT_EQ(metric_value(m, "fathom_e2e_seconds_count"), 1);
  EXPECT_EQ(metric_value(m, "fathom_model_loaded"), 1);
}

TEST(ServerConfig, BodyTooLarge) {
  ServerOptions o = test_options();
  o.max_body_bytes = 1024;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const Reply r = post_json(c, "/v1/completions", {{"prompt", std::string(4000, 'a')}});
  expect_error(r, 413, "invalid_request_error", "request_too_large");
}

TEST(ServerConfig, AuthAndAuditLog) {
  const std::string log = std::string(FATHOM_TEST_TMP) + "/serve-audit-" + std::to_string(getpid()) + ".jsonl";
  std::remove(log.c_str());
  ServerOptions o = test_options();
  o.api_keys = {"sk-alpha", "sk-beta"};
  o.audit_log = log;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const json req = {{"messages", kUser}, {"max_tokens", 2}, {"ignore_eos", true}};
  expect_error(post_json(c, "/v1/chat/completions", req), 401, "authentication_error", "invalid_api_key");
  expect_error(post_json(c, "/v1/chat/completions", req, {{"Authorization", "Bearer sk-alph"}}), 401, "authentication_error");
  expect_error(post_json(c, "/v1/chat/completions", req, {{"Authorization", "sk-alpha"}}), 401, "authentication_error");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  const Reply ok = post_json(c, "/v1/chat/completions", req, {{"Authorization", "Bearer sk-beta"}});
  EXPECT_EQ(ok.status, 200) << ok.text;
  EXPECT_EQ(c.Get("/health")->status, 200);  // health and metrics stay open for probes
  EXPECT_EQ(c.Get("/metrics")->status, 200);
  s->shutdown(std::chrono::seconds(5));

  std::ifstream in(log);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0]["status"], 401);
  EXPECT_TRUE(lines[0]["key"].is_null());
  EXPECT_EQ(lines[3]["route"], "/v1/models");
  const json& good = lines[4];
  EXPECT_EQ(good["status"], 200);
  EXPECT_EQ(good["key"], "key-2");
  EXPECT_EQ(good["route"], "/v1/chat/completions");
  EXPECT_EQ(good["request_id"], ok.body["id"]);
  EXPECT_EQ(good["prompt_tokens"], ok.body["usage"]["prompt_tokens"]);
  EXPECT_EQ(good["completion_tokens"], 2);
  EXPECT_TRUE(good["latency_ms"].is_number());
  EXPECT_TRUE(good["time"].is_string());
  EXPECT_FALSE(good.contains("prompt"));
  const std::string all = [&] { std::string t; for (auto& l : lines) t += l.dump(); return t; }();
  EXPECT_EQ(all.find("sk-beta"), std::string::npos);
  EXPECT_EQ(all.find("Tell me a story"), std::string::npos);
}

TEST(ServerConfig, AuditLogContent) {
  const std::string log = std::string(FATHOM_TEST_TMP) + "/serve-audit-content-" + std::to_string(getpid()) + ".jsonl";
  std::remove(log.c_str());
  ServerOptions o = test_options();
  o.audit_log = log;
  o.audit_log_content = true;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  const Reply ok = post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"max_tokens", 2}, {"stream", true}});
  ASSERT_EQ(ok.status, 200);
  s->shutdown(std::chrono::seconds(5));
  std::ifstream in(log);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const json j = json::parse(line);
  EXPECT_NE(j["prompt"].get<std::string>().find("Tell me a story."), std::string::npos);
  EXPECT_EQ(j["completion"], streamed_text(ok.text));
  EXPECT_TRUE(j["key"].is_null());
}

TEST(ServerConfig, QueueFullGives429) {
  ServerOptions o = test_options();
  o.engine.n_seq_max = 1;
  o.max_queue = 1;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  // One running and one queued request fill the server.
  const json long_req = {{"prompt", "Hello"}, {"max_tokens", 400}, {"ignore_eos", true}};
  std::vector<std::future<int>> busy;
  for (int i = 0; i < 2; ++i)
    busy.push_back(std::async(std::launch::async, [&] {
      auto c = client_for(*s);
      return post_json(c, "/v1/completions", long_req).status;
    }));
  auto c = client_for(*s);
  for (int i = 0; i < 500; ++i) {
    const std::string m = c.Get("/metrics")->body;
    if (metric_value(m, "fathom_requests_waiting") == 1 && metric_value(m, "fathom_requests_running") == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const Reply r = post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}});
  expect_error(r, 429, "rate_limit_error", "queue_full");
  ASSERT_TRUE(r.headers.count("Retry-After"));
  EXPECT_EQ(r.headers.find("Retry-After")->second, "1");
  for (auto& f : busy) EXPECT_EQ(f.get(), 200);
  EXPECT_EQ(post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 1}}).status, 200);
}

TEST(ServerConfig, LoadingGives503) {
  ServerOptions o = test_options();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  const EngineOptions engine_options = o.engine;
  o.engine_factory = [released, engine_options] {
    released.wait();
    return Engine::create(engine_options);
  };
  auto s = start_server(o, /*wait_loaded=*/false);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(json::parse(health->body)["status"], "loading");
  expect_error(post_json(c, "/v1/chat/completions", {{"messages", kUser}}), 503, "server_error", "model_loading");
  EXPECT_EQ(metric_value(c.Get("/metrics")->body, "fathom_model_loaded"), 0);
  release.set_value();
  ASSERT_TRUE(s->wait_loaded().is_ok());
  health = c.Get("/health");
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
}

TEST(ServerConfig, ReasoningContentWhenThePromptOpensThink) {
  ServerOptions o = test_options();
  auto tmpl = std::ifstream(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  ASSERT_FALSE(o.chat_template.empty());
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  // This R1 template opens <think> only with enable_thinking (else it closes the block at once).
  const json closed = post_json(c, "/v1/chat/completions", {{"messages", kUser}, {"max_tokens", 2}}).body;
  EXPECT_FALSE(closed["choices"][0]["message"].contains("reasoning_content")) << closed.dump();
  const json req = {{"messages", kUser}, {"max_tokens", 6}, {"ignore_eos", true},
                    {"chat_template_kwargs", {{"enable_thinking", true}}}};
  const Reply r = post_json(c, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.text;
  const json& msg = r.body["choices"][0]["message"];
  ASSERT_TRUE(msg.contains("reasoning_content")) << r.text;
  // The random model never closes the block, so everything it wrote is reasoning.
  EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(msg["content"], "");

  json sreq = req;
  sreq["stream"] = true;
  std::string reasoning;
  const Reply s_r = post_json(c, "/v1/chat/completions", sreq);
  EXPECT_EQ(streamed_text(s_r.text, &reasoning), "");
  EXPECT_EQ(reasoning, msg["reasoning_content"]);

  json inline_req = req;
  inline_req["reasoning_format"] = "none";
  const Reply i = post_json(c, "/v1/chat/completions", inline_req);
  EXPECT_FALSE(i.body["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_FALSE(i.body["choices"][0]["message"]["content"].get<std::string>().empty());
}

TEST(ServerConfig, GracefulShutdownFinishesStreams) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  const int port = s->port();
  auto in_flight = std::async(std::launch::async, [&] {
    auto c = client_for(*s);
    return post_json(c, "/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 120}, {"ignore_eos", true}, {"stream", true}});
  });
  auto c = client_for(*s);
  for (int i = 0; i < 500 && metric_value(c.Get("/metrics")->body, "fathom_requests_running") != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s->shutdown(std::chrono::seconds(20));
  const Reply r = in_flight.get();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(sse_payloads(r.text).back(), "[DONE]");
  EXPECT_NE(r.text.find("\"finish_reason\":\"length\""), std::string::npos);
  httplib::Client after("127.0.0.1", port);
  EXPECT_FALSE(after.Get("/health"));  // the listener is closed
}

TEST(ServerConfig, ShutdownTimeoutCancels) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  auto in_flight = std::async(std::launch::async, [&] {
    auto c = client_for(*s);
    return post_json(c, "/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 100000}, {"ignore_eos", true}});
  });
  auto c = client_for(*s);
  for (int i = 0; i < 500 && metric_value(c.Get("/metrics")->body, "fathom_requests_running") != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto t0 = std::chrono::steady_clock::now();
  s->shutdown(std::chrono::milliseconds(200));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  const Reply r = in_flight.get();
  expect_error(r, 503, "server_error", "shutting_down");
}

// --context-shift: a max_tokens past the context is honoured and usage says the context
// shifted; without it the same request stops at the end of the context, as before.
TEST(ServerContextShift, MaxTokensPastTheContext) {
  for (const int64_t keep : {int64_t{-1}, int64_t{4}}) {
    ServerOptions o = test_options();
    o.engine.n_ctx = 64;
    o.engine.context_shift_keep = keep;
    auto s = start_server(o);
    ASSERT_TRUE(s);
    httplib::Client c = client_for(*s);
    const Reply r = post_json(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 150}, {"ignore_eos", true}});
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
    const json& usage = r.body["usage"];
    if (keep < 0) {
      EXPECT_EQ(usage["prompt_tokens"].get<int64_t>() + usage["completion_tokens"].get<int64_t>(), 64) << r.text;
      EXPECT_FALSE(usage.contains("context_shifts"));
    } else {
      EXPECT_EQ(usage["completion_tokens"], 150) << r.text;
      EXPECT_GE(usage["context_shifts"].get<int64_t>(), 3) << r.text;
    }
  }
}

}  // namespace
}  // namespace fathom::server::test
