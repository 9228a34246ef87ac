#include "server/openai_request.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/json_depth.h"
#include "runtime/grammar/grammar.h"

namespace fathom::server {

namespace {

// The body keeps the client's key order: templates print the tools as sent, and a
// json_schema's properties come out in the schema's order.
using json = nlohmann::ordered_json;

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

// OpenAI's rule for function names (what models are trained to write back), plus '.' and ':'.
bool valid_function_name(const json& name) {
  if (!name.is_string()) return false;
  const std::string& s = name.get_ref<const std::string&>();
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '_' && c != '-' && c != '.' && c != ':') return false;
  return true;
}

// An assistant message's tool_calls: [{id, type: "function", function: {name, arguments}}],
// arguments being the JSON text of an object (as the API returned it).
std::optional<std::vector<ToolCall>> message_tool_calls(const json& calls, size_t index, FieldReader& r) {
  const std::string where = strprintf("messages[%zu].tool_calls", index);
  if (!calls.is_array() || static_cast<int>(calls.size()) > kMaxToolCalls) {
    r.fail(where, strprintf("%s must be an array of at most %d calls", where.c_str(), kMaxToolCalls));
    return std::nullopt;
  }
  std::vector<ToolCall> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const json& c = calls[i];
    const std::string at = strprintf("%s[%zu]", where.c_str(), i);
    const json* function = c.is_object() && c.contains("function") ? &c["function"] : nullptr;
    if (!c.is_object() || !c.contains("id") || !c["id"].is_string() || c["id"].get_ref<const std::string&>().empty() ||
        c.value("type", std::string("function")) != "function" || !function || !function->is_object()) {
      r.fail(at, at + " must be {\"id\": \"call_...\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}} (got " +
                     shown(c) + ")");
      return std::nullopt;
    }
    if (!valid_function_name(function->value("name", json()))) {
      r.fail(at + ".function.name", at + ".function.name must be 1 to 64 letters, digits, '_', '-', '.' or ':'");
      return std::nullopt;
    }
    const json arguments = function->value("arguments", json());
    if (!arguments.is_string() || !json::parse(arguments.get<std::string>(), nullptr, false).is_object()) {
      r.fail(at + ".function.arguments", at + ".function.arguments must be a string holding a JSON object, as the API "
                                              "returned it (got " + shown(arguments) + ")");
      return std::nullopt;
    }
    out.push_back({c["id"].get<std::string>(), (*function)["name"].get<std::string>(), arguments.get<std::string>()});
  }
  return out;
}

void read_messages(OpenAiRequest& out, FieldReader& r) {
  const json* messages = r.get("messages");
  if (!messages || !messages->is_array() || messages->empty()) {
    r.fail("messages", "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
    return;
  }
  std::vector<std::string> call_ids;  // ids of the calls made so far, which tool messages answer
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const auto role = m.is_object() ? m.find("role") : m.end();
    if (!m.is_object() || role == m.end() || !role->is_string()) {
      r.fail(strprintf("messages[%zu].role", i), strprintf("messages[%zu] must be an object with a string 'role'", i));
      return;
    }
    ChatTurn turn;
    ChatMessage& msg = turn.message;
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
    const auto calls = m.find("tool_calls");
    if (calls != m.end() && !calls->is_null()) {
      if (msg.role != "assistant") {
        r.fail(strprintf("messages[%zu].tool_calls", i), strprintf("messages[%zu]: only assistant messages have tool_calls", i));
        return;
      }
      std::optional<std::vector<ToolCall>> parsed = message_tool_calls(*calls, i, r);
      if (!parsed) return;
      turn.tool_calls = std::move(*parsed);
      for (const ToolCall& c : turn.tool_calls) call_ids.push_back(c.id);
      // Templates render a calls-only turn when content is None (R1 tests `content is none`).
      turn.content_null = !turn.tool_calls.empty() && (content == m.end() || content->is_null());
    }
    if (msg.role == "tool") {
      const auto id = m.find("tool_call_id");
      const std::string where = strprintf("messages[%zu].tool_call_id", i);
      if (id == m.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
        r.fail(where, where + " must be the id of the call this message answers");
        return;
      }
      if (std::find(call_ids.begin(), call_ids.end(), id->get<std::string>()) == call_ids.end()) {
        r.fail(where, strprintf("%s is %s, which no earlier assistant tool_calls entry has", where.c_str(), shown(*id).c_str()));
        return;
      }
      turn.tool_call_id = id->get<std::string>();
    }
    out.messages.push_back(std::move(turn));
  }
}

