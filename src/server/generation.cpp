// The two generation routes: turn a validated OpenAI request into engine requests (one per
// choice), then relay the engine's events as one JSON body or as Server-Sent Events.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>

#include "runtime/grammar/grammar.h"
#include "server/openai_response.h"
#include "server/server_context.h"
#include "tokenizer/prompt.h"

namespace fathom::server {

namespace {

using nlohmann::json;

// A streamed request writes this SSE comment after 5 s without events (the HTTP layer's
// heartbeat), so proxies and clients do not time out a request that waits for a slot.
constexpr const char* kSseHeartbeat = ": waiting\n\n";

// A token covers at most the bytes of its longest vocabulary text, so a prompt of more bytes
// than n_ctx such tokens cannot fit; normalization may shrink text a little, hence the margin.
// Checked before tokenizing: an oversize prompt costs no tokenizer memory.
constexpr int64_t kPromptBytesMargin = 2;

// One prompt, ready for the engine (each of its n choices generates from it).
struct PreparedPrompt {
  std::vector<int32_t> tokens;       // prompt token ids
  std::string text;                  // the prompt as text (audit log)
  bool starts_in_reasoning = false;  // chat prompt ends inside <think>
  ToolCallFormat tool_format = ToolCallFormat::kNone;  // calls to parse (tools offered)
  std::string forced_call_prefix;    // tool_choice required/named: the call opening appended to the prompt
  std::string forced_call_name;      // the function it names ("" when the model picks)
  std::shared_ptr<const Grammar> forced_call_grammar;  // ... and what may follow it: the call, schema-valid
};

// Tools are offered unless tool_choice is "none", which hides them from the model.
bool tools_offered(const OpenAiRequest& request) {
  return !request.tools.empty() && request.tool_choice != ToolChoiceMode::kNone;
}

// The grammar of a forced call: after the prompt's call opening, the arguments of the named
// function (or, the model choosing, any offered function's name and then its arguments) under
// its `parameters` schema, then the markers that close the call. A schema the grammar engine
// cannot enforce is a 400 naming it.
std::variant<std::shared_ptr<const Grammar>, ApiError> forced_call_grammar(const OpenAiRequest& request,
                                                                           ToolCallFormat format, const std::string& name) {
  std::vector<FramedArguments> alternatives;
  bool dsml = false;
  for (size_t i = 0; i < request.tools.size(); ++i) {
    const nlohmann::ordered_json& function = request.tools[i]["function"];
    const std::string tool_name = function["name"].get<std::string>();
    if (!name.empty() && tool_name != name) continue;
    const ForcedCallFrame frame = forced_call_frame(format, tool_name, /*name_in_prefix=*/!name.empty());
    dsml = frame.dsml_arguments;
    alternatives.push_back({strprintf("tools[%zu].function.parameters", i), frame.before_arguments,
                            function.value("parameters", nlohmann::ordered_json()), frame.after_arguments});
  }
  auto g = tool_call_grammar(alternatives, dsml ? ArgumentSyntax::kDsml : ArgumentSyntax::kJson);
  if (!g) return invalid_request("the arguments of a forced tool call are generated under the function's schema, and "
                                 "this one cannot be enforced: " + g.status().message(), "tools");
  return *g;
}

std::optional<ApiError> check_prompt_bytes(int64_t n_ctx, size_t max_token_bytes, size_t n_bytes, const char* param) {
  const int64_t limit = kPromptBytesMargin * n_ctx * static_cast<int64_t>(std::max<size_t>(1, max_token_bytes));
  if (static_cast<int64_t>(n_bytes) <= limit) return std::nullopt;
  return context_length_exceeded(strprintf("this model's maximum context length is %lld tokens, but the prompt has %zu "
                                           "bytes, more than that many tokens can hold; shorten the prompt (or start the "
                                           "server with a larger -c)", static_cast<long long>(n_ctx), n_bytes), param);
}

// The request's context window: the server's, or less when the request asks (Ollama's num_ctx).
int64_t request_context(const Engine& engine, const OpenAiRequest& request) {
  return request.context_tokens > 0 ? std::min(request.context_tokens, engine.n_ctx()) : engine.n_ctx();
}

std::variant<std::vector<PreparedPrompt>, ApiError> prepare_prompts(const Engine& engine, const OpenAiRequest& request,
                                                                    const std::string& template_override,
                                                                    size_t max_token_bytes) {
  const Tokenizer& tok = engine.tokenizer();
  const int64_t n_ctx = request_context(engine, request);
  std::vector<PreparedPrompt> out;
  if (request.endpoint == Endpoint::kChat) {
    const ChatFormatter formatter(tok, template_override);
    PreparedPrompt p;
    if (tools_offered(request)) {
      p.tool_format = detect_tool_call_format(formatter.source());
      if (p.tool_format == ToolCallFormat::kNone)
        return invalid_request("this model's chat template renders no tool calls, so the server cannot read them back "
                               "(supported: the DeepSeek R1/V3, V3.1, V3.2 and V4 formats and Qwen2.5's); remove 'tools' "
                               "or set tool_choice to \"none\"", "tools");
    }
    // The request's chat_template_kwargs are variables beside messages and tools.
    Expected<std::string> rendered =
        formatter.render(chat_messages_json(request.messages, template_takes_object_arguments(formatter.source())),
                         tools_offered(request) ? nlohmann::ordered_json(request.tools) : nlohmann::ordered_json(),
                         request.chat_template_kwargs);
    // A template that rejects the conversation (raise_exception: roles must alternate, ...) is the client's problem.
    if (!rendered) return invalid_request("the model's chat template rejected the messages: " + rendered.status().message(), "messages");
    if (request.tool_choice == ToolChoiceMode::kRequired || request.tool_choice == ToolChoiceMode::kNamed) {
      // The assistant turn is opened with the call markers (and the name), so the model's
      // continuation is the call; the grammar then makes it one call of an offered function
      // whose arguments follow its schema.
      p.forced_call_name = request.tool_choice == ToolChoiceMode::kNamed ? request.tool_choice_name
                           : request.tools.size() == 1              ? request.tools[0]["function"]["name"].get<std::string>()
                                                                    : "";
      p.forced_call_prefix = forced_call_prefix(p.tool_format, *rendered, p.forced_call_name);
      *rendered += p.forced_call_prefix;
      auto grammar = forced_call_grammar(request, p.tool_format, p.forced_call_name);
      if (auto* e = std::get_if<ApiError>(&grammar)) return *e;
      p.forced_call_grammar = std::get<std::shared_ptr<const Grammar>>(grammar);
    }
    // Ollama's think: false on a template that always opens a reasoning block: the block is
    // closed empty, so the model answers at once (what Ollama's own DeepSeek-R1 template does).
    if (request.close_reasoning && prompt_ends_in_reasoning(*rendered)) *rendered += "</think>\n\n";
    if (auto e = check_prompt_bytes(n_ctx, max_token_bytes, rendered->size(), "messages")) return *e;
    p.tokens = tokenize_prompt(tok, *rendered);
    p.starts_in_reasoning = prompt_ends_in_reasoning(*rendered);
    p.text = std::move(*rendered);
    out.push_back(std::move(p));
  } else {
    for (const PromptInput& in : request.prompts) {
      PreparedPrompt p;
      if (in.is_tokens) {
        for (int32_t t : in.tokens)
          if (t >= tok.n_vocab()) return invalid_request(strprintf("prompt token id %d is past the vocabulary (%d tokens)", t, tok.n_vocab()), "prompt");
        p.tokens = in.tokens;
        p.text = tok.decode(in.tokens, /*render_special=*/true);
      } else {
        if (auto e = check_prompt_bytes(n_ctx, max_token_bytes, in.text.size(), "prompt")) return *e;
        p.tokens = tokenize_prompt(tok, in.text);
        p.text = in.text;
      }
      out.push_back(std::move(p));
    }
  }
  for (const auto& [token, bias] : request.logit_bias)
    if (token >= tok.n_vocab())
      return invalid_request(strprintf("logit_bias names token id %d, past the vocabulary (%d tokens)", token, tok.n_vocab()), "logit_bias");
  for (const PreparedPrompt& p : out) {
    if (p.tokens.empty()) return invalid_request("the prompt is empty", request.endpoint == Endpoint::kChat ? "messages" : "prompt");
    if (static_cast<int64_t>(p.tokens.size()) >= n_ctx)
      return context_length_exceeded(strprintf("this model's maximum context length is %lld tokens, but the prompt has "
                                               "%zu tokens; shorten the prompt (or start the server with a larger -c)",
                                               static_cast<long long>(n_ctx), p.tokens.size()),
                                     request.endpoint == Endpoint::kChat ? "messages" : "prompt");
  }
  return out;
}

// The OpenAI shapes: chat.completion(.chunk) / text_completion bodies, SSE streams.
class OpenAiWire : public ResponseWire {
 public:
  http::Response stream_head(const ResponseMeta& meta, size_t n_choices) const override {
    http::Response head;
    head.content_type = "text/event-stream";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};  // proxies must not buffer
    if (meta.endpoint == Endpoint::kChat)
      for (size_t i = 0; i < n_choices; ++i) head.body += sse_event(role_chunk(meta, i));
    return head;
  }
  std::string heartbeat() const override { return kSseHeartbeat; }
  std::string stream_event(const ResponseMeta& meta, size_t index, const ChoiceBuilder& choice,
                           const ChoiceBuilder::Delta& delta) const override {
    std::string out;
    if (!delta.empty())
      for (const json& chunk : delta_chunks(meta, index, delta)) out += sse_event(chunk);
    if (choice.finished() && (choice.finish_reason() == FinishReason::kStop || choice.finish_reason() == FinishReason::kLength))
      out += sse_event(finish_chunk(meta, index, choice.finish_reason_text()));
    return out;
  }
  std::string stream_end(const ResponseMeta& meta, const std::vector<ChoiceBuilder>&, const Usage& usage,
                         const std::optional<ApiError>& failure) const override {
    std::string out;
    // The OpenAI SDKs raise a data line holding "error" as an APIError mid-stream.
    if (failure) out += sse_event(json::parse(failure->to_json()));
    else if (meta.include_usage) out += sse_event(usage_chunk(meta, usage));
    return out + kSseDone;
  }
  http::Response body(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage& usage) const override {
    return json_response(200, json_text(completion_body(meta, choices, usage)));
  }
  http::Response error(const ApiError& e) const override { return error_response(e); }
};

// Everything one request's response needs. After submit, its state is touched only on the
// connection's strand (start, drain, the disconnect callback), so it needs no lock; the
// engine thread only pushes events to the channel and asks for a drain.
struct Generation : std::enable_shared_from_this<Generation> {
  ServerContext& ctx;
  ResponseMeta meta;
  std::unique_ptr<ResponseWire> wire;      // the API's shapes
  std::vector<ChoiceBuilder> choices;      // n per prompt
  size_t n_per_prompt = 1;                 // n: choices of each prompt
  std::vector<RequestId> ids;              // engine request ids, per choice
  std::shared_ptr<EventChannel> channel;   // engine thread -> this request
  std::shared_ptr<Exchange> exchange;      // audit bookkeeping
  std::shared_ptr<http::ResponseWriter> writer;
  bool stream = false;                     // Server-Sent Events, else one JSON body
  std::atomic<bool> drain_posted{false};   // a drain is queued on the strand
  size_t n_finished = 0;                   // choices whose final event arrived
  Usage usage;                             // summed over finished choices
  bool started = false;                    // start() ran: events may be relayed
  bool done = false;                       // the response ended
  bool client_gone = false;                // the client left before the end
  std::optional<ApiError> failure;         // a choice ended in error or was cancelled by shutdown

