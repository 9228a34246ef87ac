#include "tokenizer/tool_calls.h"

#include <algorithm>
#include <cstring>
#include <regex>

namespace fathom {

namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kDeepSeekCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDeepSeekCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDeepSeekCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDeepSeekCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDeepSeekSep = "<｜tool▁sep｜>";
constexpr std::string_view kQwenCallBegin = "<tool_call>";
constexpr std::string_view kQwenCallEnd = "</tool_call>";
constexpr std::string_view kDsmlFunctionCalls = "<｜DSML｜function_calls>";
constexpr std::string_view kDsmlFunctionCallsEnd = "</｜DSML｜function_calls>";
constexpr std::string_view kDsmlToolCalls = "<｜DSML｜tool_calls>";
constexpr std::string_view kDsmlToolCallsEnd = "</｜DSML｜tool_calls>";
constexpr std::string_view kDsmlInvoke = "<｜DSML｜invoke";
constexpr std::string_view kDsmlInvokeEnd = "</｜DSML｜invoke>";
constexpr std::string_view kDsmlParameter = "<｜DSML｜parameter name=\"";
constexpr std::string_view kDsmlParameterEnd = "</｜DSML｜parameter>";
constexpr const char* kWhitespace = " \t\r\n";

std::string trim(std::string_view s) {
  const size_t first = s.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return "";
  const size_t last = s.find_last_not_of(kWhitespace);
  return std::string(s.substr(first, last - first + 1));
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// `s` is a proper, non-empty beginning of `marker`: the rest may still arrive.
bool may_become(std::string_view s, std::string_view marker) {
  return !s.empty() && s.size() < marker.size() && starts_with(marker, s);
}

// Length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

// OpenAI's rule for function names, plus '.' and ':' which some tool sets use.
bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':';
  });
}

bool is_json_object(const std::string& text) {
  const ojson v = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_object();
}

// ARGS as R1 writes them: "```json\n{...}\n```"; the fences are optional.
std::string strip_code_fence(std::string_view text) {
  std::string s = trim(text);
  if (starts_with(s, "```json")) s.erase(0, 7);
  else if (starts_with(s, "```")) s.erase(0, 3);
  s = trim(s);
  if (s.size() >= 3 && s.compare(s.size() - 3, 3, "```") == 0) s.erase(s.size() - 3);
  return trim(s);
}

// A DSML invoke body: returns the name, and sets `arguments` to the parameters as a JSON object
// (nullopt when the body is malformed; when lenient, the parameters read before the problem).
std::string parse_dsml_invoke(const std::string& body, bool lenient, std::optional<std::string>& arguments) {
  arguments.reset();
  std::string_view rest = body;
  const size_t name_at = rest.find("name=\"");
  const size_t name_end = name_at == std::string_view::npos ? name_at : rest.find('"', name_at + 6);
  if (name_at == std::string_view::npos || name_end == std::string_view::npos ||
      trim(rest.substr(0, name_at)) != "" || rest.substr(name_end + 1, 1) != ">") {
    if (lenient) arguments = "{}";
    return "";
  }
  const std::string name(rest.substr(name_at + 6, name_end - name_at - 6));
  rest.remove_prefix(name_end + 2);
  ojson object = ojson::object();
  for (;;) {
    const size_t next = rest.find_first_not_of(kWhitespace);
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next);
    const size_t key_end = starts_with(rest, kDsmlParameter) ? rest.find('"', kDsmlParameter.size()) : std::string_view::npos;
    const size_t open_end = key_end == std::string_view::npos ? key_end : rest.find('>', key_end);
    const size_t value_end = open_end == std::string_view::npos ? open_end : rest.find(kDsmlParameterEnd, open_end);
    if (value_end == std::string_view::npos) {
      if (lenient) arguments = object.dump();
      return name;
    }
    const std::string key(rest.substr(kDsmlParameter.size(), key_end - kDsmlParameter.size()));
    const std::string attributes = trim(rest.substr(key_end + 1, open_end - key_end - 1));
    const std::string value(rest.substr(open_end + 1, value_end - open_end - 1));
    if (attributes == "string=\"true\"") {
      object[key] = value;
    } else if (attributes == "string=\"false\"") {
      ojson parsed = ojson::parse(value, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) {
        if (lenient) arguments = object.dump();
        return name;
      }
      object[key] = std::move(parsed);
    } else {
      if (lenient) arguments = object.dump();
      return name;
    }
    rest.remove_prefix(value_end + kDsmlParameterEnd.size());
  }
  arguments = object.dump();
  return name;
}

