// `fathom serve`: an OpenAI-compatible HTTP server in front of one Engine.
//   POST /v1/chat/completions, POST /v1/completions   (streaming with Server-Sent Events)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics
// The listener comes up before the model is loaded (/health answers 503 "loading" meanwhile);
// one engine thread runs the continuous-batching loop; HTTP worker threads parse requests,
// submit them and relay their events. See src/server/README.md for the API and the choices.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "runtime/engine.h"
#include "server/engine_worker.h"
#include "server/openai_request.h"

namespace fathom::server {

class Listener;  // httplib::Server with a graceful close (server.cpp)

struct ServerOptions {
  std::string host = "127.0.0.1";     // address to listen on
  int port = 8080;                    // 0: any free port (see Server::port)
  EngineOptions engine;               // model file, threads, context, sequences
  std::string model_alias;            // model id in /v1/models and responses; "": the file's stem
  int max_queue = 64;                 // requests accepted beyond those running; more get 429
  size_t max_body_bytes = 8u << 20;   // larger request bodies get 413
  std::vector<std::string> api_keys;  // accepted bearer tokens (none and no file: no auth)
  std::string api_key_file;           // more keys, one per line
  std::string audit_log;              // JSON-lines audit file ("" = none)
  bool audit_log_content = false;     // also log prompt and completion text
  RequestDefaults defaults;           // sampling and max_tokens for what requests omit
  std::string chat_template;          // Jinja chat template replacing the model's ("" = the model's)
  int http_threads = 0;               // HTTP worker threads; 0: running + queue + 8
  int keep_alive_seconds = 5;         // idle keep-alive connections are closed after this
  // Folder for the saved prefix cache ("" = none): restored at start-up from
  // DIR/<model file stem>.prefix-cache, written there (atomically) when the engine thread stops.
  std::string kv_persist_dir;
  // Makes the engine; default Engine::create(engine). Tests inject a slow one to observe loading.
  EngineFactory engine_factory;
};

struct ServerContext;

class Server {
 public:
  // Checks the options and opens the key file and audit log; does not listen yet.
  static Expected<std::unique_ptr<Server>> create(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts listening, then starts loading the model on the engine thread.
  Status start();
  int port() const { return port_; }                // the bound port (after start)
  std::string address() const;                      // "http://HOST:PORT"
  Status wait_loaded();                             // blocks until loaded; the load error if any
  // Graceful stop: close the listener, let requests in flight finish for up to `grace`, cancel
  // the rest, then end the HTTP and engine threads. Safe to call more than once.
  void shutdown(std::chrono::milliseconds grace);

 private:
  explicit Server(std::unique_ptr<ServerContext> ctx);
  void install_routes();

  std::unique_ptr<ServerContext> ctx_;       // what the handlers share
  std::unique_ptr<Listener> http_;           // the HTTP listener and worker pool
  std::thread listen_thread_;                // runs http_->listen_after_bind()
  int port_ = 0;                             // bound port
  bool stopped_ = false;                     // shutdown() already ran
};

}  // namespace fathom::server