  explicit Generation(ServerContext& c) : ctx(c) {}
  bool all_finished() const { return n_finished == choices.size(); }

  // Engine thread: one drain at a time is queued, however many events arrive meanwhile.
  void notify() {
    if (!drain_posted.exchange(true)) writer->post([self = shared_from_this()] { self->drain(); });
  }

  void start() {
    started = true;
    writer->on_disconnect([self = shared_from_this()] { self->on_client_gone(); });
    if (stream) writer->begin_stream(wire->stream_head(meta, choices.size()), wire->heartbeat());
    drain();
  }

  // The client left: its choices are cancelled, and their final events (with the tokens
  // generated so far) still arrive, so the audit log and counters bill what was made.
  void on_client_gone() {
    client_gone = true;
    for (size_t i = 0; i < choices.size(); ++i)
      if (!choices[i].finished()) ctx.worker->cancel(ids[i]);
  }

  void drain() {
    drain_posted = false;
    if (!started || done) return;
    std::vector<ChoiceEvent> events;
    if (!channel->take(events)) return;
    std::string out;
    for (const ChoiceEvent& e : events) {
      const ChoiceBuilder::Delta d = apply(e);
      if (stream) out += wire->stream_event(meta, e.choice, choices[e.choice], d);
    }
    if (stream && all_finished()) out += wire->stream_end(meta, choices, usage, failure);
    if (!out.empty()) writer->write(std::move(out));
    if (all_finished()) finish();
  }

