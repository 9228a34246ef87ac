#include "loadgen/http_target.h"

#include <httplib.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "loadgen/sse.h"
#include "runtime/engine.h"

namespace fathom::loadgen {

namespace {

// The part of an error body worth printing: servers put a JSON error or an HTML page there.
constexpr size_t kMaxErrorBody = 300;

// Seconds as httplib's (sec, usec) pair.
void set_timeouts(httplib::Client& client, double timeout_s) {
  const auto whole = std::chrono::duration<double>(timeout_s);
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(whole);
  const auto connect = std::min(usec, std::chrono::microseconds(10'000'000));
  client.set_connection_timeout(connect);
  client.set_read_timeout(usec);
  client.set_write_timeout(usec);
}

// Reads one streamed response: turns the body's events into outcome fields as they arrive.
struct StreamReader {
  bool chat = false;                 // chat-completions chunk shape
  double t_deadline = 0;             // absolute time past which the request has timed out
  RequestOutcome* out = nullptr;     // where timings and errors go
  int status = 0;                    // HTTP status, once the headers arrived
  std::string error_body;            // start of a non-2xx body
  SseParser parser;                  // bytes -> event data
  std::vector<std::string> events;   // scratch: events completed by the latest read
  int64_t n_chunks = 0;              // content chunks seen
  int64_t n_events = 0;              // events seen, of any kind
  size_t n_bytes = 0;                // body bytes received
  bool done = false;                 // [DONE] or a finish_reason arrived
  bool timed_out = false;            // we stopped reading at the deadline

  // Returns false to stop reading (a stream error, malformed data or the deadline).
  bool on_data(const char* data, size_t n) {
    const double now = now_seconds();
    if (status < 200 || status >= 300) {
      error_body.append(data, std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
      return true;
    }
    n_bytes += n;
    events.clear();
    parser.feed(std::string_view(data, n), events);
    for (const std::string& e : events)
      if (!on_event(e, now)) return false;
    if (now > t_deadline) {
      timed_out = true;
      return false;
    }
    return true;
  }

  bool on_event(const std::string& data, double now) {
    ++n_events;
    const StreamChunk c = interpret_chunk(data, chat);
    if (c.prompt_tokens >= 0) out->prompt_tokens = c.prompt_tokens;
    if (c.completion_tokens >= 0) out->output_tokens = c.completion_tokens;
    done = done || c.finished;
    switch (c.type) {
      case StreamChunk::Type::kContent:
        if (n_chunks++ == 0) out->t_first_token = now;
        out->chunk_times.push_back(now);
        return true;
      case StreamChunk::Type::kEmpty: return true;
      case StreamChunk::Type::kDone: done = true; return true;
      case StreamChunk::Type::kError:
        out->error = ErrorKind::kStreamError;
        out->error_detail = c.message;
        return false;
      case StreamChunk::Type::kMalformed:
        out->error = ErrorKind::kMalformedStream;
        out->error_detail = c.message;
        return false;
    }
    return true;
  }
};

}  // namespace

Expected<std::unique_ptr<HttpTarget>> HttpTarget::create(const HttpTargetOptions& options) {
  const std::string& url = options.url;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0))
    return error(ErrorCode::kInvalidArgument, "--url '" + url + "': expected http://HOST:PORT/v1");
  const size_t path_start = url.find('/', scheme_end + 3);
  auto t = std::unique_ptr<HttpTarget>(new HttpTarget(options));
  t->origin_ = url.substr(0, path_start);
  t->base_path_ = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!t->base_path_.empty() && t->base_path_.back() == '/') t->base_path_.pop_back();
  if (t->origin_.size() <= scheme_end + 3) return error(ErrorCode::kInvalidArgument, "--url '" + url + "': no host");
  httplib::Client probe(t->origin_);
  if (!probe.is_valid())
    return error(ErrorCode::kInvalidArgument, "--url '" + url + "': cannot make a client for it (https needs TLS support)");
  if (options.timeout_s <= 0) return error(ErrorCode::kInvalidArgument, "--timeout must be positive");
  return t;
}

std::string HttpTarget::describe() const {
  return origin_ + base_path_ + (options_.chat ? " (chat/completions)" : " (completions)");
}

Expected<std::vector<int32_t>> HttpTarget::tokenize(const std::string& text, bool add_special) const {
  httplib::Client client(origin_);
  set_timeouts(client, std::min(options_.timeout_s, 10.0));
  httplib::Headers headers;
  if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
  const nlohmann::json body = {{"content", text}, {"add_special", add_special}};
  auto res = client.Post("/tokenize", headers, body.dump(), "application/json");
  if (!res) return error(ErrorCode::kUnavailable, "POST /tokenize: " + httplib::to_string(res.error()));
  if (res->status != 200) return error(ErrorCode::kUnavailable, strprintf("POST /tokenize: HTTP %d", res->status));
  const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("tokens") || !j["tokens"].is_array())
    return error(ErrorCode::kUnavailable, "POST /tokenize: no \"tokens\" array in the answer");
  std::vector<int32_t> ids;
  for (const nlohmann::json& t : j["tokens"]) {
    if (!t.is_number_integer()) return error(ErrorCode::kUnavailable, "POST /tokenize: a token is not an integer");
    ids.push_back(t.get<int32_t>());
  }
  return ids;
}