bool prompt_ends_in_think(const std::string& prompt) {
  const size_t open = prompt.rfind("<think>");
  if (open == std::string::npos) return false;
  return prompt.find_first_not_of(kWhitespace, open + 7) == std::string::npos;
}

}  // namespace

const char* tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kNone: return "none";
    case ToolCallFormat::kDeepSeekR1: return "deepseek-r1";
    case ToolCallFormat::kDeepSeekV31: return "deepseek-v3.1";
    case ToolCallFormat::kQwen: return "qwen2.5";
    case ToolCallFormat::kDsmlV32: return "deepseek-v3.2-dsml";
    case ToolCallFormat::kDsmlV4: return "deepseek-v4-dsml";
  }
  return "?";
}

ToolCallFormat detect_tool_call_format(const std::string& source) {
  if (source.find(kDeepSeekSep) != std::string::npos)
    return source.find("```json") != std::string::npos ? ToolCallFormat::kDeepSeekR1 : ToolCallFormat::kDeepSeekV31;
  if (source.find(kQwenCallBegin) != std::string::npos) return ToolCallFormat::kQwen;
  if (source.find("DSML") != std::string::npos)
    return source.find("function_calls>") != std::string::npos ? ToolCallFormat::kDsmlV32 : ToolCallFormat::kDsmlV4;
  return ToolCallFormat::kNone;
}

bool template_takes_object_arguments(const std::string& source) {
  static const std::regex kToJson(R"(arguments['"]?\]?\s*\|\s*tojson)");
  return source.find("from_json") != std::string::npos || std::regex_search(source, kToJson);
}

ojson chat_messages_json(const std::vector<ChatTurn>& turns, bool object_arguments) {
  ojson list = ojson::array();
  for (const ChatTurn& t : turns) {
    ojson m = {{"role", t.message.role}};
    m["content"] = t.content_null ? ojson(nullptr) : ojson(t.message.content);
    // Templates test `'reasoning_content' in message`; an absent field reads as an empty one.
    if (!t.message.reasoning_content.empty()) m["reasoning_content"] = t.message.reasoning_content;
    if (!t.tool_calls.empty()) {
      ojson calls = ojson::array();
      for (const ToolCall& c : t.tool_calls) {
        // Arguments were checked to be a JSON object when the request was read.
        ojson arguments = object_arguments ? ojson::parse(c.arguments, nullptr, false) : ojson(c.arguments);
        calls.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", std::move(arguments)}}}});
      }
      m["tool_calls"] = std::move(calls);
    }
    if (!t.tool_call_id.empty()) m["tool_call_id"] = t.tool_call_id;
    list.push_back(std::move(m));
  }
  return list;
}

std::string forced_call_prefix(ToolCallFormat format, const std::string& rendered_prompt, const std::string& name) {
  std::string p;
  switch (format) {
    case ToolCallFormat::kDeepSeekR1:
      // R1 answers after "</think>\n\n"; a call is an answer.
      if (prompt_ends_in_think(rendered_prompt)) p = "</think>\n\n";
      p += std::string(kDeepSeekCallsBegin) + std::string(kDeepSeekCallBegin) + "function" + std::string(kDeepSeekSep);
      if (!name.empty()) p += name + "\n```json\n";
      return p;
    case ToolCallFormat::kDeepSeekV31:
      if (prompt_ends_in_think(rendered_prompt)) p = "</think>";
      p += std::string(kDeepSeekCallsBegin) + std::string(kDeepSeekCallBegin);
      if (!name.empty()) p += name + std::string(kDeepSeekSep);
      return p;
    case ToolCallFormat::kQwen:
      p = std::string(kQwenCallBegin) + "\n{\"name\": \"";
      if (!name.empty()) p += name + "\", \"arguments\": ";
      return p;
    case ToolCallFormat::kDsmlV32:
    case ToolCallFormat::kDsmlV4:
      if (prompt_ends_in_think(rendered_prompt)) p = "</think>";
      p += "\n\n" + std::string(format == ToolCallFormat::kDsmlV32 ? kDsmlFunctionCalls : kDsmlToolCalls) + "\n" +
           std::string(kDsmlInvoke) + " name=\"";
      if (!name.empty()) p += name + "\">\n";
      return p;
    case ToolCallFormat::kNone:
      return "";
  }
  return "";
}

