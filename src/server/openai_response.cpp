#include "server/openai_response.h"

namespace fathom::server {

namespace {

using nlohmann::json;

json byte_array(const std::string& s) {
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(static_cast<int>(c));
  return bytes;
}

const char* object_name(Endpoint e, bool chunk) {
  if (e == Endpoint::kCompletions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

json chunk_base(const ResponseMeta& meta) {
  json c = {{"id", meta.id}, {"object", object_name(meta.endpoint, true)}, {"created", meta.created},
            {"model", meta.model}, {"system_fingerprint", "fathom"}, {"choices", json::array()}};
  if (meta.include_usage) c["usage"] = nullptr;
  return c;
}

}  // namespace

bool prompt_ends_in_reasoning(const std::string& rendered_prompt) {
  const size_t open = rendered_prompt.rfind("<think>");
  if (open == std::string::npos) return false;
  // Only whitespace may follow the last <think>; a closed block ("<think>\n\n</think>") does not count.
  return rendered_prompt.find_first_not_of(" \t\r\n", open + 7) == std::string::npos;
}

namespace {

// Bits of a 64-bit hash as 24 characters of [0-9a-zA-Z], like OpenAI's call ids.
std::string call_id(uint64_t seed, size_t index) {
  static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * (index + 1));
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) {
    if (i % 8 == 0) {  // splitmix64 step: a fresh 64 bits per 8 characters
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      x = z ^ (z >> 31);
    }
    id += kAlphabet[(x >> ((i % 8) * 8)) % 62];
  }
  return id;
}

// A call is at most this long (larger text that opens like one is returned as content).
constexpr size_t kMaxToolCallBytes = 256 << 10;

}  // namespace

ChoiceBuilder::ChoiceBuilder(const Tokenizer& tokenizer, const Options& options)
    : tokenizer_(tokenizer), options_(options) {
  // The splitter also runs when reasoning stays inline: it counts reasoning tokens.
  if (options.endpoint == Endpoint::kChat) splitter_.emplace(options.starts_in_reasoning);
  if (options.tool_format != ToolCallFormat::kNone) {
    tool_parser_.emplace(options.tool_format, kMaxToolCallBytes, options.tool_names, options.max_tool_calls);
    if (!options.forced_call_prefix.empty()) tool_parser_->begin_forced(options.forced_call_prefix, options.forced_call_name);
  }
  if (options.endpoint == Endpoint::kCompletions && options.logprobs)
    legacy_logprobs_ = {{"tokens", json::array()}, {"token_logprobs", json::array()},
                        {"top_logprobs", json::array()}, {"text_offset", json::array()}};
}

// TokenEvent documents its list as the chosen token followed by the top n; an engine that
// sends only the top n is handled too (the list length tells which), with the chosen token's
// value looked up among them, or OpenAI's -9999 placeholder when it is not there.
ChoiceBuilder::TokenChoice ChoiceBuilder::split_logprobs(const TokenEvent& event) const {
  const std::vector<TokenLogprob>& list = event.top_logprobs;
  TokenChoice t;
  size_t first_alternative = 0;
  if (static_cast<int32_t>(list.size()) == options_.engine_logprobs + 1 && list[0].token == event.token) {
    t.chosen = list[0];
    first_alternative = 1;
  } else {
    t.chosen = {event.token, -9999.0f};
    for (const TokenLogprob& l : list)
      if (l.token == event.token) {
        t.chosen = l;
        break;
      }
  }
  for (size_t i = first_alternative; i < list.size() && static_cast<int32_t>(t.alternatives.size()) < options_.top_logprobs; ++i)
    t.alternatives.push_back(list[i]);
  return t;
}

json ChoiceBuilder::chat_entry(const TokenChoice& t) const {
  auto one = [&](const TokenLogprob& l) {
    const std::string piece = tokenizer_.token_to_piece(l.token, /*render_special=*/true);
    return json{{"token", piece}, {"logprob", l.logprob}, {"bytes", byte_array(piece)}};
  };
  json entry = one(t.chosen);
  json alternatives = json::array();
  for (const TokenLogprob& l : t.alternatives) alternatives.push_back(one(l));
  entry["top_logprobs"] = std::move(alternatives);
  return entry;
}

json ChoiceBuilder::legacy_entry(const TokenChoice& t) {
  const std::string piece = tokenizer_.token_to_piece(t.chosen.token, /*render_special=*/true);
  json alternatives = json::object();
  for (const TokenLogprob& l : t.alternatives) alternatives[tokenizer_.token_to_piece(l.token, true)] = l.logprob;
  json entry = {{"tokens", json::array({piece})}, {"token_logprobs", json::array({t.chosen.logprob})},
                {"top_logprobs", json::array({std::move(alternatives)})}, {"text_offset", json::array({text_offset_})}};
  text_offset_ += static_cast<int64_t>(piece.size());
  return entry;
}

ChoiceBuilder::Delta ChoiceBuilder::push(const TokenEvent& event) {
  Delta d;
  if (splitter_) {
    const bool was_reasoning = splitter_->in_reasoning();
    ReasoningSplitter::Delta s = splitter_->push(event.text);
    if (event.finished) {
      ReasoningSplitter::Delta rest = splitter_->flush();
      s.reasoning += rest.reasoning;
      s.content += rest.content;
    }
    // The opening tag's token ends inside the block, the closing tag's starts there.
    if (event.token >= 0 && (was_reasoning || splitter_->in_reasoning())) ++reasoning_tokens_;
    if (options_.split_reasoning) {
      d.content = std::move(s.content);
      d.reasoning = std::move(s.reasoning);
      // DeepSeek writes "<think>\n...\n</think>\n\nanswer"; the newlines around the tags are
      // layout, not text (DeepSeek's own API returns both fields without them).
      if (reasoning_.empty()) d.reasoning.erase(0, d.reasoning.find_first_not_of('\n'));
      if (!answer_started_ && (options_.starts_in_reasoning || !reasoning_.empty() || !d.reasoning.empty()))
        d.content.erase(0, d.content.find_first_not_of('\n'));
      answer_started_ = answer_started_ || !d.content.empty();
    } else {
      d.content = event.text;
    }
  } else {
    d.content = event.text;
  }
  if (tool_parser_) {
    ToolCallParser::Output out = tool_parser_->push(d.content);
    if (event.finished) {
      ToolCallParser::Output rest = tool_parser_->finish();
      out.content += rest.content;
      for (auto& c : rest.calls) out.calls.push_back(std::move(c));
    }
    d.content = std::move(out.content);
    for (ToolCallParser::Call& c : out.calls) {
      const size_t index = tool_calls_.size();
      tool_calls_.push_back({index, call_id(options_.call_id_seed, index), std::move(c.name), std::move(c.arguments)});
      d.tool_calls.push_back(tool_calls_.back());
    }
  }
  content_ += d.content;
  reasoning_ += d.reasoning;
  if (options_.logprobs && event.token >= 0 && !event.top_logprobs.empty()) {
    if (options_.endpoint == Endpoint::kChat) {
      json entry = chat_entry(split_logprobs(event));
      chat_logprobs_.push_back(entry);
      d.logprobs = {{"content", json::array({std::move(entry)})}};
    } else {
      json entry = legacy_entry(split_logprobs(event));
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
        legacy_logprobs_[key].push_back(entry[key][0]);
      d.logprobs = std::move(entry);
    }
  }
  if (event.finished) {
    finished_ = true;
    reason_ = event.reason;
    status_ = event.status;
    stats_ = event.stats;
  }
  return d;
}

json ChoiceBuilder::logprobs_json() const {
  if (!options_.logprobs) return nullptr;
  if (options_.endpoint == Endpoint::kChat) return {{"content", chat_logprobs_}};
  return legacy_logprobs_;
}

const char* ChoiceBuilder::finish_reason_text() const {
  if (reason_ == FinishReason::kStop && !tool_calls_.empty()) return "tool_calls";
  return finish_reason_string(reason_);
}

const char* finish_reason_string(FinishReason reason) {
  return reason == FinishReason::kLength ? "length" : "stop";
}

json usage_json(const Usage& usage) {
  json u = {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.completion_tokens},
            {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
            {"completion_tokens_details", {{"reasoning_tokens", usage.reasoning_tokens}}}};
  if (usage.context_shifts > 0) u["context_shifts"] = usage.context_shifts;  // an extension, only when it happened
  return u;
}

namespace {

json tool_calls_json(const std::vector<ApiToolCall>& calls) {
  json list = json::array();
  for (const ApiToolCall& c : calls)
    list.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return list;
}

}  // namespace

json completion_body(const ResponseMeta& meta, const std::vector<ChoiceBuilder>& choices, const Usage& usage) {
  json body = {{"id", meta.id}, {"object", object_name(meta.endpoint, false)}, {"created", meta.created},
               {"model", meta.model}, {"system_fingerprint", "fathom"}, {"choices", json::array()}};
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceBuilder& c = choices[i];
    json choice = {{"index", i}, {"logprobs", c.logprobs_json()}, {"finish_reason", c.finish_reason_text()}};
    if (meta.endpoint == Endpoint::kChat) {
      json message = {{"role", "assistant"}, {"content", c.content()}};
      if (c.has_reasoning()) message["reasoning_content"] = c.reasoning();
      if (!c.tool_calls().empty()) {
        message["tool_calls"] = tool_calls_json(c.tool_calls());
        if (c.content().empty()) message["content"] = nullptr;  // OpenAI's shape for a turn of calls only
      }
      choice["message"] = std::move(message);
    } else {
      choice["text"] = c.content();
    }
    body["choices"].push_back(std::move(choice));
  }
  body["usage"] = usage_json(usage);
  return body;
}