  // Applies one event; returns the choice's new text.
  ChoiceBuilder::Delta apply(const ChoiceEvent& e) {
    ChoiceBuilder& c = choices[e.choice];
    ChoiceBuilder::Delta d = c.push(e.event);
    if (e.event.finished) {
      ++n_finished;
      // As OpenAI counts it: a prompt once, however many choices it has.
      if (e.choice % n_per_prompt == 0) usage.prompt_tokens += e.event.stats.n_prompt;
      usage.completion_tokens += e.event.stats.n_generated;
      usage.reasoning_tokens += c.reasoning_tokens();
      usage.context_shifts += e.event.stats.n_context_shifts;
      if (e.event.reason == FinishReason::kError) {
        failure = internal_error("generation failed: " + e.event.status.to_string());
        ctx.metrics.record_unfinished(e.event.stats, /*cancelled=*/false, exchange->record.key_id);
      } else if (e.event.reason == FinishReason::kCancelled) {
        if (!client_gone) failure = unavailable("the request was cancelled: the server is shutting down", "shutting_down");
        ctx.metrics.record_unfinished(e.event.stats, /*cancelled=*/true, exchange->record.key_id);
      } else {
        ctx.metrics.record_generation(e.event.stats, exchange->record.key_id);
      }
    }
    return d;
  }

