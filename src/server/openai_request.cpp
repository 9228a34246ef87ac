#include "server/openai_request.h"

#include <cmath>
#include <limits>

#include "core/json_depth.h"

namespace fathom::server {

namespace {

using nlohmann::json;

// A short rendering of a value for error messages.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads optional top-level fields with type and range checks; the first problem is kept.
// A field sent as null counts as absent (several SDKs send null for unset options).
class FieldReader {
 public:
  explicit FieldReader(const json& body) : body_(body) {}

  const json* get(const char* name) const {
    auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<double> number(const char* name, double lo, double hi) {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < lo || v->get<double>() > hi) {
      fail(name, strprintf("'%s' must be a number from %g to %g (got %s)", name, lo, hi, shown(*v).c_str()));
      return std::nullopt;
    }
    return v->get<double>();
  }

  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi) {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) ||
        v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
      fail(name, strprintf("'%s' must be an integer from %lld to %lld (got %s)", name, static_cast<long long>(lo),
                           static_cast<long long>(hi), shown(*v).c_str()));
      return std::nullopt;
    }
    return v->get<int64_t>();
  }

  std::optional<bool> boolean(const char* name) {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      fail(name, strprintf("'%s' must be true or false (got %s)", name, shown(*v).c_str()));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<std::string> string(const char* name) {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      fail(name, strprintf("'%s' must be a string (got %s)", name, shown(*v).c_str()));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  void fail(const std::string& param, std::string message) {
    if (!error_) error_ = invalid_request(std::move(message), param);
  }
  const std::optional<ApiError>& error() const { return error_; }

 private:
  const json& body_;
  std::optional<ApiError> error_;  // first problem found
};

// content: a string, an array of {"type": "text", "text": ...} parts (joined), or null.
std::optional<std::string> message_content(const json& content, size_t index, FieldReader& r) {
  const std::string where = strprintf("messages[%zu].content", index);
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    r.fail(where, where + " must be a string or an array of text parts (got " + shown(content) + ")");
    return std::nullopt;
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || *type != "text" || !part.contains("text") || !part["text"].is_string()) {
      r.fail(where, strprintf("%s[%zu] must be {\"type\": \"text\", \"text\": \"...\"}; this server accepts text "
                              "parts only (got %s)", where.c_str(), i, shown(part).c_str()));
      return std::nullopt;
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

void read_messages(OpenAiRequest& out, FieldReader& r) {
  const json* messages = r.get("messages");
  if (!messages || !messages->is_array() || messages->empty()) {
    r.fail("messages", "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
    return;
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const auto role = m.is_object() ? m.find("role") : m.end();
    if (!m.is_object() || role == m.end() || !role->is_string()) {
      r.fail(strprintf("messages[%zu].role", i), strprintf("messages[%zu] must be an object with a string 'role'", i));
      return;
    }
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for the system role
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool") {
      r.fail(strprintf("messages[%zu].role", i),
             strprintf("messages[%zu].role must be system, developer, user, assistant or tool (got %s)", i,
                       shown(*role).c_str()));
      return;
    }
    const auto content = m.find("content");
    std::optional<std::string> text = message_content(content == m.end() ? json() : *content, i, r);
    if (!text) return;
    msg.content = std::move(*text);
    const auto reasoning = m.find("reasoning_content");
    if (reasoning != m.end() && reasoning->is_string()) msg.reasoning_content = reasoning->get<std::string>();
    out.messages.push_back(std::move(msg));
  }
}

// A token id array, or nullopt (and an error) when any element is not a valid id.
std::optional<std::vector<int32_t>> token_array(const json& v, const std::string& where, FieldReader& r) {
  std::vector<int32_t> tokens;
  for (const json& t : v) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      r.fail("prompt", where + " must hold token ids (non-negative integers); got " + shown(t));
      return std::nullopt;
    }
    tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return tokens;
}

// prompt: a string, an array of strings, an array of token ids, or an array of token id arrays.
void read_prompts(OpenAiRequest& out, FieldReader& r) {
  const json* prompt = r.get("prompt");
  const char* kAccepted = "'prompt' must be a string, an array of strings, an array of token ids or an array of "
                          "token id arrays";
  if (!prompt || (!prompt->is_string() && !prompt->is_array()) || (prompt->is_array() && prompt->empty())) {
    r.fail("prompt", kAccepted);
    return;
  }
  if (prompt->is_string()) {
    out.prompts.push_back({prompt->get<std::string>(), {}, false});
    return;
  }
  if ((*prompt)[0].is_number()) {
    auto tokens = token_array(*prompt, "prompt", r);
    if (tokens) out.prompts.push_back({"", std::move(*tokens), true});
    return;
  }
  if (static_cast<int>(prompt->size()) > kMaxPrompts) {
    r.fail("prompt", strprintf("at most %d prompts per request (got %zu)", kMaxPrompts, prompt->size()));
    return;
  }
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& p = (*prompt)[i];
    if (p.is_string()) {
      out.prompts.push_back({p.get<std::string>(), {}, false});
    } else if (p.is_array() && !p.empty()) {
      auto tokens = token_array(p, strprintf("prompt[%zu]", i), r);
      if (!tokens) return;
      out.prompts.push_back({"", std::move(*tokens), true});
    } else {
      r.fail("prompt", kAccepted);
      return;
    }
  }
}

