#include "server/ollama_api.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <utility>

#include "gguf/gguf.h"
#include "server/openai_response.h"
#include "server/server_context.h"

#ifndef FATHOM_VERSION
#error "FATHOM_VERSION is defined by CMakeLists.txt"
#endif

namespace fathom::server {

namespace {

using nlohmann::json;

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Sampling options passed to the OpenAI parser under the same name (it checks their ranges).
constexpr const char* kSamplingOptions[] = {"temperature", "top_p", "top_k", "min_p", "seed", "stop",
                                            "repeat_penalty", "presence_penalty", "frequency_penalty"};
// Options whose neutral value is what fathom does anyway (accepted only at that value).
const std::map<std::string, double> kNeutralOptions = {{"typical_p", 1.0}, {"tfs_z", 1.0}, {"mirostat", 0.0}};

// Seconds of an Ollama keep_alive: a number of seconds or a Go duration ("5m", "1h30m", "-1").
std::optional<double> keep_alive_seconds(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_string()) return std::nullopt;
  const std::string s = v.get<std::string>();
  if (s.empty() || s.size() > 32) return std::nullopt;
  double total = 0.0;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  while (i < s.size()) {
    size_t end = i;
    while (end < s.size() && (std::isdigit(static_cast<unsigned char>(s[end])) || s[end] == '.')) ++end;
    if (end == i) return std::nullopt;
    const double value = std::strtod(s.substr(i, end - i).c_str(), nullptr);
    size_t unit_end = end;
    while (unit_end < s.size() && std::isalpha(static_cast<unsigned char>(s[unit_end]))) ++unit_end;
    const std::string unit = s.substr(end, unit_end - end);
    const double scale = unit == "ns" ? 1e-9 : unit == "us" ? 1e-6 : unit == "ms" ? 1e-3 : unit == "s" || unit.empty() ? 1.0
                         : unit == "m" ? 60.0 : unit == "h" ? 3600.0 : -1.0;
    if (scale < 0 || (unit.empty() && unit_end != s.size())) return std::nullopt;
    total += value * scale;
    i = unit_end;
  }
  return s[0] == '-' ? -total : total;
}

// keep_alive: how long the model stays loaded after the request. fathom serve keeps its one
// model for the server's life, which honours every positive or negative (forever) value; 0
// asks for an unload, which it does not do.
std::optional<ApiError> check_keep_alive(const json& body) {
  const auto it = body.find("keep_alive");
  if (it == body.end() || it->is_null()) return std::nullopt;
  const std::optional<double> seconds = keep_alive_seconds(*it);
  if (!seconds || !std::isfinite(*seconds) || std::abs(*seconds) > kMaxKeepAliveSeconds)
    return invalid_request("'keep_alive' must be a number of seconds or a duration such as \"5m\" or \"-1\" (got " +
                               shown(*it) + ")", "keep_alive");
  if (*seconds == 0.0)
    return invalid_request("'keep_alive' 0 asks to unload the model, which fathom serve does not do: it keeps its one "
                           "model loaded for as long as it runs", "keep_alive");
  return std::nullopt;
}

// options: Ollama's sampling and runtime settings, into the OpenAI body (`out`) or the request.
std::optional<ApiError> read_options(const json& options, json& out, OllamaRequest& r, int64_t n_ctx) {
  if (!options.is_object()) return invalid_request("'options' must be an object", "options");
  for (const auto& [key, value] : options.items()) {
    const std::string param = "options." + key;
    if (value.is_null()) continue;
    if (std::find(std::begin(kSamplingOptions), std::end(kSamplingOptions), key) != std::end(kSamplingOptions)) {
      out[key] = value;
    } else if (key == "num_predict") {
      // -1: no limit, -2: until the context is full; both run to the end of the context.
      if (!value.is_number_integer() || value.get<int64_t>() < -2 || value.get<int64_t>() == 0 ||
          value.get<int64_t>() > std::numeric_limits<int32_t>::max())
        return invalid_request("'options.num_predict' must be a positive number of tokens, or -1 / -2 for no limit (got " +
                                   shown(value) + ")", param);
      if (value.get<int64_t>() > 0) out["max_tokens"] = value;
    } else if (key == "num_ctx") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1)
        return invalid_request("'options.num_ctx' must be a positive number of tokens (got " + shown(value) + ")", param);
      if (value.get<int64_t>() > n_ctx)
        return invalid_request(strprintf("'options.num_ctx' %lld is larger than the server's context of %lld tokens, which "
                                         "is fixed when fathom serve starts (-c); send at most %lld",
                                         static_cast<long long>(value.get<int64_t>()), static_cast<long long>(n_ctx),
                                         static_cast<long long>(n_ctx)), param);
      r.request.context_tokens = value.get<int64_t>();
    } else if (key == "repeat_last_n") {
      if (!value.is_number_integer() || value.get<int64_t>() < -1 || value.get<int64_t>() > n_ctx)
        return invalid_request(strprintf("'options.repeat_last_n' must be from -1 (the whole context) to %lld (got %s)",
                                         static_cast<long long>(n_ctx), shown(value).c_str()), param);
      r.repeat_last_n = value.get<int64_t>();
    } else if (auto neutral = kNeutralOptions.find(key); neutral != kNeutralOptions.end()) {
      if (!value.is_number() || value.get<double>() != neutral->second)
        return invalid_request(strprintf("'%s' is not supported by fathom serve; only its neutral value %g is accepted",
                                         param.c_str(), neutral->second), param);
    } else {
      return invalid_request("'" + param + "' is not supported by fathom serve; the supported options are temperature, "
                             "top_p, top_k, min_p, seed, num_predict, stop, repeat_penalty, repeat_last_n, "
                             "presence_penalty, frequency_penalty and num_ctx (model-loading settings such as num_gpu "
                             "or num_thread are fixed when the server starts)", param);
    }
  }
  return std::nullopt;
}

