#include "tokenizer/chat_template.h"

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_parser.h"

namespace fathom {

namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

Expected<std::string> render_value(const std::string& source, const jinja::Value& context, bool hf_chat_mode) {
  jinja::LexOptions options;
  options.trim_blocks = hf_chat_mode;
  options.lstrip_blocks = hf_chat_mode;
  auto tmpl = jinja::parse_template(source, options);
  if (!tmpl) return Status(tmpl.status().code(), "chat template: " + tmpl.status().message());
  auto rendered = jinja::render(**tmpl, context);
  if (!rendered) return Status(rendered.status().code(), "chat template: " + rendered.status().message());
  return rendered;
}

// Whether `json` nests at most `levels` arrays and objects. Stops descending past the limit, so
// its own recursion stays bounded.
template <typename Json>
bool within_depth(const Json& json, int levels) {
  if (!json.is_structured()) return true;
  if (levels == 0) return false;
  for (const auto& item : json) {
    if (!within_depth(item, levels - 1)) return false;
  }
  return true;
}

// Converts the caller's context; a context deeper than the template values may be is refused
// before the recursive conversion.
template <typename Json>
Expected<jinja::Value> context_value(const Json& context) {
  if (!context.is_object() && !context.is_null()) {
    return error(ErrorCode::kInvalidArgument, "chat template: the context must be a JSON object of variables");
  }
  if (context.is_null()) return jinja::Value::object({});
  if (!within_depth(context, jinja::kMaxValueDepth)) {
    return error(ErrorCode::kInvalidArgument, strprintf("chat template: the context nests arrays and objects deeper "
                                                        "than %d levels",
                                                        jinja::kMaxValueDepth));
  }
  return jinja::Value::from_json(context);
}

// Length of the longest suffix of `text` that is a proper prefix of `tag`: bytes that may be
// the start of a tag completed by the next push.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

Expected<std::string> render_template(const std::string& source, const nlohmann::json& context, bool hf_chat_mode) {
  FATHOM_ASSIGN_OR_RETURN(jinja::Value value, context_value(context));
  return render_value(source, value, hf_chat_mode);
}

Expected<std::string> render_template(const std::string& source, const nlohmann::ordered_json& context,
                                      bool hf_chat_mode) {
  FATHOM_ASSIGN_OR_RETURN(jinja::Value value, context_value(context));
  return render_value(source, value, hf_chat_mode);
}

Expected<std::string> apply_chat_template(const std::string& source, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, const std::string& bos_token,
                                          const std::string& eos_token) {
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& message : messages) {
    nlohmann::ordered_json m = {{"role", message.role}, {"content", message.content}};
    // Templates test `message['reasoning_content'] is defined and ...`; an absent field reads
    // the same as an empty one, so only present reasoning is passed.
    if (!message.reasoning_content.empty()) m["reasoning_content"] = message.reasoning_content;
    list.push_back(std::move(m));
  }
  context["messages"] = std::move(list);
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token;
  context["eos_token"] = eos_token;
  return render_template(source, context, true);
}

ReasoningSplitter::Delta ReasoningSplitter::push(std::string_view text) {
  Delta delta;
  pending_.append(text);
  while (!pending_.empty()) {
    const std::string_view tag = in_reasoning_ ? kThinkClose : kThinkOpen;
    std::string& sink = in_reasoning_ ? delta.reasoning : delta.content;
    const size_t hit = pending_.find(tag);
    if (hit != std::string::npos) {
      sink.append(pending_, 0, hit);
      pending_.erase(0, hit + tag.size());
      in_reasoning_ = !in_reasoning_;
      continue;
    }
    const size_t keep = partial_tag_suffix(pending_, tag);
    sink.append(pending_, 0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    break;
  }
  return delta;
}

ReasoningSplitter::Delta ReasoningSplitter::flush() {
  Delta delta;
  (in_reasoning_ ? delta.reasoning : delta.content) = std::move(pending_);
  pending_.clear();
  return delta;
}

}  // namespace fathom
