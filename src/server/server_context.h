// State shared by the HTTP handlers of one Server, and the per-request bookkeeping they keep
// for the audit log. Internal to src/server.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/engine_worker.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_response.h"
#include "server/server.h"
#include "server/task_queue.h"

namespace fathom::server {

// One API request from arrival to its last byte, for the audit log.
struct Exchange {
  AuditRecord record;        // filled in as the request is handled
  double t_arrival = 0.0;    // steady-clock seconds when the handler started
};

struct ServerContext {
  ServerOptions options;              // as given to Server::create
  std::string model_name;             // the id clients address (alias or file stem)
  int64_t created = 0;                // unix seconds the server started (for /v1/models)
  ApiKeys keys;                       // accepted bearer tokens
  std::unique_ptr<AuditLog> audit;    // null when no audit log
  Metrics metrics;                    // what /metrics renders
  std::unique_ptr<EngineWorker> worker;  // the engine thread
  std::unique_ptr<TaskQueue> tasks;   // prompt preparation, off the event loop
  std::once_flag token_bytes_once;    // guards max_prompt_token_bytes
  size_t max_prompt_token_bytes = 0;  // longest token text in the vocabulary (set on first use)
  std::atomic<bool> draining{false};  // shutdown began: refuse new generations
  std::atomic<int> tokenize_in_flight{0};  // /tokenize and /detokenize requests queued or running
  std::once_flag ollama_model_once;   // guards ollama_model
  nlohmann::json ollama_model;        // the model's Ollama description (/api/tags, /api/show), read on first use
  std::atomic<uint64_t> next_id{1};   // response id counter
  uint64_t id_salt = 0;               // random per server, so ids differ across restarts

  ServerContext(ServerOptions opts, int32_t max_running, int64_t max_in_flight)
      : options(std::move(opts)), worker(std::make_unique<EngineWorker>(metrics, max_running, max_in_flight)) {}

  std::string new_response_id(const char* prefix);  // "chatcmpl-<hex>"
  uint64_t new_seed();                              // for requests without "seed"
  // Ends the exchange's record with its status and latency and writes it (a no-op without an audit log).
  void write_audit(Exchange& exchange, int status);
};

// An OpenAI error body with its status (and Retry-After for 429 and 503).
http::Response error_response(const ApiError& error);
// JSON with the status.
http::Response json_response(int status, std::string body);

// /v1/chat/completions and /v1/completions, on a TaskQueue thread. One place was already
// held for the request (EngineWorker::reserve); this gives it back or hands it to submit.
void handle_generation(ServerContext& ctx, Endpoint endpoint, const http::Request& req,
                       std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange);

// The JSON body of a generation request, on its TaskQueue thread; nullopt, answered through
// `fail`, when the server began draining or is not loaded, or the body is not JSON.
std::optional<nlohmann::json> generation_body(ServerContext& ctx, const http::Request& req,
                                              const std::function<void(const ApiError&)>& fail);

// How a generation's events become bytes on the wire: the OpenAI shapes (SSE) or Ollama's
// (NDJSON). The relay (events, disconnects, metrics, audit) is the same for both.
class ResponseWire {
 public:
  virtual ~ResponseWire() = default;
  // The head of a streamed response (its body is written first) and the text written after
  // a silence ("": none).
  virtual http::Response stream_head(const ResponseMeta& meta, size_t n_choices) const = 0;
  virtual std::string heartbeat() const = 0;
  // Stream text for one event of choice `index`, already applied to `choice` (which is
  // finished() when this was its final event); `delta` is the text it added.
  virtual std::string stream_event(const ResponseMeta& meta, size_t index, const ChoiceBuilder& choice,
                                   const ChoiceBuilder::Delta& delta) const = 0;
  // The stream's last text once every choice finished; `failure` when one failed.
  virtual std::string stream_end(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage& usage,
                                 const std::optional<ApiError>& failure) const = 0;
  virtual http::Response body(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage& usage) const = 0;
  virtual http::Response error(const ApiError& error) const = 0;
};

// Holds one admission place (EngineWorker::reserve) until run_generation hands it to submit;
// gives it back on every other path, exceptions included.
struct Reservation {
  EngineWorker& worker;
  bool held = true;
  explicit Reservation(EngineWorker& w) : worker(w) {}
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() {
    if (held) worker.release_reservation();
  }
};

// Prepares the prompts of a validated request (template, tokenize, limits), submits one
// engine request per choice and relays their events through `wire`. The request's model
// name must already have been checked. Errors are answered with wire.error().
void run_generation(ServerContext& ctx, OpenAiRequest& request, std::unique_ptr<ResponseWire> wire, ResponseMeta meta,
                    std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange,
                    Reservation& reservation);

// /tokenize and /detokenize share the TaskQueue with generation, whose admission bounds the
// queue; these bound their own share (more are answered 429).
inline constexpr int kMaxTokenizeInFlight = 16;

// POST /tokenize (detokenize = false) and POST /detokenize, on a TaskQueue thread; decrements
// tokenize_in_flight when answered.
void handle_tokenize(ServerContext& ctx, bool detokenize, const http::Request& req,
                     std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange);

}  // namespace fathom::server
