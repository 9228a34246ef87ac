// State shared by the HTTP handlers of one Server, and the per-request bookkeeping they keep
// for the audit log. Internal to src/server.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/engine_worker.h"
#include "server/http_server.h"
#include "server/metrics.h"
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

// /tokenize and /detokenize share the TaskQueue with generation, whose admission bounds the
// queue; these bound their own share (more are answered 429).
inline constexpr int kMaxTokenizeInFlight = 16;

// POST /tokenize (detokenize = false) and POST /detokenize, on a TaskQueue thread; decrements
// tokenize_in_flight when answered.
void handle_tokenize(ServerContext& ctx, bool detokenize, const http::Request& req,
                     std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange);

}  // namespace fathom::server
