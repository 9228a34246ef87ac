// A target is what the load generator sends requests to: an OpenAI-compatible server over HTTP
// (HttpTarget) or an Engine in this process (LocalTarget). One request, one blocking call; the
// runner calls send() from many threads at once. Failures are outcomes, never exceptions or
// aborts: a load test counts them and goes on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loadgen/workload.h"

namespace fathom::loadgen {

enum class ErrorKind {
  kNone,
  kHttpStatus,       // the server answered with a non-2xx status (http_status says which)
  kConnection,       // could not connect, or the connection dropped before the stream ended
  kTimeout,          // connected, but no complete answer within --timeout
  kMalformedStream,  // a server-sent event that is not the JSON an OpenAI stream carries
  kStreamError,      // the stream carried an {"error": ...} object
  kEngine,           // the local engine rejected or failed the request
};

// "http_500", "connection", "timeout", "malformed_stream", "stream_error", "engine".
std::string error_kind_key(ErrorKind kind, int http_status);

// What happened to one request. Times are absolute steady-clock seconds (fathom::now_seconds());
// the runner makes them relative to the start of the run.
struct RequestOutcome {
  ErrorKind error = ErrorKind::kNone;  // kNone: the request succeeded
  int http_status = 0;                 // HTTP status when one was received
  std::string error_detail;            // human-readable reason, for the first few errors
  double t_sent = 0;                   // request handed to the transport / engine
  double t_first_token = 0;            // first content chunk; 0 when none arrived
  double t_end = 0;                    // stream finished (or failed)
  std::vector<double> chunk_times;     // [n_chunks] arrival time of each content chunk
  int64_t prompt_tokens = 0;           // from the server's usage / the engine; else the synthetic length
  int64_t output_tokens = 0;           // from usage when reported, else the number of content chunks
  bool ok() const { return error == ErrorKind::kNone; }
};

class Target {
 public:
  virtual ~Target() = default;
  // Sends one request and blocks until it has finished or failed. Thread-safe.
  virtual RequestOutcome send(const WorkItem& item) = 0;
  // "http://127.0.0.1:8080/v1 (completions)" or "model.gguf (local engine)".
  virtual std::string describe() const = 0;
};

}  // namespace fathom::loadgen