// tools: [{"type": "function", "function": {"name", "description"?, "parameters"?}}].
void read_tools(OpenAiRequest& out, FieldReader& r) {
  const json* tools = r.get("tools");
  if (!tools) return;
  if (!tools->is_array() || static_cast<int>(tools->size()) > kMaxTools)
    return r.fail("tools", strprintf("'tools' must be an array of at most %d function tools", kMaxTools));
  std::vector<std::string> names;
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    const std::string at = strprintf("tools[%zu]", i);
    if (!t.is_object() || t.value("type", json()) != "function" || !t.contains("function") || !t["function"].is_object())
      return r.fail(at, at + " must be {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}; "
                             "only function tools are supported");
    const json& f = t["function"];
    if (!valid_function_name(f.value("name", json())))
      return r.fail(at + ".function.name", at + ".function.name must be 1 to 64 letters, digits, '_', '-', '.' or ':'");
    if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object())
      return r.fail(at + ".function.parameters", at + ".function.parameters must be a JSON schema object");
    if (f.contains("description") && !f["description"].is_null() && !f["description"].is_string())
      return r.fail(at + ".function.description", at + ".function.description must be a string");
    const std::string name = f["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) != names.end())
      return r.fail(at + ".function.name", strprintf("two tools are named '%s'", name.c_str()));
    names.push_back(name);
  }
  out.tools = *tools;
}

// tool_choice: "auto", "none", "required" or {"type": "function", "function": {"name"}}.
void read_tool_choice(OpenAiRequest& out, FieldReader& r) {
  const json* choice = r.get("tool_choice");
  if (!choice) return;
  const char* kAccepted = "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", "
                          "\"function\": {\"name\": NAME}} naming one of the tools";
  if (choice->is_string()) {
    const std::string& s = choice->get_ref<const std::string&>();
    if (s == "auto") out.tool_choice = ToolChoiceMode::kAuto;
    else if (s == "none") out.tool_choice = ToolChoiceMode::kNone;
    else if (s == "required") out.tool_choice = ToolChoiceMode::kRequired;
    else return r.fail("tool_choice", kAccepted);
  } else if (choice->is_object() && choice->value("type", json()) == "function" && choice->contains("function") &&
             (*choice)["function"].is_object() && (*choice)["function"].value("name", json()).is_string()) {
    out.tool_choice = ToolChoiceMode::kNamed;
    out.tool_choice_name = (*choice)["function"]["name"].get<std::string>();
    bool known = false;
    for (const auto& t : out.tools) known = known || t["function"]["name"] == out.tool_choice_name;
    if (!known) return r.fail("tool_choice", strprintf("tool_choice names '%s', which is not one of the tools",
                                                       out.tool_choice_name.c_str()));
  } else {
    return r.fail("tool_choice", kAccepted);
  }
  if ((out.tool_choice == ToolChoiceMode::kRequired || out.tool_choice == ToolChoiceMode::kNamed) && out.tools.empty())
    r.fail("tool_choice", "tool_choice \"required\" or a named function needs 'tools'");
}

// strict: the arguments follow the schema. Guaranteed when the call is forced (its arguments are
// generated under the schema's grammar); with "auto" the model may open a call the grammar does
// not follow, so strict is refused there.
void check_strict_tools(const OpenAiRequest& out, FieldReader& r) {
  if (out.tool_choice == ToolChoiceMode::kRequired || out.tool_choice == ToolChoiceMode::kNamed) return;
  for (size_t i = 0; i < out.tools.size(); ++i)
    if (const json& f = out.tools[i]["function"]; f.contains("strict") && f["strict"] == true)
      return r.fail(strprintf("tools[%zu].function.strict", i),
                    "strict function calling is guaranteed only when tool_choice is \"required\" or names the function "
                    "(the arguments are then generated under the schema); leave 'strict' false with tool_choice \"auto\"");
}

