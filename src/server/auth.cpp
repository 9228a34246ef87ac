#include "server/auth.h"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fathom::server {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// Equal in time that depends on the lengths only, not on where the first difference is.
bool equal_constant_time(std::string_view a, std::string_view b) {
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

std::string utc_now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const long ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return strprintf("%s.%03ldZ", buf, ms);
}

}  // namespace

Expected<ApiKeys> ApiKeys::load(const std::vector<std::string>& keys, const std::string& key_file) {
  ApiKeys out;
  for (const std::string& k : keys) {
    if (trim(k).empty()) return error(ErrorCode::kInvalidArgument, "--api-key: an API key must not be empty");
    out.keys_.push_back(trim(k));
  }
  if (!key_file.empty()) {
    std::ifstream in(key_file);
    if (!in) return error(ErrorCode::kIo, strprintf("--api-key-file %s: cannot open (%s)", key_file.c_str(), std::strerror(errno)));
    std::string line;
    while (std::getline(in, line)) {
      line = trim(line);
      if (!line.empty() && line[0] != '#') out.keys_.push_back(line);
    }
    if (out.keys_.empty()) return error(ErrorCode::kInvalidArgument, strprintf("--api-key-file %s holds no keys", key_file.c_str()));
  }
  return out;
}

std::optional<size_t> ApiKeys::match(const std::string& authorization) const {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return std::nullopt;
  const std::string token = trim(authorization.substr(kScheme.size()));
  std::optional<size_t> found;
  for (size_t i = 0; i < keys_.size(); ++i)
    if (equal_constant_time(token, keys_[i]) && !found) found = i;
  return found;
}

Expected<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path, bool include_content) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return error(ErrorCode::kIo, strprintf("--audit-log %s: cannot open for append (%s)", path.c_str(), std::strerror(errno)));
  return std::unique_ptr<AuditLog>(new AuditLog(f, include_content));
}

AuditLog::~AuditLog() { std::fclose(file_); }

void AuditLog::write(const AuditRecord& r) {
  nlohmann::ordered_json line = {{"time", utc_now_iso8601()},
                                 {"request_id", r.request_id},
                                 {"route", r.route},
                                 {"status", r.status},
                                 {"key", r.key_id.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(r.key_id)},
                                 {"prompt_tokens", r.prompt_tokens},
                                 {"completion_tokens", r.completion_tokens},
                                 {"latency_ms", static_cast<int64_t>(r.latency_seconds * 1000.0 + 0.5)}};
  if (include_content_) {
    line["prompt"] = r.prompt;
    line["completion"] = r.completion;
  }
  const std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  std::fwrite(text.data(), 1, text.size(), file_);
  std::fflush(file_);
}

}  // namespace fathom::server
