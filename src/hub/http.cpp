#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace fathom::hub {

namespace {

constexpr size_t kMaxErrorBody = 64 << 10;  // bytes of a non-2xx body kept for the message
constexpr long kMaxRedirects = 10;

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// State shared with the libcurl callbacks of one transfer.
struct Transfer {
  CURL* curl = nullptr;
  HttpResponse response;
  size_t max_body = 0;             // for bodies kept in response.body
  bool body_overflow = false;      // the body exceeded max_body
  bool started = false;            // on_start ran (first body byte of a 2xx answer)
  const std::function<Status(const HttpResponse&)>* on_start = nullptr;  // downloads only
  const DataSink* sink = nullptr;  // downloads only: where 2xx bodies go
  const std::function<bool()>* cancelled = nullptr;  // downloads only: polled by on_progress
  Status stop;                     // why a callback aborted the transfer
};

long status_of(CURL* curl) {
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

// Headers of each response in a redirect chain arrive in turn; a status line starts a new set.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t value_start = colon + 1;
  while (value_start < line.size() && line[value_start] == ' ') ++value_start;
  t->response.headers[name] = line.substr(value_start);
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  const long status = status_of(t->curl);
  if (t->sink && status >= 200 && status < 300) {
    if (!t->started) {
      t->started = true;
      t->response.status = status;
      t->stop = (*t->on_start)(t->response);
      if (!t->stop) return 0;
    }
    if (!(*t->sink)(data, bytes)) {
      t->stop = error(ErrorCode::kCancelled, "download stopped");
      return 0;
    }
    return bytes;
  }
  const size_t limit = t->sink ? kMaxErrorBody : t->max_body;
  if (t->response.body.size() + bytes > limit) {
    t->body_overflow = true;
    if (!t->sink) return 0;  // a JSON answer past its limit is refused
    t->response.body.append(data, limit - t->response.body.size());
    return bytes;
  }
  t->response.body.append(data, bytes);
  return bytes;
}

// libcurl's progress callback: a non-zero return aborts the transfer.
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->cancelled || !*t->cancelled || !(*t->cancelled)()) return 0;
  t->stop = error(ErrorCode::kCancelled, "download cancelled");
  return 1;
}

}  // namespace

HttpClient::HttpClient(std::string token, long connect_timeout_s)
    : token_(std::move(token)), connect_timeout_s_(connect_timeout_s) {}

namespace {

Expected<HttpResponse> perform(const std::string& url, const std::string& token, long connect_timeout_s,
                               long stall_timeout_s, uint64_t offset, Transfer& t) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return error(ErrorCode::kInternal, "libcurl could not start a transfer");
  t.curl = curl.get();
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  if (!token.empty()) headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + token).c_str()));
  char error_text[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "fathom/0.1.0");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  // CURLOPT_RANGE rather than RESUME_FROM: a server that ignores the range answers 200 with the
  // whole file, which on_start then sees (RESUME_FROM would fail the transfer instead).
  const std::string range = strprintf("%llu-", static_cast<unsigned long long>(offset));
  if (offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (t.cancelled && *t.cancelled) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  }
  const CURLcode rc = curl_easy_perform(c);
  t.response.status = status_of(c);
  if (!t.stop) return t.stop;
  if (t.body_overflow && !t.sink)
    return error(ErrorCode::kInvalidFile, strprintf("%s: the answer is larger than %zu bytes", url.c_str(), t.max_body));
  if (rc != CURLE_OK) {
    const std::string why = error_text[0] ? error_text : curl_easy_strerror(rc);
    const bool timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    return error(timed_out ? ErrorCode::kUnavailable : ErrorCode::kIo,
                 strprintf("%s: %s%s", url.c_str(), why.c_str(),
                           timed_out ? strprintf(" (no data for %ld s)", stall_timeout_s).c_str() : ""));
  }
  return std::move(t.response);
}

}  // namespace

Expected<HttpResponse> HttpClient::get(const std::string& url, size_t max_body) const {
  Transfer t;
  t.max_body = max_body;
  return perform(url, token_, connect_timeout_s_, /*stall_timeout_s=*/60, 0, t);
}

Expected<HttpResponse> HttpClient::download(const std::string& url, uint64_t offset,
                                            const std::function<Status(const HttpResponse& head)>& on_start,
                                            const DataSink& sink, long stall_timeout_s,
                                            const std::function<bool()>& cancelled) const {
  Transfer t;
  t.on_start = &on_start;
  t.sink = &sink;
  t.cancelled = &cancelled;
  return perform(url, token_, connect_timeout_s_, stall_timeout_s, offset, t);
}

std::string url_encode_path(const std::string& path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
      out += static_cast<char>(c);
    else
      out += strprintf("%%%02X", c);
  }
  return out;
}

}  // namespace fathom::hub