ToolCallParser::ToolCallParser(ToolCallFormat format, size_t max_call_bytes, std::vector<std::string> tool_names,
                               size_t max_calls)
    : format_(format), max_call_bytes_(max_call_bytes), tool_names_(std::move(tool_names)), max_calls_(max_calls) {
  switch (format) {
    case ToolCallFormat::kDeepSeekR1:
    case ToolCallFormat::kDeepSeekV31:
      block_begin_ = kDeepSeekCallsBegin;
      block_end_ = kDeepSeekCallsEnd;
      call_begin_ = kDeepSeekCallBegin;
      call_end_ = kDeepSeekCallEnd;
      break;
    case ToolCallFormat::kQwen:
      call_begin_ = kQwenCallBegin;
      call_end_ = kQwenCallEnd;
      break;
    case ToolCallFormat::kDsmlV32:
    case ToolCallFormat::kDsmlV4:
      block_begin_ = format == ToolCallFormat::kDsmlV32 ? kDsmlFunctionCalls : kDsmlToolCalls;
      block_end_ = format == ToolCallFormat::kDsmlV32 ? kDsmlFunctionCallsEnd : kDsmlToolCallsEnd;
      call_begin_ = kDsmlInvoke;
      call_end_ = kDsmlInvokeEnd;
      break;
    case ToolCallFormat::kNone:
      break;  // no markers: everything is content
  }
}

void ToolCallParser::begin_forced(const std::string& prefix, const std::string& name) {
  if (call_begin_.empty()) return;
  const std::string& opener = block_begin_.empty() ? call_begin_ : block_begin_;
  const size_t at = prefix.find(opener);
  if (at == std::string::npos) return;
  forced_ = true;
  forced_name_ = name;
  pending_ = prefix.substr(at);
  Output ignored;  // the prefix holds an unfinished call: nothing comes out
  step(ignored);
}

ToolCallParser::Output ToolCallParser::push(std::string_view text) {
  Output out;
  if (call_begin_.empty()) {
    out.content = std::string(text);
    return out;
  }
  pending_.append(text);
  step(out);
  return out;
}

