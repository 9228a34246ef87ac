// A small HTTP(S) client over libcurl for the model hub: bounded GETs of JSON and resumable
// downloads streamed to a callback. Redirects are followed (Hugging Face answers /resolve/ with
// a redirect to its CDN); the bearer token is sent to the first host only (libcurl drops custom
// Authorization headers on a redirect to another host). Proxies come from the usual
// http_proxy/https_proxy/no_proxy variables, which libcurl reads itself.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/status.h"

namespace fathom::hub {

struct HttpResponse {
  long status = 0;                             // final HTTP status after redirects
  std::map<std::string, std::string> headers;  // of the final response, names lower-cased
  std::string body;                            // at most the max_body bytes asked for
};

// Receives body bytes of a successful (2xx) download; returns false to abort it (the reason is
// the callback's to keep).
using DataSink = std::function<bool(const char* data, size_t n)>;

class HttpClient {
 public:
  // token: sent as "Authorization: Bearer TOKEN" when not empty.
  explicit HttpClient(std::string token, long connect_timeout_s = 30);

  // GET with the body limited to max_body bytes (more is an error naming the URL). Any status
  // is returned as a response; transport failures (DNS, refused, TLS, timeout) are errors.
  Expected<HttpResponse> get(const std::string& url, size_t max_body) const;

  // GET from byte `offset` (a Range request when offset > 0). For a 2xx answer, on_start is
  // called once with the status and headers before the first byte (a 200 to a range request
  // means the server sends the whole file), then the body goes to sink. A non-2xx answer's body
  // (at most 64 KiB) is returned in the response instead. A transfer that stalls below
  // 1 byte/s for stall_timeout_s, or breaks off, is an error of kind kIo whose message names
  // the cause; a sink that returns false makes kCancelled, and so does `cancelled` returning
  // true (libcurl asks it about once a second and as data arrives, also while none does).
  Expected<HttpResponse> download(const std::string& url, uint64_t offset,
                                  const std::function<Status(const HttpResponse& head)>& on_start,
                                  const DataSink& sink, long stall_timeout_s = 60,
                                  const std::function<bool()>& cancelled = {}) const;

 private:
  std::string token_;       // bearer token, "" for none
  long connect_timeout_s_;  // seconds to establish a connection
};

// Percent-encodes a URL path: everything but unreserved characters and '/'.
std::string url_encode_path(const std::string& path);

}  // namespace fathom::hub