// logit_bias: {"token id": bias}, bias in [-100, 100]; ids are checked against the vocabulary
// when the prompt is prepared (the tokenizer is not known here).
// response_format (json_object, json_schema) or a GBNF grammar: the grammar the sampler then
// enforces token by token (src/runtime/grammar). A schema or grammar fathom cannot honour in
// full is a 400 naming what it cannot do, never a looser constraint.
void read_constraint(OpenAiRequest& out, FieldReader& r) {
  const json* format = r.get("response_format");
  const json* gbnf = r.get("grammar");
  if (format && gbnf) return r.fail("grammar", "send either 'response_format' or 'grammar', not both");
  if (gbnf) {
    if (!gbnf->is_string()) return r.fail("grammar", "'grammar' must be a string of GBNF (llama.cpp's grammar format)");
    auto g = grammar_from_gbnf(gbnf->get<std::string>());
    if (!g) return r.fail("grammar", "the grammar is not valid GBNF: " + g.status().message());
    out.sampling.grammar = *g;
    return;
  }
  if (!format) return;
  const json* type = format->is_object() ? &(*format)["type"] : nullptr;
  if (!type || !type->is_string())
    return r.fail("response_format", "'response_format' must be an object with a \"type\": \"text\", \"json_object\" or \"json_schema\"");
  const std::string t = type->get<std::string>();
  if (t == "text") return;
  if (t == "json_object") {
    out.sampling.grammar = json_object_grammar();
    return;
  }
  if (t != "json_schema")
    return r.fail("response_format.type", "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\" (got '" + t + "')");
  const json& spec = (*format)["json_schema"];
  if (!spec.is_object() || !spec.contains("schema") || !spec["schema"].is_object())
    return r.fail("response_format.json_schema", "'response_format.json_schema' must be an object holding the JSON Schema as \"schema\"");
  // The body keeps its key order, so properties are generated in the schema's order.
  auto g = grammar_from_json_schema(spec["schema"]);
  if (!g) return r.fail("response_format.json_schema.schema",
                  "response_format.json_schema.schema cannot be enforced: " + g.status().message());
  out.sampling.grammar = *g;
}

void read_logit_bias(OpenAiRequest& out, FieldReader& r) {
  const json* bias = r.get("logit_bias");
  if (!bias) return;
  const char* kAccepted = "'logit_bias' must map token ids (as strings) to numbers from -100 to 100, at most 1024 entries";
  if (!bias->is_object() || static_cast<int>(bias->size()) > kMaxLogitBias) return r.fail("logit_bias", kAccepted);
  for (const auto& [key, value] : bias->items()) {
    char* end = nullptr;
    const long long id = std::strtoll(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || id < 0 || id > std::numeric_limits<int32_t>::max() || !value.is_number() ||
        !std::isfinite(value.get<double>()) || value.get<double>() < -100.0 || value.get<double>() > 100.0)
      return r.fail("logit_bias", std::string(kAccepted) + " (got \"" + key + "\": " + shown(value) + ")");
    out.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(value.get<double>()));
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

std::variant<OpenAiRequest, ApiError> parse_openai_request(Endpoint endpoint, const nlohmann::ordered_json& body,
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
  if (auto n = r.integer("n", 1, kMaxChoices)) out.n = static_cast<int32_t>(*n);
  const size_t n_prompts = endpoint == Endpoint::kChat ? 1 : out.prompts.size();
  if (n_prompts * static_cast<size_t>(out.n) > static_cast<size_t>(kMaxChoices))
    r.fail("n", strprintf("prompts x n must be at most %d (got %zu x %d)", kMaxChoices, n_prompts, out.n));
  if (endpoint == Endpoint::kChat) {
    read_tools(out, r);
    read_tool_choice(out, r);
    check_strict_tools(out, r);
    out.parallel_tool_calls = r.boolean("parallel_tool_calls").value_or(true);
  } else {
    for (const char* name : {"tools", "tool_choice", "parallel_tool_calls"})
      if (r.get(name)) r.fail(name, strprintf("'%s' is a chat parameter; use /v1/chat/completions", name));
  }
  read_logit_bias(out, r);
  // vLLM's guided_* spellings are known, and refused with the names this server takes.
  for (const char* name : {"json_schema", "guided_json", "guided_grammar", "guided_regex"})
    if (r.get(name))
      r.fail(name, strprintf("'%s' is not supported; send \"response_format\": {\"type\": \"json_schema\", ...} or a "
                             "GBNF \"grammar\"", name));
  for (const char* name : {"functions", "function_call"})
    if (r.get(name)) r.fail(name, strprintf("'%s' is the deprecated form of tools; send 'tools' and 'tool_choice'", name));
  // max_completion_tokens is the newer name and wins when both are sent.
  for (const char* name : {"max_tokens", "max_completion_tokens"})
    if (auto v = r.integer(name, 1, std::numeric_limits<int32_t>::max())) out.max_tokens = static_cast<int32_t>(*v);
  read_sampling(out, r);
  read_constraint(out, r);
  if (out.sampling.grammar && (out.tool_choice == ToolChoiceMode::kRequired || out.tool_choice == ToolChoiceMode::kNamed))
    r.fail(r.get("grammar") ? "grammar" : "response_format",
           "a forced tool call (tool_choice \"required\" or a named function) is generated under its function's schema; "
           "it cannot also follow 'response_format' or 'grammar'");
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
