// HTTP glue: routes, authentication, error bodies for what httplib rejects itself, request
// counting, and the listener/engine lifecycle.
#include "server/server.h"

#include <sys/socket.h>

#include <csignal>
#include <ctime>
#include <filesystem>
#include <random>

#include "server/openai_response.h"
#include "server/server_context.h"

namespace fathom::server {

namespace {

using nlohmann::json;

// The route label of /metrics: fixed routes by name, anything else as "other" so that
// scanners probing random paths cannot grow the label set.
std::string route_label(const std::string& path) {
  for (const char* route : {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"})
    if (path == route) return route;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

constexpr int kListenBacklog = 1024;  // connections the kernel queues before accept()

std::string model_name_from_path(const std::string& path) { return std::filesystem::path(path).stem().string(); }

}  // namespace

// httplib's stop() marks the listening socket invalid, and its chunked writer ends every
// response in progress as soon as it sees that, which would cut the streams a graceful
// shutdown must let finish. Shutting the socket down instead makes accept() fail, so the
// listen loop closes it and waits for its workers while streams carry on.
//
// httplib 0.11 also listens with a backlog of 5: a burst of clients connecting at once then
// overflows the accept queue and some connections are reset (seen with 64 concurrent
// streams). Calling listen() again on the bound socket raises the backlog.
class Listener : public httplib::Server {
 public:
  void close_listener() { ::shutdown(svr_sock_, SHUT_RDWR); }
  bool raise_backlog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }
};

std::string ServerContext::new_response_id(const char* prefix) {
  return strprintf("%s%016llx", prefix, static_cast<unsigned long long>(id_salt ^ (next_id.fetch_add(1) * 0x9E3779B97F4A7C15ull)));
}

uint64_t ServerContext::new_seed() { return id_salt + next_id.fetch_add(1); }

void ServerContext::write_audit(const Exchange& exchange) {
  if (audit) audit->write(exchange.record);
}

void respond_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void respond_error(httplib::Response& res, const ApiError& error) {
  if (error.http_status == 429) res.set_header("Retry-After", "1");
  respond_json(res, error.http_status, error.to_json());
}

Expected<std::unique_ptr<Server>> Server::create(ServerOptions options) {
  if (options.engine.model_path.empty() && !options.engine_factory)
    return error(ErrorCode::kInvalidArgument, "no model given; pass -m FILE.gguf");
  if (options.max_queue < 0) return error(ErrorCode::kInvalidArgument, "--max-queue must not be negative");
  if (options.engine.n_seq_max <= 0) return error(ErrorCode::kInvalidArgument, "--parallel must be at least 1");
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

Server::Server(std::unique_ptr<ServerContext> ctx) : ctx_(std::move(ctx)) {}

Server::~Server() { shutdown(std::chrono::milliseconds(0)); }

std::string Server::address() const { return strprintf("http://%s:%d", ctx_->options.host.c_str(), port_); }

Status Server::wait_loaded() { return ctx_->worker->wait_loaded(); }

void Server::install_routes() {
  ServerContext& ctx = *ctx_;
  // Every route counts its response in /metrics before httplib writes it, so a client that has
  // its answer also sees it counted.
  struct CountingRoutes {
    httplib::Server& http;
    ServerContext& ctx;
    httplib::Server::Handler counted(std::string route, httplib::Server::Handler handler) const {
      return [route, handler, &m = ctx.metrics](const httplib::Request& req, httplib::Response& res) {
        handler(req, res);
        m.count_request(route == "*" ? route_label(req.path) : route, res.status);
      };
    }
    void Get(const std::string& pattern, const std::string& route, httplib::Server::Handler h) const { http.Get(pattern, counted(route, std::move(h))); }
    void Post(const std::string& pattern, const std::string& route, httplib::Server::Handler h) const { http.Post(pattern, counted(route, std::move(h))); }
  };
  httplib::Server& raw = *http_;
  const CountingRoutes http{raw, ctx};

  // Starts the audit record of a /v1 request and checks its API key; false after a 401.
  auto begin = [&ctx](const httplib::Request& req, httplib::Response& res, const std::string& route) {
    auto ex = std::make_shared<Exchange>();
    ex->t_arrival = now_seconds();
    ex->record.route = route;
    if (!ctx.keys.enabled()) return ex;
    std::optional<size_t> key = ctx.keys.match(req.get_header_value("Authorization"));
    if (!key) {
      respond_error(res, unauthorized("missing or invalid API key: send the header 'Authorization: Bearer KEY' "
                                      "with a key the server was started with (--api-key / --api-key-file)"));
      ex->record.status = 401;
      ex->record.latency_seconds = now_seconds() - ex->t_arrival;
      ctx.write_audit(*ex);
      return std::shared_ptr<Exchange>();
    }
    ex->record.key_id = ApiKeys::key_id(*key);
    return ex;
  };
  // /v1 routes other than generation: audit them too, they are authenticated calls.
  auto finish = [&ctx](Exchange& ex, const httplib::Response& res) {
    ex.record.status = res.status;
    ex.record.latency_seconds = now_seconds() - ex.t_arrival;
    ctx.write_audit(ex);
  };
  auto model_json = [&ctx] {
    json m = {{"id", ctx.model_name}, {"object", "model"}, {"created", ctx.created}, {"owned_by", "fathom"}};
    if (const Engine* e = ctx.worker->engine()) m["context_length"] = e->n_ctx();
    return m;
  };
  auto loading_error = [&ctx]() -> std::optional<ApiError> {
    if (ctx.worker->engine()) return std::nullopt;
    if (ctx.worker->state() == EngineState::kFailed)
      return unavailable("the model failed to load: " + ctx.worker->load_status().to_string(), "model_load_failed");
    return unavailable("the model is still loading; retry when GET /health answers 200", "model_loading");
  };

  http.Get("/health", "/health", [&ctx](const httplib::Request&, httplib::Response& res) {
    if (ctx.draining) return respond_json(res, 503, R"({"status":"shutting_down"})");
    switch (ctx.worker->state()) {
      case EngineState::kReady: return respond_json(res, 200, R"({"status":"ok"})");
      case EngineState::kLoading: return respond_json(res, 503, R"({"status":"loading"})");
      case EngineState::kFailed:
        return respond_json(res, 503, json_text(json{{"status", "error"}, {"message", ctx.worker->load_status().to_string()}}));
    }
  });
  http.Get("/metrics", "/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", "/v1/models", [=](const httplib::Request& req, httplib::Response& res) {
    auto ex = begin(req, res, "/v1/models");
    if (!ex) return;
    if (auto e = loading_error()) respond_error(res, *e);
    else respond_json(res, 200, json_text(json{{"object", "list"}, {"data", json::array({model_json()})}}));
    finish(*ex, res);
  });
  http.Get("/v1/models/(.+)", "/v1/models/{id}", [=, &ctx](const httplib::Request& req, httplib::Response& res) {
    auto ex = begin(req, res, "/v1/models/{id}");
    if (!ex) return;
    if (auto e = loading_error()) respond_error(res, *e);
    else if (req.matches[1] != ctx.model_name)
      respond_error(res, not_found(strprintf("the model '%s' does not exist; this server serves '%s'",
                                             req.matches[1].str().c_str(), ctx.model_name.c_str()), "model_not_found"));
    else respond_json(res, 200, json_text(model_json()));
    finish(*ex, res);
  });
  http.Post("/v1/chat/completions", "/v1/chat/completions", [=, &ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto ex = begin(req, res, "/v1/chat/completions")) handle_generation(ctx, Endpoint::kChat, req, res, ex);
  });
  http.Post("/v1/completions", "/v1/completions", [=, &ctx](const httplib::Request& req, httplib::Response& res) {
    if (auto ex = begin(req, res, "/v1/completions")) handle_generation(ctx, Endpoint::kCompletions, req, res, ex);
  });

  // Anything else is a 404 in the API's error shape (registered last: httplib tries routes in order).
  auto unknown = [](const httplib::Request& req, httplib::Response& res) {
    respond_error(res, not_found(strprintf("unknown route: %s %s (the server answers POST /v1/chat/completions, POST "
                                           "/v1/completions, GET /v1/models, GET /health, GET /metrics)",
                                           req.method.c_str(), req.path.c_str()), "unknown_route"));
  };
  raw.Get(".*", http.counted("*", unknown));
  raw.Post(".*", http.counted("*", unknown));
  raw.Put(".*", http.counted("*", unknown));
  raw.Patch(".*", http.counted("*", unknown));
  raw.Delete(".*", http.counted("*", unknown));

  // Errors httplib produces before any handler runs (body over the limit, malformed HTTP) get
  // an OpenAI-shaped body too; responses from the handlers already have one.
  const size_t max_body = ctx.options.max_body_bytes;
  raw.set_error_handler(httplib::Server::HandlerWithResponse([max_body, &ctx](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ctx.metrics.count_request(route_label(req.path), res.status);
    if (res.status == 413) respond_error(res, payload_too_large(max_body));
    else if (res.status == 400) respond_error(res, invalid_request("malformed HTTP request", "", "invalid_http"));
    else respond_error(res, ApiError{res.status, "invalid_request_error", "http_error", "", strprintf("HTTP error %d", res.status)});
    return httplib::Server::HandlerResponse::Handled;
  }));
  raw.set_exception_handler([&ctx](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    respond_error(res, internal_error("internal error: " + what));
    ctx.metrics.count_request(route_label(req.path), res.status);
  });
}

Status Server::start() {
  // A client that disconnects mid-stream makes the next write raise SIGPIPE, which would end
  // the process; ignored, the write fails with EPIPE and that request is cancelled instead.
  std::signal(SIGPIPE, SIG_IGN);
  ServerContext& ctx = *ctx_;
  http_ = std::make_unique<Listener>();
  // Each streaming request holds a worker thread for its whole life, so the pool must hold
  // every request the queue admits plus a few for /health and /metrics.
  const int64_t threads = ctx.options.http_threads > 0
                              ? ctx.options.http_threads
                              : std::max<int64_t>(8, ctx.options.engine.n_seq_max + ctx.options.max_queue + 8);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(ctx.options.max_body_bytes);
  http_->set_keep_alive_timeout(ctx.options.keep_alive_seconds);
  install_routes();
  if (ctx.options.port == 0) {
    port_ = http_->bind_to_any_port(ctx.options.host);
    if (port_ < 0) return error(ErrorCode::kIo, strprintf("cannot listen on %s (bad address?)", ctx.options.host.c_str()));
  } else {
    if (!http_->bind_to_port(ctx.options.host, ctx.options.port))
      return error(ErrorCode::kIo, strprintf("cannot listen on %s:%d (address in use or not local?)",
                                             ctx.options.host.c_str(), ctx.options.port));
    port_ = ctx.options.port;
  }
  if (!http_->raise_backlog(kListenBacklog))
    return error(ErrorCode::kIo, strprintf("cannot set the listen backlog on %s:%d", ctx.options.host.c_str(), port_));
  listen_thread_ = std::thread([this] { http_->listen_after_bind(); });
  // stop() is a no-op until the listen loop runs, so wait for it: shutdown must never hang.
  while (!http_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
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

void Server::shutdown(std::chrono::milliseconds grace) {
  if (stopped_ || !http_) return;
  stopped_ = true;
  ServerContext& ctx = *ctx_;
  ctx.draining = true;
  http_->close_listener();  // connections in progress carry on
  if (!ctx.worker->wait_idle(grace)) {
    ctx.worker->cancel_all();
    ctx.worker->wait_idle(std::chrono::seconds(5));
  }
  if (listen_thread_.joinable()) listen_thread_.join();  // returns once the HTTP workers are done
  ctx.worker->stop();
}

}  // namespace fathom::server
