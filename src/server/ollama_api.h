// The Ollama-compatible API on the same port as the OpenAI one, so tools that speak Ollama
// (its npm/python clients, Open WebUI, editors) can use fathom serve:
//   POST /api/chat, POST /api/generate   (NDJSON streaming, the default, or one JSON body)
//   GET /api/tags, POST /api/show, GET /api/ps, GET /api/version
//   POST /api/pull (with --allow-pull): `fathom pull` into the model store (OllamaPuller)
// Requests are translated into the OpenAI request (openai_request.h) and run through the same
// generation path (run_generation); only the wire shapes differ. Errors are Ollama's
// {"error": "..."}. See src/server/README.md for the supported fields.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>

#include <nlohmann/json.hpp>

#include "hub/pull.h"
#include "server/api_error.h"
#include "server/http_server.h"
#include "server/openai_request.h"

namespace fathom::server {

struct ServerContext;
struct Exchange;

enum class OllamaEndpoint { kChat, kGenerate };

// A validated /api/chat or /api/generate body.
struct OllamaRequest {
  OllamaEndpoint endpoint = OllamaEndpoint::kChat;
  std::string model;         // "model" as sent
  OpenAiRequest request;     // what runs: messages (chat, or generate's system + prompt) or a raw prompt
  bool load_only = false;    // no messages / empty prompt: Ollama's "load the model" call, answered at once
  int64_t repeat_last_n = -2;  // options.repeat_last_n; -1: the whole context; -2: not sent
};

// The longest keep_alive fathom accepts as a duration (the model stays loaded for the
// server's life anyway; the bound keeps the number meaningful).
inline constexpr double kMaxKeepAliveSeconds = 100.0 * 365 * 24 * 3600;

// Validates an Ollama body and translates it. `n_ctx` is the server's context (num_ctx must
// fit in it). Errors are 400s naming the field (options.X for options).
std::variant<OllamaRequest, ApiError> parse_ollama_request(OllamaEndpoint endpoint, const nlohmann::json& body,
                                                           const RequestDefaults& defaults, int64_t n_ctx);

// Whether `name` addresses the served model: its name, or that name with Ollama's ":latest" tag.
bool ollama_model_matches(const std::string& name, const std::string& served);

// {"error": message} with the error's status (and Retry-After for 429 and 503).
http::Response ollama_error_response(const ApiError& error);

// Unix nanoseconds as RFC 3339 with nanoseconds in UTC ("2024-05-01T12:00:00.123456789Z"), as Ollama writes times.
std::string rfc3339(int64_t unix_nanos);

// POST /api/chat and /api/generate, on a TaskQueue thread, with one place reserved.
void handle_ollama_generation(ServerContext& ctx, OllamaEndpoint endpoint, const http::Request& req,
                              std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange);

// GET /api/tags, /api/ps, /api/version and POST /api/show: the answer (the model is loaded).
http::Response ollama_info_response(ServerContext& ctx, const http::Request& req);

// The longest /api/pull body read (it names one model).
inline constexpr size_t kMaxPullBodyBytes = 64 << 10;
// Progress lines of one file are at least this far apart (its last one is always sent).
inline constexpr double kPullProgressIntervalSeconds = 0.1;

// POST /api/pull {"model", "stream", "insecure"}: fetches a model into the model store with
// the code of `fathom pull` (hub::pull_model), relaying Ollama's NDJSON progress ("pulling
// manifest", "pulling FILE" with digest/total/completed, "verifying sha256 digest", "writing
// manifest", "success"). One pull at a time (another gets 429), on a thread of its own so the
// HTTP threads keep serving. The client going away, or stop(), cancels the transfer; the
// .partial file stays for a later pull to resume. The served model does not change.
class OllamaPuller {
 public:
  // store_root: the model store's root; options: endpoint and token (callbacks are set per pull).
  OllamaPuller(std::string store_root, hub::PullOptions options);
  ~OllamaPuller();  // stop()
  OllamaPuller(const OllamaPuller&) = delete;
  OllamaPuller& operator=(const OllamaPuller&) = delete;

  // Answers `req` (at once for a refusal, else from the pull thread); `done` gets the status
  // once the answer has ended. Does not block.
  void handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer, std::function<void(int)> done);
  // Cancels the pull in progress and waits for its thread; later requests get 503.
  void stop();

 private:
  void run(hub::ModelRef ref, bool stream, std::shared_ptr<http::ResponseWriter> writer,
           std::shared_ptr<std::atomic<bool>> client_gone, std::function<void(int)> done);

  hub::ModelStore store_;      // where pulled models go
  hub::PullOptions options_;   // endpoint and token
  std::atomic<bool> stop_{false};  // stop() was called: cancel and refuse
  std::mutex mu_;              // guards busy_ and thread_
  bool busy_ = false;          // a pull is in progress
  std::thread thread_;         // the pull in progress, or the last one (joined before the next)
};

}  // namespace fathom::server