  void finish() {
    done = true;
    int status = 200;
    if (stream) {
      writer->end_stream();
    } else if (client_gone) {
      // Nobody reads it; sent so that /metrics counts the request as the client left it.
      status = 499;
      writer->send(wire->error(ApiError{499, "invalid_request_error", "client_closed_request", "",
                                        "the client closed the connection before the response"}));
    } else if (failure) {
      status = failure->http_status;
      writer->send(wire->error(*failure));
    } else {
      writer->send(wire->body(meta, choices, usage));
    }
    AuditRecord& r = exchange->record;
    r.request_id = meta.id;
    r.prompt_tokens = usage.prompt_tokens;
    r.completion_tokens = usage.completion_tokens;
    if (ctx.audit && ctx.audit->include_content())
      for (const ChoiceBuilder& c : choices) r.completion += c.reasoning() + c.content();
    ctx.write_audit(*exchange, status);
  }
};

// The longest token text of the vocabulary, computed once (check_prompt_bytes).
size_t max_token_bytes(ServerContext& ctx, const Tokenizer& tok) {
  std::call_once(ctx.token_bytes_once, [&] {
    size_t longest = 1;
    for (int32_t id = 0; id < tok.n_vocab(); ++id) longest = std::max(longest, tok.token_text(id).size());
    ctx.max_prompt_token_bytes = longest;
  });
  return ctx.max_prompt_token_bytes;
}

}  // namespace

std::optional<nlohmann::json> generation_body(ServerContext& ctx, const http::Request& req,
                                              const std::function<void(const ApiError&)>& fail) {
  if (ctx.draining) {
    fail(unavailable("the server is shutting down", "shutting_down"));
    return std::nullopt;
  }
  if (!ctx.worker->engine()) {
    fail(unavailable("the model is still loading; retry when GET /health answers 200", "model_loading"));
    return std::nullopt;
  }
  auto body = parse_json_body(req.body);
  if (auto* e = std::get_if<ApiError>(&body)) {
    fail(*e);
    return std::nullopt;
  }
  return std::move(std::get<json>(body));
}

void handle_generation(ServerContext& ctx, Endpoint endpoint, const http::Request& req,
                       std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange) {
  Reservation reservation(*ctx.worker);
  auto fail = [&](const ApiError& e) {
    writer->send(error_response(e));
    ctx.write_audit(*exchange, e.http_status);
  };
  std::optional<json> body = generation_body(ctx, req, fail);
  if (!body) return;
  // Read again in the client's key order (templates print the tools as sent; a json_schema's
  // properties are generated in its order); the body passed parse_json_body's limits.
  auto parsed = parse_openai_request(endpoint, nlohmann::ordered_json::parse(req.body), ctx.options.defaults);
  if (auto* e = std::get_if<ApiError>(&parsed)) return fail(*e);
  OpenAiRequest& request = std::get<OpenAiRequest>(parsed);
  if (!request.model.empty() && request.model != ctx.model_name)
    return fail(not_found(strprintf("the model '%s' does not exist; this server serves '%s' (see GET /v1/models)",
                                    request.model.c_str(), ctx.model_name.c_str()), "model_not_found"));
  ResponseMeta meta;
  meta.endpoint = endpoint;
  meta.id = ctx.new_response_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-");
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = ctx.model_name;
  meta.include_usage = request.include_usage;
  run_generation(ctx, request, std::make_unique<OpenAiWire>(), std::move(meta), std::move(writer), std::move(exchange), reservation);
}

