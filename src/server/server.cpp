// Routes, authentication, error bodies for what the HTTP layer rejects itself, request
// counting, admission, and the listener/engine lifecycle.
#include "server/server.h"

#include <algorithm>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "server/ollama_api.h"
#include "server/openai_response.h"
#include "server/server_context.h"
#include "server/webchat_assets.h"

namespace fathom::server {

namespace {

using nlohmann::json;

// The route label of /metrics: fixed routes by name, anything else as "other" so that
// scanners probing random paths cannot grow the label set.
std::string route_label(const std::string& path) {
  for (const char* route : {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize",
                            "/detokenize", "/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/ps", "/api/version",
                            "/api/pull"})
    if (path == route) return route;
  if (webchat_asset(path)) return "/webchat";
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

constexpr int kListenBacklog = 1024;  // connections the kernel queues before accept()

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, seconds) * 1000.0));
}

// The JSON routes take JSON (or a body with no type). Refusing other types keeps a web page
// from driving the API with a "simple" cross-origin POST (text/plain, form data), which a
// browser sends without asking the server first.
bool json_content_type(const std::string& content_type) {
  if (content_type.empty()) return true;
  std::string type = content_type.substr(0, content_type.find(';'));
  type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }), type.end());
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  return type == "application/json" || (type.rfind("application/", 0) == 0 && type.size() > 5 && type.compare(type.size() - 5, 5, "+json") == 0);
}