json role_chunk(const ResponseMeta& meta, size_t index) {
  json c = chunk_base(meta);
  c["choices"].push_back({{"index", index}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                          {"logprobs", nullptr}, {"finish_reason", nullptr}});
  return c;
}

json delta_chunk(const ResponseMeta& meta, size_t index, const ChoiceBuilder::Delta& delta) {
  json c = chunk_base(meta);
  json choice = {{"index", index}, {"logprobs", delta.logprobs}, {"finish_reason", nullptr}};
  if (meta.endpoint == Endpoint::kChat) {
    json d = json::object();
    if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
    if (!delta.content.empty() || delta.reasoning.empty()) d["content"] = delta.content;
    choice["delta"] = std::move(d);
  } else {
    choice["text"] = delta.content;
  }
  c["choices"].push_back(std::move(choice));
  return c;
}

std::vector<json> delta_chunks(const ResponseMeta& meta, size_t index, const ChoiceBuilder::Delta& delta) {
  std::vector<json> chunks;
  if (!delta.content.empty() || !delta.reasoning.empty() || !delta.logprobs.is_null() || delta.tool_calls.empty()) {
    ChoiceBuilder::Delta text = delta;
    text.tool_calls.clear();
    chunks.push_back(delta_chunk(meta, index, text));
  }
  for (const ApiToolCall& call : delta.tool_calls) {
    for (bool header : {true, false}) {
      json entry = header ? json{{"index", call.index}, {"id", call.id}, {"type", "function"},
                                 {"function", {{"name", call.name}, {"arguments", ""}}}}
                          : json{{"index", call.index}, {"function", {{"arguments", call.arguments}}}};
      json c = chunk_base(meta);
      c["choices"].push_back({{"index", index}, {"delta", {{"tool_calls", json::array({std::move(entry)})}}},
                              {"logprobs", nullptr}, {"finish_reason", nullptr}});
      chunks.push_back(std::move(c));
    }
  }
  return chunks;
}

json finish_chunk(const ResponseMeta& meta, size_t index, FinishReason reason) {
  return finish_chunk(meta, index, std::string(finish_reason_string(reason)));
}

json finish_chunk(const ResponseMeta& meta, size_t index, const std::string& finish_reason) {
  json c = chunk_base(meta);
  json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  if (meta.endpoint == Endpoint::kChat) choice["delta"] = json::object();
  else choice["text"] = "";
  c["choices"].push_back(std::move(choice));
  return c;
}

json usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  json c = chunk_base(meta);
  c["usage"] = usage_json(usage);
  return c;
}

std::string json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& data) { return "data: " + json_text(data) + "\n\n"; }

}  // namespace fathom::server