void read_stop(OpenAiRequest& out, FieldReader& r) {
  const json* stop = r.get("stop");
  if (!stop) return;
  const char* kAccepted = "'stop' must be a non-empty string or an array of at most 16 non-empty strings";
  if (stop->is_string()) {
    if (stop->get<std::string>().empty()) return r.fail("stop", kAccepted);
    out.stop.push_back(stop->get<std::string>());
    return;
  }
  if (!stop->is_array() || static_cast<int>(stop->size()) > kMaxStopStrings) return r.fail("stop", kAccepted);
  for (const json& s : *stop) {
    if (!s.is_string() || s.get<std::string>().empty()) return r.fail("stop", kAccepted);
    out.stop.push_back(s.get<std::string>());
  }
}

void read_sampling(OpenAiRequest& out, FieldReader& r) {
  SamplingParams& s = out.sampling;
  if (auto v = r.number("temperature", 0.0, 2.0)) s.temperature = static_cast<float>(*v);
  if (auto v = r.number("top_p", 0.0, 1.0)) s.top_p = static_cast<float>(*v);
  if (auto v = r.integer("top_k", -1, std::numeric_limits<int32_t>::max())) s.top_k = static_cast<int32_t>(*v);
  if (auto v = r.number("min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = r.number("presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = r.number("frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*v);
  // vLLM's name and llama.cpp's name for the same multiplicative penalty.
  for (const char* name : {"repetition_penalty", "repeat_penalty"})
    if (auto v = r.number(name, 0.01, 10.0)) s.repeat_penalty = static_cast<float>(*v);
  if (auto v = r.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = static_cast<uint64_t>(*v);
    out.seed_given = true;
  }
}

void read_logprobs(Endpoint endpoint, OpenAiRequest& out, FieldReader& r) {
  if (endpoint == Endpoint::kChat) {
    out.logprobs = r.boolean("logprobs").value_or(false);
    if (auto n = r.integer("top_logprobs", 0, kMaxTopLogprobs)) {
      if (!out.logprobs) return r.fail("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
      out.top_logprobs = static_cast<int32_t>(*n);
    }
    return;
  }
  // The legacy completions API: "logprobs": N asks for the chosen token and N alternatives.
  if (auto n = r.integer("logprobs", 0, kMaxTopLogprobs)) {
    out.logprobs = true;
    out.top_logprobs = static_cast<int32_t>(*n);
  }
}

}  // namespace

std::variant<nlohmann::json, ApiError> parse_json_body(const std::string& body) {
  if (auto at = json_depth_exceeded_at(body, kMaxRequestJsonDepth)) {
    return invalid_request(strprintf("the request body nests arrays and objects deeper than %d levels (at byte %zu); "
                                     "flatten the request",
                                     kMaxRequestJsonDepth, *at),
                           "", "invalid_json");
  }
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    // parse_error for syntax, out_of_range for a number too large for a double ("1e999").
    return invalid_request(strprintf("the request body is not valid JSON: %s", e.what()), "", "invalid_json");
  }
}

std::variant<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, const nlohmann::json& body,
                                                           const RequestDefaults& defaults) {
  if (!body.is_object()) return invalid_request("the request body must be a JSON object", "", "invalid_json");
  OpenAiRequest out;
  out.endpoint = endpoint;
  out.sampling = defaults.sampling;
  out.max_tokens = defaults.max_tokens;
  FieldReader r(body);
  out.model = r.string("model").value_or("");
  if (endpoint == Endpoint::kChat) {
    read_messages(out, r);
  } else {
    read_prompts(out, r);
    if (r.boolean("echo").value_or(false)) r.fail("echo", "'echo' is not supported by this server; leave it false");
    if (auto b = r.integer("best_of", 1, std::numeric_limits<int32_t>::max()); b && *b != 1)
      r.fail("best_of", "only best_of = 1 is supported");
  }
  if (auto n = r.integer("n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()); n && *n != 1)
    r.fail("n", strprintf("only n = 1 is supported (got %lld); send separate requests for more choices",
                          static_cast<long long>(*n)));
  // max_completion_tokens is the newer name and wins when both are sent.
  for (const char* name : {"max_tokens", "max_completion_tokens"})
    if (auto v = r.integer(name, 1, std::numeric_limits<int32_t>::max())) out.max_tokens = static_cast<int32_t>(*v);
  read_sampling(out, r);
  read_stop(out, r);
  out.stream = r.boolean("stream").value_or(false);
  if (const json* so = r.get("stream_options")) {
    if (!so->is_object()) {
      r.fail("stream_options", "'stream_options' must be an object like {\"include_usage\": true}");
    } else if (!out.stream) {
      r.fail("stream_options", "'stream_options' is only allowed with \"stream\": true");
    } else if (auto iu = so->find("include_usage"); iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) r.fail("stream_options", "'stream_options.include_usage' must be true or false");
      else out.include_usage = iu->get<bool>();
    }
  }
  read_logprobs(endpoint, out, r);
  out.ignore_eos = r.boolean("ignore_eos").value_or(false);
  if (auto format = r.string("reasoning_format")) {
    if (*format == "none") out.reasoning_inline = true;
    else if (*format != "deepseek")
      r.fail("reasoning_format", "'reasoning_format' must be \"deepseek\" (reasoning in reasoning_content, the "
                                 "default) or \"none\" (the <think> text stays in content)");
  }
  if (const json* kwargs = r.get("chat_template_kwargs")) {
    if (!kwargs->is_object() || endpoint != Endpoint::kChat)
      r.fail("chat_template_kwargs", "'chat_template_kwargs' must be an object of template variables (chat only), "
                                     "e.g. {\"enable_thinking\": true}");
    else out.chat_template_kwargs = *kwargs;
  }
  if (r.error()) return *r.error();
  return out;
}

}  // namespace fathom::server
