#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace fathom::server {

std::string ApiError::to_json() const {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  // Messages may quote user text cut at an arbitrary byte: replace invalid UTF-8, never throw.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return {400, "invalid_request_error", std::move(code), std::move(param), std::move(message)};
}

ApiError context_length_exceeded(std::string message, std::string param) {
  return {400, "invalid_request_error", "context_length_exceeded", std::move(param), std::move(message)};
}

ApiError unauthorized(std::string message) {
  return {401, "authentication_error", "invalid_api_key", "", std::move(message)};
}

ApiError not_found(std::string message, std::string code) {
  return {404, "invalid_request_error", std::move(code), "", std::move(message)};
}

ApiError payload_too_large(size_t max_bytes) {
  return {413, "invalid_request_error", "request_too_large", "",
          strprintf("the request body is larger than the server's limit of %zu bytes (--max-body-bytes)", max_bytes)};
}

ApiError queue_full(int max_queue) {
  return {429, "rate_limit_error", "queue_full", "",
          strprintf("the server is busy: %d requests are already waiting (--max-queue); retry later", max_queue)};
}

ApiError unavailable(std::string message, std::string code) {
  return {503, "server_error", std::move(code), "", std::move(message)};
}

ApiError internal_error(std::string message) { return {500, "server_error", "internal_error", "", std::move(message)}; }

ApiError from_status(const Status& status) {
  switch (status.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsupported:
      return invalid_request(status.message());
    case ErrorCode::kOutOfRange:
      return context_length_exceeded(status.message());
    case ErrorCode::kNotFound:
      return not_found(status.message(), "not_found");
    case ErrorCode::kUnavailable:
    case ErrorCode::kCancelled:
      return unavailable(status.message(), "unavailable");
    default:
      return internal_error(status.to_string());
  }
}

}  // namespace fathom::server
