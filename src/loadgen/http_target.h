// Requests to an OpenAI-compatible server: POST {base}/completions (or /chat/completions) with
// stream: true, timing each server-sent content chunk as it arrives.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
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
  // The prompt as token ids of exactly item.prompt_tokens (synthetic completions), through the
  // server's POST /tokenize (fathom's and llama-server's); nullopt where the server has none,
  // and then the words go as text (about one token each; the usage it reports counts).
  std::optional<std::vector<int32_t>> exact_prompt(const WorkItem& item);
  Expected<std::vector<int32_t>> tokenize(const std::string& text, bool add_special) const;
  std::string request_body(const WorkItem& item, const std::optional<std::vector<int32_t>>& prompt_ids) const;

  HttpTargetOptions options_;
  std::string origin_;     // "http://host:port", what httplib::Client takes
  std::string base_path_;  // "/v1" (no trailing slash; "" when the URL has no path)
  std::atomic<bool> no_tokenize_{false};  // POST /tokenize failed once: send text from then on
  std::atomic<int64_t> bos_id_{-2};       // the server's BOS id (-1: none; -2: not asked yet)
};

}  // namespace fathom::loadgen
