// Errors in the shape OpenAI clients parse: {"error": {"message", "type", "param", "code"}},
// each paired with the HTTP status the OpenAI API uses for it, so SDKs raise their matching
// error classes (BadRequestError, AuthenticationError, RateLimitError, ...).
#pragma once

#include <string>

#include "core/status.h"

namespace fathom::server {

struct ApiError {
  int http_status = 500;  // 400, 401, 404, 413, 429, 500, 503
  std::string type;       // "invalid_request_error", "authentication_error", "server_error", ...
  std::string code;       // machine-readable reason, e.g. "context_length_exceeded"; "" -> null
  std::string param;      // request parameter at fault; "" -> null
  std::string message;    // what was wrong and how to fix it

  std::string to_json() const;  // the response body
};

ApiError invalid_request(std::string message, std::string param = "", std::string code = "invalid_value");
// param: the request field holding the prompt ("messages" for chat, "prompt" for completions).
ApiError context_length_exceeded(std::string message, std::string param = "messages");
ApiError unauthorized(std::string message);
ApiError not_found(std::string message, std::string code);
ApiError payload_too_large(size_t max_bytes);
ApiError queue_full(int max_queue);
ApiError unavailable(std::string message, std::string code);
ApiError internal_error(std::string message);
// Maps an engine/tokenizer Status (never kOk) to the closest API error.
ApiError from_status(const Status& status);

}  // namespace fathom::server