void run_generation(ServerContext& ctx, OpenAiRequest& request, std::unique_ptr<ResponseWire> wire, ResponseMeta meta,
                    std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange,
                    Reservation& reservation) {
  auto fail = [&](const ApiError& e) {
    writer->send(wire->error(e));
    ctx.write_audit(*exchange, e.http_status);
  };
  const Engine* engine = ctx.worker->engine();
  const Endpoint endpoint = request.endpoint;
  auto prompts = prepare_prompts(*engine, request, ctx.options.chat_template, max_token_bytes(ctx, engine->tokenizer()));
  if (auto* e = std::get_if<ApiError>(&prompts)) return fail(*e);
  std::vector<PreparedPrompt>& prepared = std::get<std::vector<PreparedPrompt>>(prompts);

  auto g = std::make_shared<Generation>(ctx);
  g->meta = std::move(meta);
  g->wire = std::move(wire);
  g->channel = std::make_shared<EventChannel>();
  g->exchange = exchange;
  g->writer = writer;
  g->stream = request.stream;
  g->n_per_prompt = static_cast<size_t>(request.n);
  if (ctx.audit && ctx.audit->include_content())
    for (const PreparedPrompt& p : prepared) exchange->record.prompt += p.text;

  std::vector<GenerationRequest> requests;
  const uint64_t seed = request.seed_given ? request.sampling.seed : ctx.new_seed();
  // Choice i is prompt i / n; each gets its own seed, so n choices of one prompt differ.
  const size_t n_choices = prepared.size() * static_cast<size_t>(request.n);
  for (size_t i = 0; i < n_choices; ++i) {
    const PreparedPrompt& p = prepared[i / static_cast<size_t>(request.n)];
    ChoiceBuilder::Options co;
    co.endpoint = endpoint;
    co.split_reasoning = endpoint == Endpoint::kChat && !request.reasoning_inline;
    co.starts_in_reasoning = p.starts_in_reasoning;
    co.logprobs = request.logprobs;
    co.top_logprobs = request.top_logprobs;
    // One more than shown, so that the sampled token is usually among them even when the
    // engine reports only the top n (see ChoiceBuilder::split_logprobs).
    co.engine_logprobs = request.logprobs ? request.top_logprobs + 1 : 0;
    co.tool_format = p.tool_format;
    co.forced_call_prefix = p.forced_call_prefix;
    co.forced_call_name = p.forced_call_name;
    for (const auto& tool : request.tools) co.tool_names.push_back(tool["function"]["name"].get<std::string>());
    if (!request.parallel_tool_calls) co.max_tool_calls = 1;
    co.call_id_seed = ctx.new_seed() * 0x2545F4914F6CDD1Dull ^ ctx.id_salt;
    g->choices.emplace_back(engine->tokenizer(), co);

    GenerationRequest r;
    r.prompt = p.tokens;
    // Unset max_tokens runs to the end of the context, where the engine stops with "length";
    // a smaller request window (num_ctx) bounds prompt + generation the same way. Under
    // --context-shift a max_tokens past the server's context is kept: the engine shifts it.
    const int64_t window = request_context(*engine, request);
    const int64_t room = window - static_cast<int64_t>(p.tokens.size());
    const bool shifts = ctx.options.engine.context_shift_keep >= 0 && window == engine->n_ctx();
    r.max_tokens = static_cast<int32_t>(request.max_tokens <= 0 ? room
                                        : shifts                ? request.max_tokens
                                                                : std::min<int64_t>(request.max_tokens, room));
    r.sampling = request.sampling;
    if (p.forced_call_grammar) r.sampling.grammar = p.forced_call_grammar;
    r.sampling.seed = seed + i;
    r.stop = request.stop;
    r.ignore_eos = request.ignore_eos;
    r.logprobs = co.engine_logprobs;
    r.logit_bias = request.logit_bias;
    r.on_event = [g, i](const TokenEvent& ev) {
      g->channel->push({i, ev});
      g->notify();
    };
    requests.push_back(std::move(r));
  }
  reservation.held = false;  // submit gives the place back, whatever the outcome
  Expected<std::vector<RequestId>> ids = ctx.worker->submit(std::move(requests), /*reserved=*/true);
  if (!ids) {
    if (ids.status().code() == ErrorCode::kUnavailable && ctx.worker->engine()) return fail(queue_full(ctx.options.max_queue));
    return fail(from_status(ids.status()));
  }
  g->ids = std::move(ids).value();
  writer->post([g] { g->start(); });
}

}  // namespace fathom::server
