// `fathom serve`: an OpenAI- and Ollama-compatible HTTP server in front of one Engine.
//   POST /v1/chat/completions, POST /v1/completions   (streaming with Server-Sent Events)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics; POST /tokenize, /detokenize
//   POST /api/chat, /api/generate (NDJSON); GET /api/tags, /api/ps, /api/version; POST /api/show;
//   POST /api/pull (with allow_pull only)
//   GET  / : the built-in web chat (src/server/webchat)
// The listener comes up before the model is loaded (/health answers 503 "loading" meanwhile);
// one engine thread runs the continuous-batching loop; HTTP worker threads parse requests,
// submit them and relay their events. See src/server/README.md for the API and the choices.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "hub/pull.h"
#include "runtime/engine.h"
#include "server/engine_worker.h"
#include "server/http_server.h"
#include "server/openai_request.h"

namespace fathom::server {


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
  int http_threads = 0;               // threads preparing prompts (parse, template, tokenize); 0: 2
  int io_threads = 1;                 // threads running the HTTP event loop
  size_t max_connections = 4096;      // open connections; more get 503 at once
  size_t max_header_bytes = 16 << 10; // request line and headers; more get 431
  double keep_alive_seconds = 5;      // idle keep-alive connections are closed after this
  double header_timeout_seconds = 10; // a request's head must arrive within this of its first byte
  double read_timeout_seconds = 60;   // ... and its body within this
  // Folder for the saved prefix cache ("" = none): restored at start-up from
  // DIR/<model file stem>.prefix-cache, written there (atomically) when the engine thread stops.
  std::string kv_persist_dir;
  // Origins whose pages may call the API from a browser (CORS): exact "scheme://host[:port]"
  // values, or "*" for any. Empty: no CORS headers, and OPTIONS is not answered.
  std::vector<std::string> cors_origins;
  // POST /api/pull (--allow-pull): off by default, since it lets a client make the server
  // download gigabytes into models_dir (the store `fathom pull` uses), from pull_endpoint with
  // pull_token (HF_ENDPOINT and HF_TOKEN of the server's environment, never the request's).
  bool allow_pull = false;
  std::string models_dir;
  std::string pull_endpoint = hub::kDefaultEndpoint;
  std::string pull_token;
  // Makes the engine; default Engine::create(engine). Tests inject a slow one to observe loading.
  EngineFactory engine_factory;
};

struct ServerContext;
class OllamaPuller;

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
  // Graceful stop: close the listener and every connection not being answered, let requests
  // in flight finish for up to `grace`, cancel the rest, then end the HTTP and engine threads
  // (the engine thread saves --kv-persist). Bounded by grace + about 1 s. Safe to call twice.
  void shutdown(std::chrono::milliseconds grace);
  // Makes a shutdown in progress (on another thread) cancel what is in flight now.
  void hurry() { hurry_ = true; }

 private:
  explicit Server(std::unique_ptr<ServerContext> ctx);

  void route(http::Request req, std::shared_ptr<http::ResponseWriter> writer);
  // Waits until `done` holds, `until` passes or hurry() was called.
  template <typename F>
  bool wait_for(F done, std::chrono::steady_clock::time_point until);

  std::unique_ptr<ServerContext> ctx_;       // what the handlers share
  std::unique_ptr<http::Server> http_;       // the listener and connections
  std::unique_ptr<OllamaPuller> puller_;     // POST /api/pull; null without allow_pull
  int port_ = 0;                             // bound port
  bool stopped_ = false;                     // shutdown() already ran
  std::atomic<bool> hurry_{false};           // see hurry()
};

}  // namespace fathom::server
