// fathom serve: the OpenAI-compatible HTTP server (src/server) behind command-line options;
// SIGINT/SIGTERM stop it gracefully.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <cstdio>
#include <mutex>
#include <thread>

#include "core/mapped_file.h"
#include "server/server.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/model_store.h"

namespace fathom::tools {

int cmd_serve(const Args& args) {
  ModelOptions model;
  SamplingOptions sampling;
  server::ServerOptions options;
  int parallel = 4;
  int64_t max_body_bytes = static_cast<int64_t>(options.max_body_bytes);
  int64_t max_connections = static_cast<int64_t>(options.max_connections);
  int64_t max_header_bytes = static_cast<int64_t>(options.max_header_bytes);
  int max_tokens = 0;
  double shutdown_timeout = 30.0;
  int64_t step_budget = options.engine.step_token_budget;
  ChatTemplateOptions chat_template;
  bool no_prefix_cache = false;
  int64_t context_shift_keep = -1;
  ArgParser p("fathom serve -m FILE.gguf [--host 127.0.0.1] [--port 8080] [options]",
              "Serves the model over HTTP with the OpenAI API: POST /v1/chat/completions and\n"
              "/v1/completions (streaming with \"stream\": true), GET /v1/models, /health and /metrics\n"
              "(Prometheus). Requests are batched continuously: up to --parallel sequences advance\n"
              "together and up to --max-queue more wait; beyond that requests get 429. The port opens\n"
              "before the model has loaded (/health answers 503 until it is ready). Ctrl-C or SIGTERM\n"
              "stops accepting, lets requests in flight finish (--shutdown-timeout) and exits.\n"
              "Extensions to the OpenAI parameters: \"reasoning_format\": \"none\" keeps <think> text in\n"
              "content (default \"deepseek\": reasoning_content), \"ignore_eos\", top_k, min_p,\n"
              "repetition_penalty, chat_template_kwargs. See src/server/README.md.");
  model.add_to(p);
  p.add_string("--host", "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces)", &options.host);
  p.add_int("--port", "N", "port (default 8080; 0 picks a free one and prints it)", &options.port,
            Range::between(0, 65535));
  p.add_int("-np,--parallel", "N", "sequences decoded together; the KV cache holds N full contexts (default 4)",
            &parallel, Range::between(1, 4096));
  p.add_int("--max-queue", "N", "requests that may wait for a free slot; more get 429 (default 64)",
            &options.max_queue, Range::between(0, 1 << 20));
  p.add_int("--step-budget", "N", "tokens per forward step, decodes plus prefill chunks (default 512)", &step_budget,
            Range::between(1, 1 << 20));
  p.add_flag("--no-prefix-cache", "do not reuse the KV blocks of prompt prefixes seen before", &no_prefix_cache);
  p.add_optional_int("--context-shift", "N",
                     "a generation that reaches the end of the context keeps its first N tokens (default 4), "
                     "drops half of the rest and continues (usage.context_shifts counts it); max_tokens past the "
                     "context then apply. Off by default: it stops with finish_reason \"length\". N at most ctx - 2",
                     &context_shift_keep, 4, Range::between(0, kMaxTokens));
  p.add_string("--kv-persist", "DIR",
               "save the prefix cache to DIR/<model>.prefix-cache at exit and restore it at start-up "
               "(another model's or a damaged file is ignored with a warning)",
               &options.kv_persist_dir);
  p.add_string("--model-alias", "NAME", "model id clients use (default: the file name without .gguf)", &options.model_alias);
  p.add_list("--api-key", "KEY", "require 'Authorization: Bearer KEY' on /v1 routes (repeatable)", &options.api_keys);
  p.add_string("--api-key-file", "FILE", "more API keys, one per line ('#' comments)", &options.api_key_file);
  p.add_list("--cors-origin", "ORIGIN",
             "let web pages from ORIGIN (scheme://host[:port]) call the API from a browser; repeatable; '*' for any "
             "(default: none)", &options.cors_origins);
  p.add_flag("--allow-pull",
             "answer Ollama's POST /api/pull: clients may download models into the model store (FATHOM_MODELS, "
             "else the XDG cache) from $HF_ENDPOINT with $HF_TOKEN, one at a time (default: off, 403)",
             &options.allow_pull);
  p.add_string("--audit-log", "FILE", "append one JSON line per /v1 request (key id, route, tokens, status, latency)",
               &options.audit_log);
  p.add_flag("--audit-log-content", "also write prompts and completions to the audit log", &options.audit_log_content);
  p.add_int("--max-body-bytes", "N", "largest request body; larger ones get 413 (default 8388608)", &max_body_bytes,
            Range::between(1, 1LL << 34));
  p.add_float("--shutdown-timeout", "SEC", "on SIGTERM, wait this long for requests in flight (default 30)",
              &shutdown_timeout, Range::between(0, 86400));
  p.add_int("--http-threads", "N", "threads that parse, template and tokenize requests (default 2)",
            &options.http_threads, Range::between(0, 256));
  p.add_int("--max-connections", "N", "open connections; more get 503 (default 4096, capped by the fd limit)",
            &max_connections, Range::between(1, 1 << 20));
  p.add_int("--max-header-bytes", "N", "largest request line + headers; larger get 431 (default 16384)",
            &max_header_bytes, Range::between(256, 1 << 24));
  p.add_float("--keep-alive-timeout", "SEC", "close kept-alive connections idle this long (default 5)",
              &options.keep_alive_seconds, Range{0, 86400, true});
  p.add_float("--header-timeout", "SEC", "a request's headers must arrive within this (default 10)",
              &options.header_timeout_seconds, Range{0, 86400, true});
  p.add_float("--read-timeout", "SEC", "a request's body must arrive within this (default 60)",
              &options.read_timeout_seconds, Range{0, 86400, true});
  chat_template.add_to(p);
  p.add_int("-n,--n-predict", "N", "max_tokens for requests that do not set it (default: to the end of the context)",
            &max_tokens, Range::between(0, kMaxTokens));
  sampling.add_to(p);
  if (auto rc = p.parse(args)) return *rc;
  if (model.model.empty()) return p.fail("no model given; pass -m FILE.gguf");
  // Each connection is a file descriptor: take the hard limit, and keep the connection cap
  // below it (with room for the model file, logs and the listener) so that accept() never
  // fails for lack of descriptors.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    if (files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
      getrlimit(RLIMIT_NOFILE, &files);
    }
    const int64_t usable = static_cast<int64_t>(files.rlim_cur) - 64;
    if (files.rlim_cur != RLIM_INFINITY && usable < max_connections) {
      std::fprintf(stderr, "fathom serve: note: --max-connections lowered from %lld to %lld by the open-file limit (ulimit -n %llu)\n",
                   static_cast<long long>(max_connections), static_cast<long long>(std::max<int64_t>(1, usable)),
                   static_cast<unsigned long long>(files.rlim_cur));
      max_connections = std::max<int64_t>(1, usable);
    }
  }
  options.max_connections = static_cast<size_t>(max_connections);
  options.max_header_bytes = static_cast<size_t>(max_header_bytes);
  if (auto rc = chat_template.load(p, &options.chat_template)) return *rc;
  if (options.allow_pull) {
    Expected<hub::ModelStore> store = open_model_store();
    if (!store) {
      std::fprintf(stderr, "fathom serve: --allow-pull: %s\n", store.status().message().c_str());
      return 1;
    }
    options.models_dir = store->root();
    const char* endpoint = std::getenv("HF_ENDPOINT");
    const char* token = std::getenv("HF_TOKEN");
    if (endpoint && *endpoint) options.pull_endpoint = endpoint;
    options.pull_token = token ? token : "";
  }
  Expected<EngineOptions> engine_options = model.to_engine_options();
  if (!engine_options) {
    std::fprintf(stderr, "fathom serve: %s\n", engine_options.status().to_string().c_str());
    return 2;
  }
  options.engine = std::move(engine_options).value();
  options.engine.n_seq_max = parallel;
  options.engine.step_token_budget = step_budget;
  options.engine.prefix_cache = !no_prefix_cache;
  options.engine.context_shift_keep = context_shift_keep;
  options.max_body_bytes = static_cast<size_t>(max_body_bytes);
  options.defaults.sampling = sampling.to_params();
  options.defaults.max_tokens = max_tokens;
  // The engine is built later, on the server's engine thread: check its memory before the port opens.
  MemoryDemand demand = engine_memory_demand(options.engine);
  demand.count_weight_copies = true;
  if (!memory_fits("serve", options.engine.model_path, demand, {"-c", "-np", "", "lower -c/--ctx-size or -np/--parallel"})) return 1;

  // Signals are taken synchronously by this thread (sigtimedwait below); every thread started
  // from here on inherits the mask, so none of them is interrupted by SIGINT/SIGTERM.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto created = server::Server::create(std::move(options));
  if (!created) {
    std::fprintf(stderr, "fathom serve: %s\n", created.status().to_string().c_str());
    return 1;
  }
  server::Server& srv = **created;
  if (Status st = srv.start(); !st.is_ok()) {
    std::fprintf(stderr, "fathom serve: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("fathom serve: listening on %s\n", srv.address().c_str());
  std::fflush(stdout);
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(shutdown_timeout * 1000.0));
  // Loading runs on the engine thread; a signal during loading still stops the server.
  std::thread loader_watch;
  Status load_status;
  bool loaded = false;
  std::mutex load_mutex;
  loader_watch = std::thread([&] {
    Status st = srv.wait_loaded();
    std::lock_guard<std::mutex> lock(load_mutex);
    load_status = st;
    loaded = true;
  });
  bool reported = false;
  int exit_code = 0;
  for (;;) {
    timespec poll = {0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &poll);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "fathom serve: %s received; finishing requests in flight (up to %.0f s; again to stop now)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_timeout);
      break;
    }
    std::lock_guard<std::mutex> lock(load_mutex);
    if (loaded && !reported) {
      reported = true;
      if (!load_status.is_ok()) {
        std::fprintf(stderr, "fathom serve: %s\n", load_status.to_string().c_str());
        exit_code = 1;
        break;
      }
      std::printf("fathom serve: model loaded; ready\n");
      std::fflush(stdout);
    }
  }
  // The drain runs on its own thread so that a second signal can cut it short: requests in
  // flight are cancelled at once, and the prefix cache is still saved (--kv-persist).
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    srv.shutdown(grace);
    stopped = true;
  });
  while (!stopped) {
    timespec poll = {0, 50 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &poll);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "fathom serve: second %s; cancelling the requests in flight\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      srv.hurry();
    }
  }
  stopper.join();
  loader_watch.join();
  return exit_code;
}

}  // namespace fathom::tools