// messages: Ollama's {role, content, thinking} turns, into OpenAI's (thinking as reasoning_content).
std::optional<ApiError> read_messages(const json& messages, json& out) {
  if (!messages.is_array()) return invalid_request("'messages' must be an array of {\"role\", \"content\"} objects", "messages");
  json translated = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string at = strprintf("messages[%zu]", i);
    if (!m.is_object()) return invalid_request(at + " must be an object with 'role' and 'content'", at);
    for (const char* unsupported : {"images", "tool_calls", "tool_name"}) {
      const auto it = m.find(unsupported);
      if (it != m.end() && !it->is_null() && !(it->is_array() && it->empty()))
        return invalid_request(strprintf("%s.%s is not supported by fathom's Ollama API (text chat only; use "
                                         "/v1/chat/completions for tool calls)", at.c_str(), unsupported),
                               at + "." + unsupported);
    }
    json t = {{"role", m.value("role", json())}, {"content", m.value("content", json(""))}};
    if (const auto thinking = m.find("thinking"); thinking != m.end() && !thinking->is_null()) {
      if (!thinking->is_string()) return invalid_request(at + ".thinking must be a string", at + ".thinking");
      t["reasoning_content"] = *thinking;
    }
    translated.push_back(std::move(t));
  }
  out["messages"] = std::move(translated);
  return std::nullopt;
}

// format: "json" (any JSON object) or a JSON schema, through the constrained decoder.
std::optional<ApiError> read_format(const json& format, json& out) {
  if (format.is_null() || format == "") return std::nullopt;
  if (format == "json") {
    out["response_format"] = {{"type", "json_object"}};
  } else if (format.is_object()) {
    out["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "format"}, {"schema", format}}}};
  } else {
    return invalid_request("'format' must be \"json\" or a JSON schema object (got " + shown(format) + ")", "format");
  }
  return std::nullopt;
}

// The OpenAI parser names its own fields; Ollama's differ in a few places.
ApiError renamed(ApiError e) {
  for (const auto& [openai, ollama] : {std::pair<std::string, std::string>{"response_format.json_schema.schema", "format"},
                                       {"response_format", "format"}}) {
    if (e.param == openai) {
      e.param = ollama;
      size_t at = e.message.find(openai);
      if (at != std::string::npos) e.message.replace(at, openai.size(), ollama);
    }
  }
  if (e.param == "temperature" || e.param == "top_p" || e.param == "top_k" || e.param == "min_p" || e.param == "seed" ||
      e.param == "stop" || e.param == "repeat_penalty" || e.param == "presence_penalty" || e.param == "frequency_penalty")
    e.param = "options." + e.param;
  return e;
}

}  // namespace