void ToolCallParser::step(Output& out) {
  for (;;) {
    switch (state_) {
      case State::kText: {
        const std::string& opener = block_begin_.empty() ? call_begin_ : block_begin_;
        const size_t hit = pending_.find(opener);
        // Whitespace is held too: the newlines a model writes before its calls are layout
        // (V3.2 and V4 put "\n\n" there), dropped when a call follows.
        if (hit == std::string::npos) {
          size_t keep = partial_marker_suffix(pending_, opener);
          while (keep < pending_.size() && std::strchr(kWhitespace, pending_[pending_.size() - keep - 1])) ++keep;
          out.content.append(pending_, 0, pending_.size() - keep);
          pending_.erase(0, pending_.size() - keep);
          return;
        }
        size_t text_end = hit;  // the whitespace before the opener goes with it (text again if the call fails)
        while (text_end > 0 && std::strchr(kWhitespace, pending_[text_end - 1])) --text_end;
        out.content.append(pending_, 0, text_end);
        unresolved_ = pending_.substr(text_end, hit - text_end) + opener;
        pending_.erase(0, hit + opener.size());
        calls_in_block_ = 0;
        state_ = block_begin_.empty() ? State::kCall : State::kBlock;
        continue;
      }
      case State::kBlock: {
        const size_t text_at = std::min(pending_.find_first_not_of(kWhitespace), pending_.size());
        unresolved_.append(pending_, 0, text_at);
        pending_.erase(0, text_at);
        if (pending_.empty()) return;
        if (starts_with(pending_, call_begin_)) {
          unresolved_ += call_begin_;
          pending_.erase(0, call_begin_.size());
          state_ = State::kCall;
          continue;
        }
        if (starts_with(pending_, block_end_)) {
          pending_.erase(0, block_end_.size());
          unresolved_.clear();
          state_ = State::kAfterCalls;
          continue;
        }
        if (may_become(pending_, call_begin_) || may_become(pending_, block_end_)) return;
        // Not a call after all: the markers read so far were text.
        out.content += unresolved_;
        unresolved_.clear();
        state_ = State::kText;
        continue;
      }
      case State::kCall: {
        const size_t hit = pending_.find(call_end_);
        if (hit == std::string::npos) {
          if (!forced_ && pending_.size() > max_call_bytes_) {
            // Too long to be a call. The cut is at a fixed byte (moved past a UTF-8
            // continuation), so the outcome does not depend on how the text arrived.
            size_t cut = max_call_bytes_;
            while (cut < pending_.size() && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) ++cut;
            out.content += unresolved_;
            out.content.append(pending_, 0, cut);
            pending_.erase(0, cut);
            unresolved_.clear();
            state_ = State::kText;
            continue;
          }
          return;
        }
        const std::string body = pending_.substr(0, hit);
        pending_.erase(0, hit + call_end_.size());
        std::optional<Call> call = parse_body(body, forced_);
        forced_ = false;  // only the call the prompt opened is forced
        forced_name_.clear();
        if (!call) {
          out.content += unresolved_ + body + call_end_;
          unresolved_.clear();
          state_ = State::kText;
          continue;
        }
        emit(out, std::move(*call));
        ++calls_in_block_;
        unresolved_.clear();
        state_ = block_begin_.empty() ? State::kAfterCalls : State::kBlock;
        continue;
      }
      case State::kAfterCalls: {
        // The newlines a model writes after its calls are layout, not an answer.
        const size_t text_at = pending_.find_first_not_of(kWhitespace);
        if (text_at == std::string::npos) {
          pending_.clear();
          return;
        }
        pending_.erase(0, text_at);
        state_ = State::kText;
        continue;
      }
    }
  }
}

ToolCallParser::Output ToolCallParser::finish() {
  Output out;
  switch (state_) {
    case State::kText:
      out.content = pending_;
      break;
    case State::kBlock: {
      // After complete calls, a missing end marker (or the start of one) is tolerated.
      const std::string rest = trim(pending_);
      if (calls_in_block_ == 0 || !(rest.empty() || may_become(rest, block_end_))) out.content = unresolved_ + pending_;
      break;
    }
    case State::kCall:
      if (forced_) {
        std::string body = pending_;
        body.erase(body.size() - partial_marker_suffix(body, call_end_));
        if (std::optional<Call> call = parse_body(body, /*lenient=*/true)) emit(out, std::move(*call));
      } else {
        out.content = unresolved_ + pending_;
      }
      break;
    case State::kAfterCalls:
      break;
  }
  pending_.clear();
  unresolved_.clear();
  forced_ = false;
  state_ = State::kText;
  return out;
}

void ToolCallParser::emit(Output& out, Call call) {
  if (n_calls_++ < max_calls_) out.calls.push_back(std::move(call));
}

