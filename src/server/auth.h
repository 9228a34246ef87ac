// API keys (Authorization: Bearer KEY) and the audit log. Keys are compared in constant time so
// response timing does not reveal how much of a guess was right; the audit log identifies a key
// by its position in the configuration ("key-1"), never by its text.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fathom::server {

class ApiKeys {
 public:
  // keys from --api-key, then one key per line of key_file (blank lines and lines starting with
  // '#' skipped; surrounding whitespace trimmed). No keys at all: authentication is off.
  static Expected<ApiKeys> load(const std::vector<std::string>& keys, const std::string& key_file);

  bool enabled() const { return !keys_.empty(); }
  // Index of the key an Authorization header value carries, or nullopt (missing, malformed or
  // unknown). Every configured key is compared in full, whatever matches.
  std::optional<size_t> match(const std::string& authorization) const;
  // The name the audit log uses for a key: "key-1" for the first configured key.
  static std::string key_id(size_t index) { return "key-" + std::to_string(index + 1); }

 private:
  std::vector<std::string> keys_;  // accepted bearer tokens, in configuration order
};

// One line of the audit log.
struct AuditRecord {
  std::string request_id;         // the response id ("chatcmpl-..."), "" when none was made
  std::string route;              // "/v1/chat/completions"
  int status = 0;                 // HTTP status sent
  std::string key_id;             // ApiKeys::key_id of the caller; "" when auth is off or failed
  int64_t prompt_tokens = 0;      // prompt tokens (0 when the request never reached the engine)
  int64_t completion_tokens = 0;  // generated tokens
  double latency_seconds = 0.0;   // arrival to the last byte handed to the socket
  std::string prompt;             // prompt text (written only with --audit-log-content)
  std::string completion;         // generated text (written only with --audit-log-content)
};

// JSON lines: {"time", "request_id", "route", "status", "key", "prompt_tokens",
// "completion_tokens", "latency_ms"} plus "prompt"/"completion" when content logging is on.
class AuditLog {
 public:
  static Expected<std::unique_ptr<AuditLog>> open(const std::string& path, bool include_content);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  bool include_content() const { return include_content_; }
  void write(const AuditRecord& record);  // appends and flushes one line (thread-safe)

 private:
  AuditLog(std::FILE* file, bool include_content) : file_(file), include_content_(include_content) {}
  std::mutex mutex_;       // one writer at a time, so lines never interleave
  std::FILE* file_;        // opened for append
  bool include_content_;   // log prompt and completion text
};

}  // namespace fathom::server