std::string model_name_from_path(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// A browser sends Origin as "scheme://host[:port]": no path, no trailing slash.
bool valid_origin(const std::string& origin) {
  const size_t scheme_end = origin.find("://");
  if (origin == "*") return true;
  if (scheme_end == std::string::npos || scheme_end == 0 || scheme_end + 3 == origin.size()) return false;
  for (size_t i = 0; i < origin.size(); ++i) {
    const unsigned char c = origin[i];
    if (i >= scheme_end && i < scheme_end + 3) continue;
    if (!std::isalnum(c) && c != '.' && c != '-' && c != ':' && c != '[' && c != ']' && c != '+') return false;
  }
  return true;
}

// Request headers a preflight may ask for: echoed when they are a plain list of header names
// (the OpenAI SDKs send several x-stainless-* ones), else the two the APIs need.
std::string allowed_request_headers(const std::string& requested) {
  constexpr size_t kMaxRequestedHeaders = 2048;
  bool plain = !requested.empty() && requested.size() <= kMaxRequestedHeaders;
  for (unsigned char c : requested) plain = plain && (std::isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' ');
  return plain ? requested : "Authorization, Content-Type";
}

// Browsers cache a preflight's answer this long (Chromium caps it at 2 hours).
constexpr int kCorsMaxAgeSeconds = 600;

// CORS: an allowed Origin gets its Access-Control-Allow-Origin on every response to the
// request (streams and errors included); other origins get none, so the browser keeps the
// answer from the page. True when the request was a preflight (OPTIONS) and is answered.
bool apply_cors(const std::vector<std::string>& allowed, const http::Request& req, http::ResponseWriter& writer,
                const std::function<http::Response(const ApiError&)>& shaped) {
  const std::string origin = req.header("Origin");
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  const bool ok = !origin.empty() && (any || std::find(allowed.begin(), allowed.end(), origin) != allowed.end());
  http::Headers cors;
  if (ok) cors.emplace_back("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) cors.emplace_back("Vary", "Origin");
  if (req.method != "OPTIONS") {
    writer.add_headers(std::move(cors));
    return false;
  }
  if (!ok || req.header("Access-Control-Request-Method").empty()) {
    writer.send(shaped(ApiError{403, "invalid_request_error", "cors_origin_not_allowed", "",
                                "this is not a CORS preflight from an allowed origin (--cors-origin)"}));
    return true;
  }
  cors.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  cors.emplace_back("Access-Control-Allow-Headers", allowed_request_headers(req.header("Access-Control-Request-Headers")));
  cors.emplace_back("Access-Control-Max-Age", std::to_string(kCorsMaxAgeSeconds));
  http::Response r;
  r.status = 204;
  r.content_type.clear();
  r.headers = std::move(cors);
  writer.send(std::move(r));
  return true;
}

// The web chat's files: static, no secrets, so no key is needed to load them (the page's API
// calls need one). True when `path` is one of them and is answered.
bool answer_webchat(const std::string& path, http::ResponseWriter& writer) {
  const WebchatAsset* asset = webchat_asset(path);
  if (!asset) return false;
  http::Response r;
  r.content_type = asset->content_type;
  r.body = asset->body;
  // The page talks only to this server and runs only its own script.
  r.headers = {{"Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"},
               {"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-cache"}};
  writer.send(std::move(r));
  return true;
}

}  // namespace

std::string ServerContext::new_response_id(const char* prefix) {
  return strprintf("%s%016llx", prefix, static_cast<unsigned long long>(id_salt ^ (next_id.fetch_add(1) * 0x9E3779B97F4A7C15ull)));
}

uint64_t ServerContext::new_seed() { return id_salt + next_id.fetch_add(1); }

void ServerContext::write_audit(Exchange& exchange, int status) {
  exchange.record.status = status;
  exchange.record.latency_seconds = now_seconds() - exchange.t_arrival;
  if (audit) audit->write(exchange.record);
}

http::Response json_response(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http::Response error_response(const ApiError& error) {
  http::Response r = json_response(error.http_status, error.to_json());
  if (error.http_status == 429 || error.http_status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

Expected<std::unique_ptr<Server>> Server::create(ServerOptions options) {
  if (options.engine.model_path.empty() && !options.engine_factory)
    return error(ErrorCode::kInvalidArgument, "no model given; pass -m FILE.gguf");
  if (options.max_queue < 0) return error(ErrorCode::kInvalidArgument, "--max-queue must not be negative");
  for (const std::string& origin : options.cors_origins)
    if (!valid_origin(origin))
      return error(ErrorCode::kInvalidArgument,
                   strprintf("--cors-origin '%s': an origin is scheme://host[:port] with no path (e.g. "
                             "http://localhost:3000), or '*' for any", origin.c_str()));
  if (options.engine.n_seq_max <= 0) return error(ErrorCode::kInvalidArgument, "--parallel must be at least 1");
  if (options.allow_pull) {
    if (options.models_dir.empty()) return error(ErrorCode::kInvalidArgument, "--allow-pull needs the model store's folder");
    if (Status st = hub::check_endpoint(options.pull_endpoint); !st)
      return error(ErrorCode::kInvalidArgument, "--allow-pull: HF_ENDPOINT: " + st.message());
  }
  if (!options.kv_persist_dir.empty()) {
    if (!options.engine.prefix_cache)
      return error(ErrorCode::kInvalidArgument, "--kv-persist saves the prefix cache; it cannot be used with --no-prefix-cache");
    std::error_code ec;
    std::filesystem::create_directories(options.kv_persist_dir, ec);
    if (ec || !std::filesystem::is_directory(options.kv_persist_dir))
      return error(ErrorCode::kIo, strprintf("--kv-persist %s: not a folder that can be created or written (%s)",
                                             options.kv_persist_dir.c_str(), ec ? ec.message().c_str() : "exists as a file"));
  }
  FATHOM_ASSIGN_OR_RETURN(ApiKeys keys, ApiKeys::load(options.api_keys, options.api_key_file));
  std::unique_ptr<AuditLog> audit;
  if (!options.audit_log.empty()) {
    FATHOM_ASSIGN_OR_RETURN(audit, AuditLog::open(options.audit_log, options.audit_log_content));
  }
  const int32_t max_running = options.engine.max_running > 0 ? options.engine.max_running : options.engine.n_seq_max;
  const int64_t max_in_flight = static_cast<int64_t>(max_running) + options.max_queue;
  auto ctx = std::make_unique<ServerContext>(std::move(options), max_running, max_in_flight);
  ctx->keys = std::move(keys);
  ctx->audit = std::move(audit);
  ctx->model_name = !ctx->options.model_alias.empty() ? ctx->options.model_alias
                                                      : model_name_from_path(ctx->options.engine.model_path);
  ctx->created = static_cast<int64_t>(std::time(nullptr));
  ctx->id_salt = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  return std::unique_ptr<Server>(new Server(std::move(ctx)));
}

Server::Server(std::unique_ptr<ServerContext> ctx) : ctx_(std::move(ctx)) {
  if (!ctx_->options.allow_pull) return;
  hub::PullOptions pull;
  pull.endpoint = ctx_->options.pull_endpoint;
  pull.token = ctx_->options.pull_token;
  puller_ = std::make_unique<OllamaPuller>(ctx_->options.models_dir, std::move(pull));
}

Server::~Server() { shutdown(std::chrono::milliseconds(0)); }

std::string Server::address() const { return strprintf("http://%s:%d", ctx_->options.host.c_str(), port_); }

Status Server::wait_loaded() { return ctx_->worker->wait_loaded(); }

void Server::route(http::Request req, std::shared_ptr<http::ResponseWriter> writer) {
  ServerContext& ctx = *ctx_;
  const std::string label = route_label(req.path);
  writer->on_status([&m = ctx.metrics, label](int status) { m.count_request(label, status); });
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool post = req.method == "POST";
  const bool ollama = req.path.rfind("/api/", 0) == 0;  // Ollama's routes answer errors in its shape
  auto shaped = [ollama](const ApiError& e) { return ollama ? ollama_error_response(e) : error_response(e); };

  if (!ctx.options.cors_origins.empty() && apply_cors(ctx.options.cors_origins, req, *writer, shaped)) return;
  if (get && answer_webchat(req.path, *writer)) return;

  if (get && req.path == "/health") {
    if (ctx.draining) return writer->send(json_response(503, R"({"status":"shutting_down"})"));
    switch (ctx.worker->state()) {
      case EngineState::kReady: return writer->send(json_response(200, R"({"status":"ok"})"));
      case EngineState::kLoading: return writer->send(json_response(503, R"({"status":"loading"})"));
      case EngineState::kFailed:
        return writer->send(json_response(503, json_text(json{{"status", "error"}, {"message", ctx.worker->load_status().to_string()}})));
    }
  }
  if (get && req.path == "/metrics") {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = ctx.metrics.render();
    return writer->send(std::move(r));
  }
  const bool models = get && (req.path == "/v1/models" || req.path.rfind("/v1/models/", 0) == 0);
  const bool chat = post && req.path == "/v1/chat/completions";
  const bool completions = post && req.path == "/v1/completions";
  const bool tokenize = post && (req.path == "/tokenize" || req.path == "/detokenize");
  const bool ollama_info = (get && (req.path == "/api/tags" || req.path == "/api/ps" || req.path == "/api/version")) ||
                           (post && req.path == "/api/show");
  const bool ollama_generation = post && (req.path == "/api/chat" || req.path == "/api/generate");
  const bool ollama_pull = post && req.path == "/api/pull";
  if (!models && !chat && !completions && !tokenize && !ollama_info && !ollama_generation && !ollama_pull) {
    return writer->send(shaped(not_found(
        strprintf("unknown route: %s %s (the server answers POST /v1/chat/completions, POST /v1/completions, GET "
                  "/v1/models, POST /tokenize, POST /detokenize, POST /api/chat, POST /api/generate, GET /api/tags, "
                  "POST /api/show, POST /api/pull, GET /api/ps, GET /api/version, GET /health, GET /metrics, GET / (web chat))",
                  req.method.c_str(), req.path.c_str()), "unknown_route")));
  }

  // The /v1 routes are authenticated calls: each one gets an audit record, 401s included.
  auto ex = std::make_shared<Exchange>();
  ex->t_arrival = req.t_arrival;
  ex->record.route = label;
  auto answer = [&ctx, ex, writer, shaped](const ApiError& e) {
    writer->send(shaped(e));
    ctx.write_audit(*ex, e.http_status);
  };
  if (ctx.keys.enabled()) {
    std::optional<size_t> key = ctx.keys.match(req.header("Authorization"));
    if (!key)
      return answer(unauthorized("missing or invalid API key: send the header 'Authorization: Bearer KEY' with a key "
                                 "the server was started with (--api-key / --api-key-file)"));
    ex->record.key_id = ApiKeys::key_id(*key);
  }
  const Engine* engine = ctx.worker->engine();
  if (models || ollama_info) {
    if (!engine && req.path != "/api/version") {
      if (ctx.worker->state() == EngineState::kFailed)
        return answer(unavailable("the model failed to load: " + ctx.worker->load_status().to_string(), "model_load_failed"));
      return answer(unavailable("the model is still loading; retry when GET /health answers 200", "model_loading"));
    }
    if (ollama_info) {
      http::Response r = ollama_info_response(ctx, req);
      ctx.write_audit(*ex, r.status);
      return writer->send(std::move(r));
    }
    json m = {{"id", ctx.model_name}, {"object", "model"}, {"created", ctx.created}, {"owned_by", "fathom"},
              {"context_length", engine->n_ctx()}};
    if (req.path != "/v1/models") {
      const std::string id = req.path.substr(std::string("/v1/models/").size());
      if (id != ctx.model_name)
        return answer(not_found(strprintf("the model '%s' does not exist; this server serves '%s'", id.c_str(),
                                          ctx.model_name.c_str()), "model_not_found"));
    } else {
      m = json{{"object", "list"}, {"data", json::array({m})}};
    }
    writer->send(json_response(200, json_text(m)));
    ctx.write_audit(*ex, 200);
    return;
  }

  if (ollama_pull && !puller_)
    return answer(ApiError{403, "permission_error", "pull_disabled", "",
                           "pulling models is off on this server; start fathom serve with --allow-pull to let clients "
                           "download models into its model store"});
  // Generation (and pulls): everything that can refuse the request cheaply is decided here, on
  // the event loop, before the body is parsed or the prompt tokenized.
  if (!json_content_type(req.header("Content-Type")))
    return answer(ApiError{415, "invalid_request_error", "unsupported_media_type", "",
                           "the body must be JSON: send the header 'Content-Type: application/json' (got '" +
                               req.header("Content-Type") + "')"});
  if (ctx.draining) return answer(unavailable("the server is shutting down", "shutting_down"));
  if (ollama_pull) return puller_->handle(req, writer, [&ctx, ex](int status) { ctx.write_audit(*ex, status); });
  if (!engine) return answer(unavailable("the model is still loading; retry when GET /health answers 200", "model_loading"));
  if (tokenize) {
    if (ctx.tokenize_in_flight.fetch_add(1) >= kMaxTokenizeInFlight) {
      --ctx.tokenize_in_flight;
      return answer(ApiError{429, "rate_limit_error", "queue_full", "",
                             strprintf("%d tokenize requests are already in progress; retry shortly", kMaxTokenizeInFlight)});
    }
    const bool detokenize = req.path == "/detokenize";
    ctx.tasks->post([&ctx, detokenize, req = std::move(req), writer, ex] { handle_tokenize(ctx, detokenize, req, writer, ex); });
    return;
  }
  if (!ctx.worker->reserve()) return answer(queue_full(ctx.options.max_queue));
  ctx.tasks->post([&ctx, chat, ollama_generation, shaped, req = std::move(req), writer, ex] {
    try {
      if (ollama_generation)
        handle_ollama_generation(ctx, req.path == "/api/chat" ? OllamaEndpoint::kChat : OllamaEndpoint::kGenerate, req, writer, ex);
      else
        handle_generation(ctx, chat ? Endpoint::kChat : Endpoint::kCompletions, req, writer, ex);
    } catch (const std::exception& e) {
      writer->send(shaped(internal_error(std::string("internal error: ") + e.what())));
      ctx.write_audit(*ex, 500);
    }
  });
}

Status Server::start() {
  // A write to a connection the client closed fails with EPIPE instead of ending the process.
  std::signal(SIGPIPE, SIG_IGN);
  ServerContext& ctx = *ctx_;
  http::Options o;
  o.host = ctx.options.host;
  o.port = ctx.options.port;
  o.io_threads = std::max(1, ctx.options.io_threads);
  o.max_connections = ctx.options.max_connections;
  o.max_header_bytes = ctx.options.max_header_bytes;
  o.max_body_bytes = ctx.options.max_body_bytes;
  o.keep_alive_timeout = millis(ctx.options.keep_alive_seconds);
  o.head_timeout = millis(ctx.options.header_timeout_seconds);
  o.read_timeout = millis(ctx.options.read_timeout_seconds);
  o.listen_backlog = kListenBacklog;
  o.error_response = [&ctx](int status, const std::string& path) {
    ctx.metrics.count_request(path.empty() ? "other" : route_label(path), status);
    switch (status) {
      case 413: return error_response(payload_too_large(ctx.options.max_body_bytes));
      case 431:
        return error_response(ApiError{431, "invalid_request_error", "request_header_fields_too_large", "",
                                       strprintf("the request line and headers exceed %zu bytes", ctx.options.max_header_bytes)});
      case 503:
        if (ctx.draining) return error_response(unavailable("the server is shutting down", "shutting_down"));
        return error_response(unavailable(strprintf("too many open connections (%zu, --max-connections); retry shortly",
                                                    ctx.options.max_connections), "too_many_connections"));
      default: return error_response(invalid_request("malformed HTTP request", "", "invalid_http"));
    }
  };
  o.handler = [this](http::Request req, std::shared_ptr<http::ResponseWriter> writer) { route(std::move(req), std::move(writer)); };
  http_ = std::make_unique<http::Server>(std::move(o));
  FATHOM_RETURN_IF_ERROR(http_->start());
  port_ = http_->port();
  ctx.tasks = std::make_unique<TaskQueue>(ctx.options.http_threads > 0 ? ctx.options.http_threads : 2);
  EngineFactory factory = ctx.options.engine_factory;
  if (!factory) factory = [options = ctx.options.engine] { return Engine::create(options); };
  std::string prefix_cache_file;
  if (!ctx.options.kv_persist_dir.empty()) {
    const std::string stem = ctx.options.engine.model_path.empty() ? "model" : model_name_from_path(ctx.options.engine.model_path);
    prefix_cache_file = (std::filesystem::path(ctx.options.kv_persist_dir) / (stem + ".prefix-cache")).string();
  }
  ctx.worker->start(std::move(factory), std::move(prefix_cache_file));
  return Status::ok();
}

template <typename F>
bool Server::wait_for(F done, std::chrono::steady_clock::time_point until) {
  for (;;) {
    if (done()) return true;
    if (hurry_ || std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Server::shutdown(std::chrono::milliseconds grace) {
  if (stopped_ || !http_) return;
  stopped_ = true;
  ServerContext& ctx = *ctx_;
  using Clock = std::chrono::steady_clock;
  ctx.draining = true;
  http_->stop_accepting();
  http_->drain();  // idle and half-sent connections close now; the others after their answer
  if (puller_) puller_->stop();  // a pull can take hours: cancelled at once, its client told why
  if (!wait_for([&] { return ctx.worker->in_flight() == 0; }, Clock::now() + grace)) {
    ctx.worker->cancel_all();
    // Cancelled requests end at the engine's next step; their clients get the shutting_down
    // error. A step is bounded by --step-budget tokens, so this wait is short.
    hurry_ = false;
    wait_for([&] { return ctx.worker->in_flight() == 0; }, Clock::now() + std::chrono::milliseconds(700));
  }
  // The last bytes of the answers reach their sockets.
  wait_for([&] { return http_->busy_connections() == 0; }, Clock::now() + std::chrono::milliseconds(300));
  http_->stop();
  if (ctx.tasks) ctx.tasks->stop();
  ctx.worker->stop();  // saves the prefix cache with --kv-persist
}
}  // namespace fathom::server