std::optional<std::vector<int32_t>> HttpTarget::exact_prompt(const WorkItem& item) {
  if (options_.chat || item.prompt_tokens <= 0 || item.prompt.empty() || no_tokenize_) return std::nullopt;
  if (bos_id_ == -2) {  // "" with the special tokens is [BOS] for models that add one
    auto empty = tokenize("", /*add_special=*/true);
    if (!empty) {
      no_tokenize_ = true;
      return std::nullopt;
    }
    bos_id_ = empty->size() == 1 ? (*empty)[0] : -1;
  }
  auto ids = tokenize(item.prompt, /*add_special=*/true);
  if (!ids || ids->empty()) {
    no_tokenize_ = true;
    return std::nullopt;
  }
  return fit_prompt_length(std::move(*ids), item.prompt_tokens, static_cast<int32_t>(bos_id_.load()));
}

std::string HttpTarget::request_body(const WorkItem& item, const std::optional<std::vector<int32_t>>& prompt_ids) const {
  nlohmann::json body;
  if (!options_.model.empty()) body["model"] = options_.model;
  if (options_.chat) {
    body["messages"] = item.messages.is_null() ? nlohmann::json::array({{{"role", "user"}, {"content", item.prompt}}})
                                               : item.messages;
  } else if (prompt_ids) {
    body["prompt"] = *prompt_ids;
  } else {
    body["prompt"] = item.prompt.empty() ? messages_to_text(item.messages) : item.prompt;
  }
  body["max_tokens"] = item.max_tokens;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

RequestOutcome HttpTarget::send(const WorkItem& item) {
  RequestOutcome out;
  out.prompt_tokens = item.prompt_tokens;
  // One client per request, without keep-alive: an HTTP server's worker thread stays with a
  // kept-alive connection, so idle benchmark connections would starve the server's pool.
  httplib::Client client(origin_);
  set_timeouts(client, options_.timeout_s);
  httplib::Request req;
  req.method = "POST";
  req.path = base_path_ + (options_.chat ? "/chat/completions" : "/completions");
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
  if (!options_.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + options_.api_key);
  req.body = request_body(item, exact_prompt(item));

  StreamReader reader;
  reader.chat = options_.chat;
  reader.out = &out;
  req.response_handler = [&reader](const httplib::Response& r) {
    reader.status = r.status;
    return true;
  };
  req.content_receiver = [&reader](const char* data, size_t n, uint64_t, uint64_t) { return reader.on_data(data, n); };

  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  out.t_sent = now_seconds();
  reader.t_deadline = out.t_sent + options_.timeout_s;
  const bool sent = client.send(req, res, err);
  out.t_end = now_seconds();
  if (!out.ok()) return out;  // malformed or error event: already classified
  const bool past_deadline = out.t_end >= reader.t_deadline - 0.01;
  // A connect that times out is a connection error (the server is not accepting), a read that
  // times out a timeout (it accepted, but did not finish in time).
  if (reader.timed_out || (!sent && err == httplib::Error::Read && past_deadline)) {
    out.error = ErrorKind::kTimeout;
    out.error_detail = strprintf("no complete answer within %.1f s (%s)", options_.timeout_s,
                                 reader.timed_out ? "still streaming" : "waiting to read");
    return out;
  }
  if (!sent) {
    out.error = ErrorKind::kConnection;
    out.error_detail = err == httplib::Error::ConnectionTimeout ? "connect timed out" : httplib::to_string(err);
    return out;
  }
  if (reader.status < 200 || reader.status >= 300) {
    out.error = ErrorKind::kHttpStatus;
    out.http_status = reader.status;
    out.error_detail = strprintf("HTTP %d: %s", reader.status, reader.error_body.c_str());
    return out;
  }
  out.http_status = reader.status;
  if (const std::string tail = reader.parser.finish(); !tail.empty() && !reader.on_event(tail, out.t_end)) return out;
  if (!reader.done && reader.n_events == 0 && reader.n_bytes > 0) {
    out.error = ErrorKind::kMalformedStream;
    out.error_detail = "the response is not an event stream (no data: lines)";
    return out;
  }
  if (!reader.done) {
    out.error = ErrorKind::kConnection;
    out.error_detail = "the stream ended before [DONE] or a finish_reason";
    return out;
  }
  if (out.output_tokens == 0) out.output_tokens = reader.n_chunks;
  return out;
}

Expected<std::string> HttpTarget::first_model_id() const {
  httplib::Client client(origin_);
  set_timeouts(client, std::min(options_.timeout_s, 10.0));
  httplib::Headers headers;
  if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
  auto res = client.Get(base_path_ + "/models", headers);
  if (!res) return error(ErrorCode::kUnavailable, "GET " + base_path_ + "/models: " + httplib::to_string(res.error()));
  if (res->status != 200) return error(ErrorCode::kUnavailable, strprintf("GET %s/models: HTTP %d", base_path_.c_str(), res->status));
  const nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_object()) {
    const auto data = j.find("data");
    if (data != j.end() && data->is_array() && !data->empty() && (*data)[0].is_object()) {
      const auto id = (*data)[0].find("id");
      if (id != (*data)[0].end() && id->is_string()) return id->get<std::string>();
    }
  }
  return error(ErrorCode::kNotFound, "GET " + base_path_ + "/models: no model id in the answer");
}

}  // namespace fathom::loadgen