std::optional<ToolCallParser::Call> ToolCallParser::parse_body(const std::string& body, bool lenient) const {
  Call call;
  switch (format_) {
    case ToolCallFormat::kDeepSeekR1:
    case ToolCallFormat::kDeepSeekV31: {
      const size_t sep = body.find(kDeepSeekSep);
      if (sep == std::string::npos) {
        if (!lenient) return std::nullopt;
        call.name = forced_name_.empty() ? trim(body) : forced_name_;
        break;
      }
      const std::string before = body.substr(0, sep);
      const std::string after = body.substr(sep + kDeepSeekSep.size());
      if (format_ == ToolCallFormat::kDeepSeekR1) {
        // function<｜tool▁sep｜>NAME\n```json\nARGS\n```
        if (!lenient && trim(before) != "function") return std::nullopt;
        const size_t newline = after.find('\n');
        call.name = trim(after.substr(0, newline));
        call.arguments = newline == std::string::npos ? "" : strip_code_fence(after.substr(newline + 1));
      } else {
        // NAME<｜tool▁sep｜>ARGS
        call.name = trim(before);
        call.arguments = strip_code_fence(after);
      }
      break;
    }
    case ToolCallFormat::kQwen: {
      // \n{"name": NAME, "arguments": {...}}\n
      const ojson v = ojson::parse(trim(body), nullptr, /*allow_exceptions=*/false);
      const auto name = v.is_object() ? v.find("name") : v.end();
      const auto arguments = v.is_object() ? v.find("arguments") : v.end();
      if (name != v.end() && name->is_string() && arguments != v.end()) {
        call.name = name->get<std::string>();
        if (arguments->is_string() && is_json_object(arguments->get<std::string>())) call.arguments = arguments->get<std::string>();
        else call.arguments = arguments->dump();
        break;
      }
      if (!lenient) return std::nullopt;
      // The name's string, and the text after "arguments": up to the brace closing the wrapper.
      call.name = forced_name_;
      if (const size_t name_key = body.find("\"name\""); call.name.empty() && name_key != std::string::npos) {
        const size_t open = body.find('"', body.find(':', name_key));
        const size_t close = open == std::string::npos ? open : body.find('"', open + 1);
        if (close != std::string::npos) call.name = body.substr(open + 1, close - open - 1);
      }
      const size_t key = body.find("\"arguments\"");
      if (key != std::string::npos) {
        std::string rest = body.substr(key + 11);
        const size_t colon = rest.find(':');
        rest = trim(colon == std::string::npos ? rest : rest.substr(colon + 1));
        if (!rest.empty() && rest.back() == '}') rest.pop_back();
        call.arguments = trim(rest);
      }
      break;
    }
    case ToolCallFormat::kDsmlV32:
    case ToolCallFormat::kDsmlV4: {
      // ␣name="NAME">\n then <｜DSML｜parameter name="KEY" string="true|false">VALUE</｜DSML｜parameter>, ...
      std::optional<std::string> arguments;
      call.name = parse_dsml_invoke(body, lenient, arguments);
      if (!arguments) return std::nullopt;
      call.arguments = std::move(*arguments);
      break;
    }
    case ToolCallFormat::kNone:
      return std::nullopt;
  }
  if (lenient) {
    if (!forced_name_.empty()) call.name = forced_name_;
    return call;
  }
  if (!valid_name(call.name) || !is_json_object(call.arguments)) return std::nullopt;
  if (!tool_names_.empty() && std::find(tool_names_.begin(), tool_names_.end(), call.name) == tool_names_.end())
    return std::nullopt;  // a function nobody offered: text that looks like a call
  return call;
}

ForcedCallFrame forced_call_frame(ToolCallFormat format, const std::string& name, bool name_in_prefix) {
  ForcedCallFrame f;
  switch (format) {
    case ToolCallFormat::kDeepSeekR1:
      if (!name_in_prefix) f.before_arguments = name + "\n```json\n";
      f.after_arguments = "\n```" + std::string(kDeepSeekCallEnd) + std::string(kDeepSeekCallsEnd);
      break;
    case ToolCallFormat::kDeepSeekV31:
      if (!name_in_prefix) f.before_arguments = name + std::string(kDeepSeekSep);
      f.after_arguments = std::string(kDeepSeekCallEnd) + std::string(kDeepSeekCallsEnd);
      break;
    case ToolCallFormat::kQwen:
      if (!name_in_prefix) f.before_arguments = name + "\", \"arguments\": ";
      f.after_arguments = "}\n" + std::string(kQwenCallEnd);  // the wrapper object's brace
      break;
    case ToolCallFormat::kDsmlV32:
    case ToolCallFormat::kDsmlV4:
      if (!name_in_prefix) f.before_arguments = name + "\">\n";
      f.after_arguments = std::string(kDsmlInvokeEnd) + "\n" +
                          std::string(format == ToolCallFormat::kDsmlV32 ? kDsmlFunctionCallsEnd : kDsmlToolCallsEnd);
      f.dsml_arguments = true;
      break;
    case ToolCallFormat::kNone:
      break;
  }
  return f;
}

}  // namespace fathom