std::variant<OllamaRequest, ApiError> parse_ollama_request(OllamaEndpoint endpoint, const json& body,
                                                           const RequestDefaults& defaults, int64_t n_ctx) {
  if (!body.is_object()) return invalid_request("the request body must be a JSON object", "", "invalid_json");
  OllamaRequest r;
  r.endpoint = endpoint;
  const auto field = [&](const char* name) -> const json* {
    const auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
  };
  const json* model = field("model");
  if (!model || !model->is_string() || model->get<std::string>().empty())
    return invalid_request("'model' must name the model (see GET /api/tags)", "model");
  r.model = model->get<std::string>();
  // Fields Ollama has that fathom cannot honour; sending them is an error, not a silent drop.
  const char* unsupported[] = {"images", "suffix", "template", "tools"};
  for (const char* name : unsupported)
    if (const json* v = field(name); v && !(v->is_array() && v->empty()) && *v != "")
      return invalid_request(strprintf("'%s' is not supported by fathom's Ollama API%s", name,
                                       std::string(name) == "tools" ? " (use /v1/chat/completions for tool calls)" : ""),
                             name);
  if (const json* context = field("context"); context && !(context->is_array() && context->empty()))
    return invalid_request("'context' (the deprecated token context of an earlier /api/generate) is not supported; "
                           "send the conversation to /api/chat instead", "context");
  if (auto e = check_keep_alive(body)) return *e;

  json openai = json::object();
  bool raw = false;
  if (const json* v = field("raw")) {
    if (!v->is_boolean()) return invalid_request("'raw' must be true or false", "raw");
    raw = v->get<bool>();
  }
  if (endpoint == OllamaEndpoint::kChat) {
    if (raw) return invalid_request("'raw' belongs to /api/generate", "raw");
    const json* messages = field("messages");
    if (!messages || (messages->is_array() && messages->empty())) r.load_only = true;
    else if (auto e = read_messages(*messages, openai)) return *e;
  } else {
    const json* prompt = field("prompt");
    const json* system = field("system");
    if (prompt && !prompt->is_string()) return invalid_request("'prompt' must be a string", "prompt");
    if (system && !system->is_string()) return invalid_request("'system' must be a string", "system");
    if (!prompt || prompt->get<std::string>().empty()) {
      r.load_only = true;
    } else if (raw) {
      // raw: the prompt is the model's input as is, no template.
      if (system) return invalid_request("'system' has no effect with \"raw\": true (no template is applied)", "system");
      openai["prompt"] = *prompt;
    } else {
      // Ollama renders system + prompt with the model's template: a one-turn chat.
      json messages = json::array();
      if (system) messages.push_back({{"role", "system"}, {"content", *system}});
      messages.push_back({{"role", "user"}, {"content", *prompt}});
      openai["messages"] = std::move(messages);
    }
  }
  if (const json* stream = field("stream")) {
    if (!stream->is_boolean()) return invalid_request("'stream' must be true or false", "stream");
    openai["stream"] = *stream;
  } else {
    openai["stream"] = true;  // Ollama streams unless told not to
  }
  if (const json* format = field("format"))
    if (auto e = read_format(*format, openai)) return *e;
  const bool chat = openai.contains("messages");
  if (const json* think = field("think")) {
    if (!think->is_boolean())
      return invalid_request("'think' must be true or false (fathom has no reasoning levels)", "think");
    if (chat) {
      // The switches the DeepSeek V3.1 ("thinking") and Qwen3 ("enable_thinking") templates read.
      openai["chat_template_kwargs"] = {{"thinking", think->get<bool>()}, {"enable_thinking", think->get<bool>()}};
      r.request.close_reasoning = !think->get<bool>();
    } else if (raw && think->get<bool>()) {
      return invalid_request("'think' needs the chat template; it cannot be used with \"raw\": true", "think");
    }
  }
  if (const json* options = field("options"))
    if (auto e = read_options(*options, openai, r, n_ctx)) return *e;
  if (r.load_only) return r;

  const int64_t context_tokens = r.request.context_tokens;
  const bool close_reasoning = r.request.close_reasoning;
  auto parsed = parse_openai_request(chat ? Endpoint::kChat : Endpoint::kCompletions, openai, defaults);
  if (auto* e = std::get_if<ApiError>(&parsed)) return renamed(*e);
  r.request = std::move(std::get<OpenAiRequest>(parsed));
  r.request.context_tokens = context_tokens;
  r.request.close_reasoning = close_reasoning;
  return r;
}

