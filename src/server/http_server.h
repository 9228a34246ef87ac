// An event-driven HTTP/1.1 server (Boost.Beast's parser on Asio): a connection costs a socket
// and a few hundred bytes, never a thread, so thousands of idle, slow or streaming clients are
// held while the engine serves. It knows nothing of the OpenAI API: routes are handlers that
// answer through a ResponseWriter, from any thread. See docs/decisions.md for why Beast.
//
// What it enforces on every connection:
//   - the request head must arrive within head_timeout of its first byte, the whole request
//     within read_timeout; an idle kept-alive connection is closed after keep_alive_timeout;
//   - heads over max_header_bytes get 431, bodies over max_body_bytes 413 (also when chunked);
//   - beyond max_connections, new connections get 503 and are closed;
//   - HTTP/1.1 keep-alive and pipelining (requests are answered in order), HTTP/1.0 with
//     Connection: close unless it asks for keep-alive, streams without chunked framing to 1.0;
//   - TCP_NODELAY, and each whole response (head and body) handed to the kernel in one write;
//   - a client that goes away while its request is being answered is reported
//     (ResponseWriter::on_disconnect) so its work can be cancelled.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace fathom::server::http {

using Headers = std::vector<std::pair<std::string, std::string>>;  // (name, value) as sent, in order

struct Request {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as sent: "/v1/models?x=1"
  std::string path;     // target up to '?'
  int version = 11;     // 10 for HTTP/1.0, 11 for HTTP/1.1
  Headers headers;      // request headers
  std::string body;     // whole body (chunked bodies are joined)
  double t_arrival = 0; // steady-clock seconds when the head was complete

  // The first value of a header (case-insensitive name), "" when absent.
  std::string header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;      // extra headers (Content-Length, Connection and framing are added)
  std::string body;
};

// The text a status line carries ("Not Found" for 404).
const char* reason_phrase(int status);

class Session;

// How a handler answers one request. Every method may be called from any thread; the calls
// are carried out in order on the connection's strand. Writes to a client that has gone are
// dropped. Exactly one of send() or begin_stream() ... end_stream() should be used; a writer
// destroyed without either answers 500.
class ResponseWriter {
 public:
  ResponseWriter(std::shared_ptr<Session> session, uint64_t exchange, int http_version, bool head_only);
  ~ResponseWriter();

  void send(Response response);
  // Starts a response whose body follows in pieces: chunked for HTTP/1.1, unframed until the
  // connection closes for HTTP/1.0. `head.body` is written first. With a heartbeat, that text
  // is written whenever nothing was written for heartbeat_interval (an SSE comment keeps
  // proxies and clients from timing the stream out while a request waits for a slot).
  void begin_stream(Response head, std::string heartbeat = "");
  void write(std::string data);
  void end_stream();

  // Runs `f` on the connection's strand once the client is found gone before the response
  // ended (at once, on that strand, when it already is).
  void on_disconnect(std::function<void()> f);
  // Runs `f` on the connection's strand: serialized with the disconnect callback.
  void post(std::function<void()> f);
  // Called with the response's status when send() or begin_stream() is called (whether or
  // not the client is still there): where the server counts responses.
  void on_status(std::function<void(int)> f) { status_hook_ = std::move(f); }
  // Headers added to whatever response this writer sends (CORS headers chosen per request).
  void add_headers(Headers headers) { extra_headers_ = std::move(headers); }
  int http_version() const { return http_version_; }

 private:
  std::shared_ptr<Session> session_;
  uint64_t exchange_;                     // which request of the connection this answers
  int http_version_;                      // 10 or 11
  bool head_only_;                        // HEAD request: no body bytes
  std::function<void(int)> status_hook_;  // see on_status
  Headers extra_headers_;                 // see add_headers
  bool answered_ = false;                 // send() or begin_stream() was called; else the destructor sends a 500
};

using Handler = std::function<void(Request, std::shared_ptr<ResponseWriter>)>;

struct Options {
  std::string host = "127.0.0.1";       // address to bind
  int port = 8080;                      // 0: any free port
  int io_threads = 1;                   // threads running the event loop
  size_t max_connections = 4096;        // open connections; more get 503
  size_t max_header_bytes = 16 << 10;   // request line + headers; more -> 431
  size_t max_body_bytes = 8u << 20;     // body; more -> 413
  std::chrono::milliseconds head_timeout{10000};       // first byte to complete head
  std::chrono::milliseconds read_timeout{60000};       // first byte to complete body
  std::chrono::milliseconds keep_alive_timeout{5000};  // idle between requests
  std::chrono::milliseconds heartbeat_interval{5000};  // see begin_stream
  int listen_backlog = 1024;
  // The response for errors the HTTP layer answers itself (400, 408, 413, 431, 503), given
  // the status and the path when it is known ("" before the request line was read).
  std::function<Response(int status, const std::string& path)> error_response;
  // Called for each request once it was read; runs on an event-loop thread and must not
  // block: hand slow work to another thread (the writer may be used from any thread).
  Handler handler;
};

class Server {
 public:
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (no SO_REUSEPORT: a port in use is an error), listens and starts the event loop.
  Status start();
  int port() const { return port_; }
  // Stops accepting new connections; connections open carry on.
  void stop_accepting();
  // From now on every connection closes after its current response, and connections with no
  // request being answered (idle, or still sending a request) are closed at once.
  void drain();
  // Connections whose response is still being written (bytes queued or a stream open).
  size_t busy_connections() const;
  size_t open_connections() const;
  // Closes every connection and ends the event loop and its threads.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace fathom::server::http
