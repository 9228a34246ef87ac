#include "loadgen/sse.h"

#include <nlohmann/json.hpp>

namespace fathom::loadgen {

void SseParser::feed(std::string_view bytes, std::vector<std::string>& events) {
  for (char c : bytes) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') continue;  // the \n of a \r\n pair: the line already ended at \r
    }
    if (c == '\n' || c == '\r') {
      pending_cr_ = c == '\r';
      line(partial_line_, events);
      partial_line_.clear();
      continue;
    }
    partial_line_.push_back(c);
  }
}

std::string SseParser::finish() {
  std::vector<std::string> events;
  if (!partial_line_.empty()) line(partial_line_, events);
  partial_line_.clear();
  std::string data = has_data_ ? data_ : std::string();
  data_.clear();
  has_data_ = false;
  return data;
}

void SseParser::line(std::string_view text, std::vector<std::string>& events) {
  if (text.empty()) {
    if (has_data_) events.push_back(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (text.front() == ':') return;  // comment (servers send these as keep-alives)
  const size_t colon = text.find(':');
  const std::string_view field = text.substr(0, colon);
  if (field != "data") return;  // event:, id:, retry: carry nothing a load test needs
  std::string_view value = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

namespace {

void read_usage(const nlohmann::json& j, StreamChunk& out) {
  const auto usage = j.find("usage");
  if (usage == j.end() || !usage->is_object()) return;
  if (auto p = usage->find("prompt_tokens"); p != usage->end() && p->is_number_integer()) out.prompt_tokens = p->get<int64_t>();
  if (auto c = usage->find("completion_tokens"); c != usage->end() && c->is_number_integer())
    out.completion_tokens = c->get<int64_t>();
}

// Text of a choice in either shape: chat delta (content, or DeepSeek's reasoning_content, which
// is generated tokens too) or completions text.
std::string choice_text(const nlohmann::json& choice) {
  std::string text;
  if (auto d = choice.find("delta"); d != choice.end() && d->is_object()) {
    for (const char* key : {"reasoning_content", "content"})
      if (auto t = d->find(key); t != d->end() && t->is_string()) text += t->get<std::string>();
  }
  if (auto t = choice.find("text"); t != choice.end() && t->is_string()) text += t->get<std::string>();
  return text;
}

}  // namespace

StreamChunk interpret_chunk(std::string_view data, bool chat) {
  StreamChunk out;
  std::string_view trimmed = data;
  while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\n')) trimmed.remove_suffix(1);
  if (trimmed == "[DONE]") {
    out.type = StreamChunk::Type::kDone;
    return out;
  }
  const nlohmann::json j = nlohmann::json::parse(trimmed, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    out.type = StreamChunk::Type::kMalformed;
    out.message = "event data is not a JSON object: '" + std::string(trimmed.substr(0, 80)) + "'";
    return out;
  }
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    out.type = StreamChunk::Type::kError;
    const auto m = e->is_object() ? e->find("message") : e->end();
    out.message = m != e->end() && m->is_string() ? m->get<std::string>() : e->dump();
    return out;
  }
  read_usage(j, out);
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array()) {
    if (out.completion_tokens >= 0 || out.prompt_tokens >= 0) return out;  // usage-only chunk
    out.type = StreamChunk::Type::kMalformed;
    out.message = std::string("chunk has no \"choices\" array (expected a ") +
                  (chat ? "chat.completion.chunk" : "text_completion") + " object)";
    return out;
  }
  for (const auto& choice : *choices) {
    if (!choice.is_object()) {
      out.type = StreamChunk::Type::kMalformed;
      out.message = "a choice is not an object";
      return out;
    }
    out.text += choice_text(choice);
    if (auto f = choice.find("finish_reason"); f != choice.end() && !f->is_null()) out.finished = true;
  }
  if (!out.text.empty()) out.type = StreamChunk::Type::kContent;
  return out;
}

}  // namespace fathom::loadgen