bool ollama_model_matches(const std::string& name, const std::string& served) {
  return name == served || name == served + ":latest";
}

http::Response ollama_error_response(const ApiError& error) {
  http::Response r = json_response(error.http_status, json_text(json{{"error", error.message}}));
  if (error.http_status == 429 || error.http_status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

std::string rfc3339(int64_t unix_nanos) {
  const std::time_t seconds = static_cast<std::time_t>(unix_nanos / 1000000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &utc);
  return strprintf("%s.%09lldZ", date, static_cast<long long>(unix_nanos % 1000000000));
}

namespace {

int64_t unix_nanos_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t nanos(double seconds) { return static_cast<int64_t>(std::llround(std::max(0.0, seconds) * 1e9)); }

// Ollama's NDJSON shapes: one object per line while streaming, then a final one with done,
// done_reason and the timings (ns). /api/chat puts text in message.content and reasoning in
// message.thinking; /api/generate in response and thinking.
class OllamaWire : public ResponseWire {
 public:
  OllamaWire(OllamaEndpoint endpoint, double t_arrival) : endpoint_(endpoint), t_arrival_(t_arrival) {}

  http::Response stream_head(const ResponseMeta&, size_t) const override {
    http::Response head;
    head.content_type = "application/x-ndjson";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
    return head;
  }
  // Every NDJSON line is an object to the clients, so a silent stream stays silent.
  std::string heartbeat() const override { return ""; }

  std::string stream_event(const ResponseMeta& meta, size_t, const ChoiceBuilder&,
                           const ChoiceBuilder::Delta& delta) const override {
    if (delta.content.empty() && delta.reasoning.empty()) return "";
    json line = base(meta);
    put_text(line, delta.content, delta.reasoning, !delta.reasoning.empty());
    line["done"] = false;
    return json_text(line) + "\n";
  }

  std::string stream_end(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage&,
                         const std::optional<ApiError>& failure) const override {
    if (failure) return json_text(json{{"error", failure->message}}) + "\n";
    json line = base(meta);
    put_text(line, "", "", false);
    finish(line, choices[0]);
    return json_text(line) + "\n";
  }

  http::Response body(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage&) const override {
    const ChoiceBuilder& c = choices[0];
    json out = base(meta);
    put_text(out, c.content(), c.reasoning(), c.has_reasoning() && !c.reasoning().empty());
    finish(out, c);
    return json_response(200, json_text(out));
  }

  http::Response error(const ApiError& e) const override { return ollama_error_response(e); }

 private:
  json base(const ResponseMeta& meta) const {
    return {{"model", meta.model}, {"created_at", rfc3339(unix_nanos_now())}};
  }
  void put_text(json& line, const std::string& content, const std::string& reasoning, bool with_reasoning) const {
    if (endpoint_ == OllamaEndpoint::kChat) {
      line["message"] = {{"role", "assistant"}, {"content", content}};
      if (with_reasoning) line["message"]["thinking"] = reasoning;
    } else {
      line["response"] = content;
      if (with_reasoning) line["thinking"] = reasoning;
    }
  }
  // The timings: load_duration is the time from arrival to the engine (parsing, template,
  // tokenizing; the model itself was loaded at start-up), prompt_eval the prefill, eval the
  // generation after the first token.
  void finish(json& line, const ChoiceBuilder& c) const {
    const RequestStats& s = c.stats();
    line["done"] = true;
    line["done_reason"] = c.finish_reason_text();
    line["total_duration"] = nanos(s.t_end - t_arrival_);
    line["load_duration"] = nanos(s.t_submit - t_arrival_);
    line["prompt_eval_count"] = s.n_prompt;
    line["prompt_eval_duration"] = nanos(s.prompt_seconds());
    line["eval_count"] = s.n_generated;
    line["eval_duration"] = nanos(s.generation_seconds());
  }

  OllamaEndpoint endpoint_;
  double t_arrival_;  // steady-clock seconds when the request arrived
};

// The model's description, read once from its GGUF header: details, model_info, template.
const json& model_description(ServerContext& ctx, const Engine& engine) {
  std::call_once(ctx.ollama_model_once, [&] {
    json details = {{"format", "gguf"}, {"family", ""}, {"families", json::array()}, {"parameter_size", ""},
                    {"quantization_level", ""}, {"parent_model", ""}};
    json info = json::object();
    int64_t size = 0;
    std::string modified = rfc3339(static_cast<int64_t>(ctx.created) * 1000000000);
    if (auto file = gguf::GgufFile::open(ctx.options.engine.model_path)) {
      const gguf::GgufFile& f = **file;
      size = static_cast<int64_t>(f.file_size());
      struct stat st{};
      if (::stat(ctx.options.engine.model_path.c_str(), &st) == 0)
        modified = rfc3339(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
      int64_t parameters = 0;
      std::map<std::string, size_t> bytes_by_type;  // dtype -> bytes of its matrices
      for (const gguf::TensorInfo& t : f.tensors()) {
        parameters += t.view.n_elements();
        if (t.view.n_dims >= 2) bytes_by_type[dtype_name(t.view.dtype)] += t.n_bytes;
      }
      std::string dominant;
      size_t most = 0;
      for (const auto& [type, bytes] : bytes_by_type)
        if (bytes > most) most = bytes, dominant = type;
      std::transform(dominant.begin(), dominant.end(), dominant.begin(), [](unsigned char c) { return std::toupper(c); });
      const double p = static_cast<double>(parameters);
      details["family"] = f.architecture();
      details["families"] = json::array({f.architecture()});
      details["parameter_size"] = p >= 1e9 ? strprintf("%.1fB", p / 1e9) : p >= 1e6 ? strprintf("%.1fM", p / 1e6)
                                                                                      : strprintf("%.1fK", p / 1e3);
      details["quantization_level"] = dominant;
      for (const auto& [key, value] : f.metadata()) {
        if (value.type == gguf::ValueType::kArray || key == "tokenizer.chat_template") continue;
        if (value.type == gguf::ValueType::kString) info[key] = value.str;
        else if (value.type == gguf::ValueType::kBool) info[key] = value.b;
        else if (value.is_float()) info[key] = value.f64;
        else if (value.type == gguf::ValueType::kUint64) info[key] = value.u64;
        else info[key] = value.i64;
      }
      info["general.parameter_count"] = parameters;
    }
    const Tokenizer& tok = engine.tokenizer();
    const std::string tmpl = !ctx.options.chat_template.empty() ? ctx.options.chat_template : tok.chat_template().value_or("");
    json capabilities = json::array({"completion"});
    if (tmpl.find("<think>") != std::string::npos) capabilities.push_back("thinking");
    ctx.ollama_model = {{"name", ctx.model_name}, {"model", ctx.model_name}, {"modified_at", modified}, {"size", size},
                        {"digest", ""}, {"details", details}, {"model_info", info}, {"template", tmpl},
                        {"capabilities", capabilities}};
  });
  return ctx.ollama_model;
}

// The server's sampling defaults, in a Modelfile's PARAMETER lines (what /api/show calls parameters).
std::string parameters_text(const RequestDefaults& d) {
  std::string out = strprintf("temperature %g\ntop_k %d\ntop_p %g\nmin_p %g\nrepeat_penalty %g\nrepeat_last_n %d",
                              d.sampling.temperature, d.sampling.top_k, d.sampling.top_p, d.sampling.min_p,
                              d.sampling.repeat_penalty, d.sampling.repeat_last_n);
  if (d.max_tokens > 0) out += strprintf("\nnum_predict %d", d.max_tokens);
  return out;
}

}  // namespace

http::Response ollama_info_response(ServerContext& ctx, const http::Request& req) {
  if (req.path == "/api/version") return json_response(200, json_text(json{{"version", FATHOM_VERSION}}));
  const Engine& engine = *ctx.worker->engine();
  const json& m = model_description(ctx, engine);
  const json entry = {{"name", m["name"]}, {"model", m["model"]}, {"size", m["size"]}, {"digest", m["digest"]},
                      {"details", m["details"]}};
  if (req.path == "/api/tags") {
    json tag = entry;
    tag["modified_at"] = m["modified_at"];
    return json_response(200, json_text(json{{"models", json::array({tag})}}));
  }
  if (req.path == "/api/ps") {
    // The model stays loaded for the server's life: Ollama reports a keep_alive of -1 as an
    // expiry centuries away, and so does this.
    json loaded = entry;
    loaded["expires_at"] = "2318-01-01T00:00:00Z";
    // Nothing in VRAM when every weight is on the CPU; a split placement is not measured here,
    // so the field is left out rather than guessed.
    if (engine.placement_report().empty()) loaded["size_vram"] = 0;
    loaded["context_length"] = engine.n_ctx();
    return json_response(200, json_text(json{{"models", json::array({loaded})}}));
  }
  // POST /api/show {"model": NAME} (older clients send "name").
  auto body = parse_json_body(req.body);
  if (auto* e = std::get_if<ApiError>(&body)) return ollama_error_response(*e);
  const json& b = std::get<json>(body);
  const json name = b.is_object() ? (b.contains("model") ? b["model"] : b.value("name", json())) : json();
  if (!name.is_string()) return ollama_error_response(invalid_request("'model' must name the model (see GET /api/tags)", "model"));
  if (!ollama_model_matches(name.get<std::string>(), ctx.model_name))
    return ollama_error_response(not_found(strprintf("model '%s' not found; this server serves '%s'",
                                                     name.get<std::string>().c_str(), ctx.model_name.c_str()), "model_not_found"));
  json info = m["model_info"];
  info["fathom.context_length"] = engine.n_ctx();
  return json_response(200, json_text(json{{"modelfile", ""}, {"parameters", parameters_text(ctx.options.defaults)},
                                           {"template", m["template"]}, {"details", m["details"]}, {"model_info", info},
                                           {"capabilities", m["capabilities"]}, {"modified_at", m["modified_at"]}}));
}

void handle_ollama_generation(ServerContext& ctx, OllamaEndpoint endpoint, const http::Request& req,
                              std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange) {
  Reservation reservation(*ctx.worker);
  auto fail = [&](const ApiError& e) {
    writer->send(ollama_error_response(e));
    ctx.write_audit(*exchange, e.http_status);
  };
  std::optional<json> body = generation_body(ctx, req, fail);
  if (!body) return;
  const Engine* engine = ctx.worker->engine();
  auto parsed = parse_ollama_request(endpoint, *body, ctx.options.defaults, engine->n_ctx());
  if (auto* e = std::get_if<ApiError>(&parsed)) return fail(*e);
  OllamaRequest& r = std::get<OllamaRequest>(parsed);
  if (!ollama_model_matches(r.model, ctx.model_name))
    return fail(not_found(strprintf("model '%s' not found; this server serves '%s' (see GET /api/tags)", r.model.c_str(),
                                    ctx.model_name.c_str()), "model_not_found"));
  const std::string created_at = rfc3339(unix_nanos_now());
  if (r.load_only) {
    // Ollama's way to load a model ahead of use: the model is loaded already.
    json out = {{"model", ctx.model_name}, {"created_at", created_at}, {"done", true}, {"done_reason", "load"}};
    if (endpoint == OllamaEndpoint::kChat) out["message"] = {{"role", "assistant"}, {"content", ""}};
    else out["response"] = "";
    writer->send(json_response(200, json_text(out)));
    ctx.write_audit(*exchange, 200);
    return;
  }
  if (r.repeat_last_n != -2)
    r.request.sampling.repeat_last_n = static_cast<int32_t>(r.repeat_last_n == -1 ? engine->n_ctx() : r.repeat_last_n);
  ResponseMeta meta;
  meta.endpoint = r.request.endpoint;
  meta.id = ctx.new_response_id("ollama-");
  meta.created = static_cast<int64_t>(std::time(nullptr));
  meta.model = r.model;
  run_generation(ctx, r.request, std::make_unique<OllamaWire>(endpoint, req.t_arrival), std::move(meta), std::move(writer),
                 std::move(exchange), reservation);
}

OllamaPuller::OllamaPuller(std::string store_root, hub::PullOptions options)
    : store_(std::move(store_root)), options_(std::move(options)) {}

OllamaPuller::~OllamaPuller() { stop(); }

void OllamaPuller::stop() {
  stop_ = true;
  std::thread finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished = std::move(thread_);
  }
  if (finished.joinable()) finished.join();
}

void OllamaPuller::handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
                          std::function<void(int)> done) {
  auto refuse = [&](const ApiError& e) {
    writer->send(ollama_error_response(e));
    done(e.http_status);
  };
  if (req.body.size() > kMaxPullBodyBytes)
    return refuse(invalid_request(strprintf("the /api/pull body is %zu bytes; at most %zu are read", req.body.size(),
                                            kMaxPullBodyBytes)));
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return refuse(invalid_request("the body must be a JSON object such as {\"model\": \"deepseek-r1:1.5b\"}"));
  for (const auto& [key, value] : body.items())
    if (key != "model" && key != "name" && key != "stream" && key != "insecure")
      return refuse(invalid_request("'" + key + "' is not supported by /api/pull; it takes model, stream and insecure", key));
  const json& model = body.contains("model") ? body["model"] : body.contains("name") ? body["name"] : json();
  if (!model.is_string() || model.get<std::string>().empty())
    return refuse(invalid_request("'model' must name the model to pull, e.g. \"deepseek-r1:1.5b\" or \"ORG/REPO:QUANT\"", "model"));
  const json stream = body.value("stream", json(true));
  if (!stream.is_boolean()) return refuse(invalid_request("'stream' must be true or false (got " + shown(stream) + ")", "stream"));
  const json insecure = body.value("insecure", json(false));
  if (insecure != json(false))
    return refuse(invalid_request("'insecure' is not supported: the server pulls from its HF_ENDPOINT with that URL's "
                                  "own checks; only false is accepted", "insecure"));
  Expected<hub::ModelRef> ref = hub::parse_model_ref(model.get<std::string>());
  if (!ref) return refuse(invalid_request(ref.status().message(), "model"));

  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return refuse(unavailable("the server is shutting down", "shutting_down"));
  if (busy_)
    return refuse(ApiError{429, "rate_limit_error", "pull_in_progress", "",
                           "another model is being pulled; the server pulls one at a time, retry when it has finished"});
  if (thread_.joinable()) thread_.join();  // the last pull has finished; its thread is ending
  busy_ = true;
  auto client_gone = std::make_shared<std::atomic<bool>>(false);
  writer->on_disconnect([client_gone] { *client_gone = true; });
  if (stream.get<bool>()) {
    http::Response head;
    head.content_type = "application/x-ndjson";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
    writer->begin_stream(std::move(head));
  }
  thread_ = std::thread(&OllamaPuller::run, this, std::move(*ref), stream.get<bool>(), std::move(writer),
                        std::move(client_gone), std::move(done));
}

void OllamaPuller::run(hub::ModelRef ref, bool stream, std::shared_ptr<http::ResponseWriter> writer,
                       std::shared_ptr<std::atomic<bool>> client_gone, std::function<void(int)> done) {
  auto line = [&](const json& j) {
    if (stream) writer->write(json_text(j) + "\n");
  };
  // Ollama's progress line of one file: "pulling ID" with the digest, total and completed bytes.
  auto file_line = [&](const std::string& file, const std::string& sha256, uint64_t total, uint64_t completed) {
    json j = {{"status", "pulling " + file}, {"total", total}, {"completed", completed}};
    if (!sha256.empty()) j["digest"] = "sha256:" + sha256;
    line(j);
  };
  line({{"status", "pulling manifest"}});
  hub::PullOptions options = options_;
  options.cancelled = [this, client_gone] { return stop_.load() || client_gone->load(); };
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_line{};
  options.on_progress = [&](const hub::PullProgress& p) {
    const Clock::time_point now = Clock::now();
    if (p.done != p.total && now - last_line < std::chrono::duration<double>(kPullProgressIntervalSeconds)) return;
    last_line = now;
    file_line(p.file, p.sha256, p.total, p.done);
  };
  Expected<hub::PullResult> result = hub::pull_model(ref, store_, options);
  {
    // Free before the answer ends, so a client pulling again right after it is not refused;
    // the next handle() joins this thread, which only has the answer left to post.
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
  }
  if (!result) {
    ApiError e = from_status(result.status());
    if (result.status().code() == ErrorCode::kCancelled)
      e = unavailable(client_gone->load() ? "the client went away; the pull was cancelled"
                                          : "the server is shutting down; the pull was cancelled (pull again to resume it)",
                      "cancelled");
    if (stream) {
      line({{"error", e.message}});
      writer->end_stream();
    } else {
      writer->send(ollama_error_response(e));
    }
    return done(e.http_status);
  }
  if (result->already_present)
    for (const hub::ManifestFile& f : result->manifest.files) file_line(f.name, f.sha256, f.size, f.size);
  line({{"status", "verifying sha256 digest"}});
  line({{"status", "writing manifest"}});
  if (stream) {
    line({{"status", "success"}});
    writer->end_stream();
  } else {
    writer->send(json_response(200, json_text(json{{"status", "success"}})));
  }
  done(200);
}

}  // namespace fathom::server
