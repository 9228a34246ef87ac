// POST /tokenize and POST /detokenize, in llama-server's shapes:
//   {"content": TEXT, "add_special": false, "parse_special": true, "with_pieces": false} -> {"tokens": [ids]}
//     (with_pieces: [{"id", "piece"}], the piece a string, or its bytes when not valid UTF-8)
//   {"tokens": [ids]} -> {"content": TEXT}
// They run on the TaskQueue (tokenizing a body of several MiB must not stall the event loop).
#include "server/openai_response.h"
#include "server/server_context.h"
#include "tokenizer/unicode.h"

namespace fathom::server {

namespace {

using nlohmann::json;

// Optional boolean field; absent or null gives the default.
std::optional<bool> flag(const json& body, const char* name, bool fallback, std::optional<ApiError>& error) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    error = invalid_request(strprintf("'%s' must be true or false", name), name);
    return std::nullopt;
  }
  return it->get<bool>();
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::variant<json, ApiError> tokenize(const Tokenizer& tok, const json& body) {
  const auto content = body.find("content");
  if (content == body.end() || !content->is_string())
    return invalid_request("'content' must be the text to tokenize (a string)", "content");
  std::optional<ApiError> error;
  const std::optional<bool> add_special = flag(body, "add_special", false, error);
  const std::optional<bool> parse_special = flag(body, "parse_special", true, error);
  const std::optional<bool> with_pieces = flag(body, "with_pieces", false, error);
  if (error) return *error;
  const std::vector<int32_t> ids =
      tok.encode(content->get<std::string>(), *add_special && tok.add_bos() && tok.bos_id() >= 0, *parse_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (!*with_pieces) {
      tokens.push_back(id);
      continue;
    }
    const std::string piece = tok.token_to_piece(id, /*render_special=*/true);
    json bytes = json::array();
    if (!valid_utf8(piece))
      for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
    tokens.push_back({{"id", id}, {"piece", valid_utf8(piece) ? json(piece) : bytes}});
  }
  return json{{"tokens", std::move(tokens)}};
}

std::variant<json, ApiError> detokenize(const Tokenizer& tok, const json& body) {
  const auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array()) return invalid_request("'tokens' must be an array of token ids", "tokens");
  std::vector<int32_t> ids;
  ids.reserve(tokens->size());
  for (const json& t : *tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.n_vocab())
      return invalid_request(strprintf("'tokens' must hold token ids from 0 to %d (got %s)", tok.n_vocab() - 1,
                                       t.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 40).c_str()),
                             "tokens");
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return json{{"content", tok.decode(ids, /*render_special=*/true)}};
}

}  // namespace

void handle_tokenize(ServerContext& ctx, bool detokenize_route, const http::Request& req,
                     std::shared_ptr<http::ResponseWriter> writer, std::shared_ptr<Exchange> exchange) {
  auto answer = [&](const http::Response& response) {
    writer->send(response);
    ctx.write_audit(*exchange, response.status);
    --ctx.tokenize_in_flight;
  };
  const Engine* engine = ctx.worker->engine();
  if (!engine) return answer(error_response(unavailable("the model is not loaded", "model_loading")));
  auto body = parse_json_body(req.body);
  if (auto* e = std::get_if<ApiError>(&body)) return answer(error_response(*e));
  const json& object = std::get<json>(body);
  if (!object.is_object()) return answer(error_response(invalid_request("the request body must be a JSON object", "", "invalid_json")));
  auto result = detokenize_route ? detokenize(engine->tokenizer(), object) : tokenize(engine->tokenizer(), object);
  if (auto* e = std::get_if<ApiError>(&result)) return answer(error_response(*e));
  answer(json_response(200, json_text(std::get<json>(result))));
}

}  // namespace fathom::server
