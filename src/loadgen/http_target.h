// Requests to an OpenAI-compatible server: POST {base}/completions (or /chat/completions) with
// stream: true, timing each server-sent content chunk as it arrives.
#pragma once

#include <memory>
#include <string>

#include "loadgen/target.h"

namespace fathom::loadgen {

struct HttpTargetOptions {
  std::string url;         // base URL with the API prefix, e.g. "http://127.0.0.1:8080/v1"
  std::string model;       // the request's "model" field; "" leaves it out
  std::string api_key;     // sent as "Authorization: Bearer KEY"; "" sends none
  bool chat = false;       // /chat/completions with messages instead of /completions with a prompt
  double timeout_s = 600;  // whole-request limit; also the connect and per-read limit
};

class HttpTarget : public Target {
 public:
  // Errors: a URL that is not http://HOST[:PORT][/PATH] (https when the library has TLS).
  static Expected<std::unique_ptr<HttpTarget>> create(const HttpTargetOptions& options);

  RequestOutcome send(const WorkItem& item) override;
  std::string describe() const override;
  // GET {base}/models: the first model id the server lists (to fill "model" when not given).
  Expected<std::string> first_model_id() const;

 private:
  explicit HttpTarget(HttpTargetOptions options) : options_(std::move(options)) {}
  std::string request_body(const WorkItem& item) const;

  HttpTargetOptions options_;
  std::string origin_;     // "http://host:port", what httplib::Client takes
  std::string base_path_;  // "/v1" (no trailing slash; "" when the URL has no path)
};

}  // namespace fathom::loadgen
