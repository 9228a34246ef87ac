// Shared set-up of the server tests: a tiny synthetic qwen2 model with the real qwen2 tokenizer
// (written once into FATHOM_TEST_TMP), an in-process Server on a free port, and small HTTP
// helpers. Weights are random, so text is gibberish, but greedy outputs are deterministic.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/synth.h"
#include "server/server.h"

namespace fathom::server::test {

using nlohmann::json;

// The model file, synthesized on first use. Written under a temporary name and renamed, so
// test processes running in parallel never see a half-written file.
inline std::string tiny_model_path() {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/serve-qwen2-tiny.gguf";
  if (std::filesystem::exists(path)) return path;
  SynthOptions o;
  o.arch = "qwen2";
  o.preset = "tiny";
  o.seed = 7;
  o.vocab_path = std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf";
  o.n_threads = 2;
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  const Status st = synth_model(o, tmp);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  std::filesystem::rename(tmp, path);
  return path;
}

inline ServerOptions test_options() {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.engine.model_path = tiny_model_path();
  o.engine.n_threads = 2;
  o.engine.n_ctx = 512;
  o.engine.n_seq_max = 4;
  o.model_alias = "tiny";
  o.max_queue = 16;
  o.defaults.sampling.temperature = 0.0f;  // greedy unless a test asks otherwise
  return o;
}

// Starts a server and waits for its model; nullptr (with a test failure) when anything fails.
inline std::unique_ptr<Server> start_server(ServerOptions options, bool wait_loaded = true) {
  auto created = Server::create(std::move(options));
  EXPECT_TRUE(created) << created.status().to_string();
  if (!created) return nullptr;
  std::unique_ptr<Server> s = std::move(created).value();
  const Status st = s->start();
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  if (!st.is_ok()) return nullptr;
  if (wait_loaded) {
    const Status loaded = s->wait_loaded();
    EXPECT_TRUE(loaded.is_ok()) << loaded.to_string();
  }
  return s;
}

inline httplib::Client client_for(const Server& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(60, 0);
  return c;
}

// A fixture with a server on the default test options, started for each test.
class DefaultServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = start_server(test_options());
    ASSERT_TRUE(server_);
  }
  httplib::Client client() { return client_for(*server_); }
  std::unique_ptr<Server> server_;
};

// POSTs JSON; the parsed body (null when not JSON) and status.
struct Reply {
  int status = 0;          // HTTP status, 0 when the request failed
  json body;               // parsed body, null if not JSON
  std::string text;        // raw body
  httplib::Headers headers;
};

inline Reply post_json(httplib::Client& c, const std::string& path, const json& body,
                       const httplib::Headers& headers = {}) {
  Reply r;
  auto res = c.Post(path.c_str(), headers, body.dump(), "application/json");
  if (!res) {
    r.text = "HTTP client error: " + httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.text = res->body;
  r.headers = res->headers;
  r.body = json::parse(res->body, nullptr, false);
  if (r.body.is_discarded()) r.body = nullptr;
  return r;
}

// The "data:" payloads of an SSE body, in order ("[DONE]" included as a string).
inline std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(pos, end - pos);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

// Concatenated text of a streamed completion (chat content or completions text).
inline std::string streamed_text(const std::string& body, std::string* reasoning = nullptr) {
  std::string text;
  for (const std::string& p : sse_payloads(body)) {
    if (p == "[DONE]") continue;
    const json chunk = json::parse(p, nullptr, false);
    if (chunk.is_discarded() || !chunk.contains("choices")) continue;
    for (const json& c : chunk["choices"]) {
      if (c.contains("text")) text += c["text"].get<std::string>();
      if (c.contains("delta")) {
        if (c["delta"].contains("content") && c["delta"]["content"].is_string()) text += c["delta"]["content"].get<std::string>();
        if (reasoning && c["delta"].contains("reasoning_content")) *reasoning += c["delta"]["reasoning_content"].get<std::string>();
      }
    }
  }
  return text;
}

// Value of an unlabelled metric in /metrics text (-1 when absent).
inline double metric_value(const std::string& metrics, const std::string& name) {
  size_t pos = 0;
  while ((pos = metrics.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || metrics[pos - 1] == '\n') return std::stod(metrics.substr(pos + name.size() + 1));
    pos += name.size();
  }
  return -1;
}

}  // namespace fathom::server::test
