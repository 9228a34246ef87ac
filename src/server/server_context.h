// State shared by the HTTP handlers of one Server, and the per-request bookkeeping they keep
// for the audit log. Internal to src/server.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <httplib.h>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/engine_worker.h"
#include "server/metrics.h"
#include "server/server.h"

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
  std::atomic<bool> draining{false};  // shutdown began: refuse new generations
  std::atomic<uint64_t> next_id{1};   // response id counter
  uint64_t id_salt = 0;               // random per server, so ids differ across restarts

  ServerContext(ServerOptions opts, int32_t max_running, int64_t max_in_flight)
      : options(std::move(opts)), worker(std::make_unique<EngineWorker>(metrics, max_running, max_in_flight)) {}

  std::string new_response_id(const char* prefix);  // "chatcmpl-<hex>"
  uint64_t new_seed();                              // for requests without "seed"
  void write_audit(const Exchange& exchange);       // no-op without an audit log
};

// Sends an OpenAI error body with its status (and Retry-After for 429).
void respond_error(httplib::Response& res, const ApiError& error);
// Sends JSON with the status.
void respond_json(httplib::Response& res, int status, const std::string& body);

// /v1/chat/completions and /v1/completions.
void handle_generation(ServerContext& ctx, Endpoint endpoint, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<Exchange> exchange);

}  // namespace fathom::server
