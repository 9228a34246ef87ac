// The connection state machine. Each Session lives on its own strand, so its fields need no
// lock: every handler below and every ResponseWriter call runs there. A connection is in one
// phase at a time:
//   kIdle       waiting for the first byte of a request (keep_alive_timeout);
//   kReading    reading a request's head (head_timeout) then its body (read_timeout);
//   kAnswering  the handler has the request; a "monitor" read watches for the client leaving
//               and collects pipelined bytes for the next request;
//   kClosed.
// At most one read and one write are in flight on the socket at any time.
#include "server/http_server.h"

#include <sys/resource.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace fathom::server::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Pipelined bytes buffered while a request is answered; past this the connection stops
// reading until the answer is out (the client is clearly there).
constexpr size_t kMaxPipelinedBytes = 64 << 10;
// Response bytes queued for a client that does not read; past this it is dropped as gone.
constexpr size_t kMaxQueuedBytes = 32u << 20;
// After an error response the connection half-closes and reads what the client still sends
// for this long, so the client sees the response instead of a reset.
constexpr auto kLingerTime = std::chrono::seconds(1);

std::string_view to_std(beast::string_view s) { return std::string_view(s.data(), s.size()); }

double steady_seconds() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// The status line and headers of a response. content_length < 0: no Content-Length (a
// chunked or close-delimited stream).
std::string serialize_head(const Response& r, int64_t content_length, bool chunked, bool keep_alive, int version) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  out += "Server: fathom\r\n";
  if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  if (content_length >= 0) out += "Content-Length: " + std::to_string(content_length) + "\r\n";
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  else if (version == 10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  return out;
}

std::string chunk(const std::string& data) {
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

}  // namespace

std::string Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return "";
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

// What the sessions share with the server. Held by every session, so it outlives them all,
// the io_context included (a socket must be destroyed before its io_context).
struct Shared {
  asio::io_context ioc;
  Options options;
  std::atomic<bool> draining{false};           // Server::drain() was called
  std::mutex mutex;                            // guards sessions
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;  // open connections
  std::atomic<size_t> busy{0};                 // sessions with response bytes pending
  std::atomic<size_t> open{0};                 // sessions alive (for the connection cap)
  explicit Shared(Options o) : options(std::move(o)) {}

  // The answer to an error the HTTP layer finds itself (path "" before the request line).
  Response error_for(int status, const std::string& path) const {
    if (options.error_response) return options.error_response(status, path);
    return Response{status, "text/plain", {}, reason_phrase(status)};
  }
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        heartbeat_timer_(socket_.get_executor()),
        buffer_(shared_->options.max_header_bytes + kMaxPipelinedBytes) {}

  ~Session() {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->sessions.erase(this);
    shared_->open.fetch_sub(1);
  }

  void start() {
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      shared_->sessions.emplace(this, weak_from_this());
    }
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->read_next(); });
  }

  // Answers with `response` (503: too many connections) and closes, without reading.
  void reject(Response response) {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this(), response = std::move(response)] {
      self->phase_ = Phase::kAnswering;
      self->keep_alive_ = false;
      self->send_whole(self->exchange_, response, false);
    });
  }

  // From Server::drain(), on the strand.
  void drain() {
    if (phase_ == Phase::kAnswering) keep_alive_ = false;
    else close();
  }

  void close() {
    if (phase_ == Phase::kClosed) return;
    const bool answering = phase_ == Phase::kAnswering && !response_done_;
    phase_ = Phase::kClosed;
    if (answering) client_gone();
    set_busy(false);
    ++deadline_gen_;
    deadline_.cancel();
    heartbeat_timer_.cancel();
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    out_.clear();
  }

  template <typename F>
  void run(F&& f) {
    asio::dispatch(socket_.get_executor(), std::forward<F>(f));
  }
  void run_posted(std::function<void()> f) { asio::post(socket_.get_executor(), std::move(f)); }

  // --- called by ResponseWriter, on the strand -------------------------------------------
  void send_whole(uint64_t exchange, const Response& r, bool head_only) {
    if (!current(exchange) || started_) return;
    started_ = true;
    std::string bytes = serialize_head(r, static_cast<int64_t>(r.body.size()), false, keep_alive_, version_);
    if (!head_only) bytes += r.body;
    response_done_ = true;
    enqueue(std::move(bytes));
  }

  void begin_stream(uint64_t exchange, const Response& head, std::string heartbeat, bool head_only) {
    if (!current(exchange) || started_) return;
    started_ = true;
    chunked_ = version_ >= 11;
    if (!chunked_) keep_alive_ = false;  // an HTTP/1.0 stream ends when the connection does
    std::string bytes = serialize_head(head, -1, chunked_, keep_alive_, version_);
    if (head_only) {
      response_done_ = true;
      enqueue(std::move(bytes));
      return;
    }
    if (!head.body.empty()) bytes += chunked_ ? chunk(head.body) : head.body;
    streaming_ = true;
    heartbeat_ = std::move(heartbeat);
    enqueue(std::move(bytes));
    if (!heartbeat_.empty()) arm_heartbeat();
  }

  void write_stream(uint64_t exchange, const std::string& data) {
    if (!current(exchange) || !streaming_ || data.empty()) return;
    enqueue(chunked_ ? chunk(data) : data);
  }

  void end_stream(uint64_t exchange) {
    if (!current(exchange) || !streaming_) return;
    streaming_ = false;
    heartbeat_timer_.cancel();
    response_done_ = true;
    if (chunked_) enqueue("0\r\n\r\n");
    else maybe_finish_response();
  }

  // A writer dropped without an answer (a handler bug or exception): the client gets a 500
  // rather than a connection that hangs.
  void abandon(uint64_t exchange) {
    if (!current(exchange) || started_) return;
    const int status = 500;
    Response r = shared_->error_for(status, path_);
    send_whole(exchange, r, false);
  }

  void on_disconnect(uint64_t exchange, std::function<void()> f) {
    if (exchange != exchange_) return;  // that exchange ended long ago
    if (gone_) f();
    else if (phase_ == Phase::kAnswering && !response_done_) disconnect_callbacks_.push_back(std::move(f));
  }

  uint64_t exchange() const { return exchange_; }

 private:
  enum class Phase { kIdle, kReading, kAnswering, kClosed };

  bool current(uint64_t exchange) const { return exchange == exchange_ && phase_ == Phase::kAnswering && !response_done_; }

  void set_busy(bool busy) {
    if (busy == busy_) return;
    busy_ = busy;
    if (busy) shared_->busy.fetch_add(1);
    else shared_->busy.fetch_sub(1);
  }

  // Closes the socket when `after` passes, unless the deadline was re-armed or disarmed.
  void arm(std::chrono::milliseconds after) {
    const uint64_t gen = ++deadline_gen_;
    deadline_.expires_after(after);
    deadline_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->deadline_gen_) return;
      self->close();
    });
  }
  void disarm() {
    ++deadline_gen_;
    deadline_.cancel();
  }

  void read_next() {
    if (phase_ == Phase::kClosed) return;
    if (shared_->draining) return close();
    phase_ = Phase::kIdle;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->options.max_header_bytes));
    parser_->body_limit(shared_->options.max_body_bytes);
    if (buffer_.size() > 0) return read_head();
    arm(shared_->options.keep_alive_timeout);
    reading_ = true;
    // A read, not async_wait(wait_read): Asio's epoll reactor is edge-triggered and a wait is
    // never tried at once, so bytes and EOF that arrived before the wait was posted went
    // unseen (the HTTP fuzz target found a connection hanging that way).
    const size_t room = std::min<size_t>(4096, buffer_.max_size() - buffer_.size());
    socket_.async_read_some(buffer_.prepare(room), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->reading_ = false;
      if (ec || self->phase_ != Phase::kIdle) return self->close();
      self->buffer_.commit(n);
      self->read_head();
    });
  }

  void read_head() {
    phase_ = Phase::kReading;
    path_.clear();
    t_first_byte_ = Clock::now();
    arm(shared_->options.head_timeout);
    reading_ = true;
    bhttp::async_read_header(socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      self->on_head(ec);
    });
  }

  void on_head(beast::error_code ec) {
    if (phase_ != Phase::kReading) return;
    if (parser_->got_some()) {
      const std::string_view target = to_std(parser_->get().target());
      path_ = std::string(target.substr(0, target.find('?')));
    }
    if (ec) return on_read_error(ec);
    if (parser_->is_done()) return on_request();
    if (iequals(to_std(parser_->get()[bhttp::field::expect]), "100-continue")) enqueue_raw("HTTP/1.1 100 Continue\r\n\r\n");
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t_first_byte_);
    arm(std::max(std::chrono::milliseconds(1), shared_->options.read_timeout - spent));
    reading_ = true;
    bhttp::async_read(socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (self->phase_ != Phase::kReading) return;
      if (ec) return self->on_read_error(ec);
      self->on_request();
    });
  }

  void on_read_error(beast::error_code ec) {
    int status = 400;
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) status = 431;
    else if (ec == bhttp::error::body_limit) status = 413;
    else if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
             ec == asio::error::operation_aborted || ec == bhttp::error::partial_message || ec == asio::error::bad_descriptor)
      return close();
    // The rest of the request cannot be found in the stream: answer and close.
    disarm();
    phase_ = Phase::kAnswering;
    ++exchange_;
    started_ = false;
    response_done_ = false;
    keep_alive_ = false;
    version_ = 11;
    Response r = shared_->error_for(status, path_);
    send_whole(exchange_, r, false);
  }

  void on_request() {
    disarm();
    auto message = parser_->release();
    Request req;
    req.method = std::string(message.method_string());
    req.target = std::string(message.target());
    req.path = req.target.substr(0, req.target.find('?'));
    req.version = static_cast<int>(message.version());
    for (const auto& field : message) req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    keep_alive_ = message.keep_alive() && !shared_->draining;
    req.body = std::move(message.body());
    req.t_arrival = steady_seconds();
    version_ = req.version;
    phase_ = Phase::kAnswering;
    ++exchange_;
    started_ = false;
    response_done_ = false;
    streaming_ = false;
    gone_ = false;
    disconnect_callbacks_.clear();
    monitor();
    auto writer = std::make_shared<ResponseWriter>(shared_from_this(), exchange_, req.version, req.method == "HEAD");
    try {
      if (shared_->options.handler) shared_->options.handler(std::move(req), std::move(writer));
    } catch (const std::exception&) {
      // The writer, gone unanswered, has already sent a 500 (see ~ResponseWriter).
    }
  }

  // While a request is answered, one read stays posted: it sees the client leave (EOF or
  // reset) and keeps pipelined requests in the buffer for later.
  void monitor() {
    if (reading_ || phase_ != Phase::kAnswering || gone_) return;
    const size_t room = std::min<size_t>(4096, buffer_.max_size() - buffer_.size());
    if (room == 0) return;
    reading_ = true;
    socket_.async_read_some(buffer_.prepare(room), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->reading_ = false;
      if (self->phase_ == Phase::kClosed) return;
      if (!ec) self->buffer_.commit(n);
      if (self->monitor_cancelled_) {
        // The response ended: the next request is read now (it may already be buffered).
        self->monitor_cancelled_ = false;
        if (!ec || ec == asio::error::operation_aborted) return self->read_next();
      }
      if (ec) return self->close();
      self->monitor();
    });
  }

  void client_gone() {
    if (gone_) return;
    gone_ = true;
    auto callbacks = std::move(disconnect_callbacks_);
    disconnect_callbacks_.clear();
    for (auto& f : callbacks) f();
  }

  void enqueue_raw(std::string bytes) {
    if (phase_ == Phase::kClosed || bytes.empty()) return;
    out_bytes_ += bytes.size();
    if (out_bytes_ > kMaxQueuedBytes) return close();  // a client that does not read
    out_.push_back(std::move(bytes));
    last_write_ = Clock::now();
    set_busy(true);
    if (!writing_) do_write();
  }

  void enqueue(std::string bytes) {
    enqueue_raw(std::move(bytes));
    maybe_finish_response();
  }

  void do_write() {
    if (out_.size() > 1) {
      std::string joined;
      for (std::string& s : out_) joined += s;
      out_.clear();
      out_.push_back(std::move(joined));
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->writing_ = false;
      if (self->phase_ == Phase::kClosed) return;
      if (ec) return self->close();
      self->out_bytes_ -= n;
      self->out_.pop_front();
      if (!self->out_.empty()) return self->do_write();
      self->maybe_finish_response();
    });
  }

  void maybe_finish_response() {
    if (phase_ != Phase::kAnswering || !response_done_ || writing_ || !out_.empty()) return;
    set_busy(false);
    disconnect_callbacks_.clear();
    if (!keep_alive_ || shared_->draining) return linger_close();
    phase_ = Phase::kIdle;
    if (reading_) {
      // The monitor read is still posted; cancelling it (no write is in flight now) hands
      // over to read_next, which parses what was pipelined or waits for the next request.
      monitor_cancelled_ = true;
      beast::error_code ec;
      socket_.cancel(ec);
    } else {
      read_next();
    }
  }

  // Half-closes, then reads (and drops) what the client still sends, so it reads the whole
  // response rather than a reset; closes at EOF or after kLingerTime.
  void linger_close() {
    phase_ = Phase::kIdle;
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    arm(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime));
    if (!reading_) discard();
  }

  void discard() {
    reading_ = true;
    socket_.async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (ec || self->phase_ == Phase::kClosed) return self->close();
      self->discard();
    });
  }

  void arm_heartbeat() {
    heartbeat_timer_.expires_after(shared_->options.heartbeat_interval);
    heartbeat_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->streaming_ || self->phase_ != Phase::kAnswering) return;
      if (Clock::now() - self->last_write_ >= self->shared_->options.heartbeat_interval)
        self->enqueue_raw(self->chunked_ ? chunk(self->heartbeat_) : self->heartbeat_);
      self->arm_heartbeat();
    });
  }

  std::shared_ptr<Shared> shared_;   // first: destroyed last, after the socket
  tcp::socket socket_;               // its executor is this session's strand
  asio::steady_timer deadline_;      // closes the connection (see arm)
  asio::steady_timer heartbeat_timer_;
  beast::flat_buffer buffer_;        // bytes read and not yet parsed (pipelined requests)
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;  // the request being read
  std::array<char, 4096> scratch_{}; // discarded bytes while lingering
  Phase phase_ = Phase::kIdle;
  uint64_t exchange_ = 0;            // requests read so far; a writer of an older one is ignored
  uint64_t deadline_gen_ = 0;        // arms of the deadline; a stale expiry is ignored
  std::string path_;                 // the request's path, once known (error responses)
  Clock::time_point t_first_byte_;   // when the request's head began
  Clock::time_point last_write_;     // when bytes were last queued (heartbeat)
  int version_ = 11;                 // the request's HTTP version
  bool keep_alive_ = false;          // read another request after this response
  bool reading_ = false;             // a read (or wait) is in flight
  bool monitor_cancelled_ = false;   // the monitor read was cancelled to read the next request
  bool writing_ = false;             // a write is in flight
  bool started_ = false;             // the response's head was queued
  bool response_done_ = false;       // nothing more will be queued for this response
  bool streaming_ = false;           // between begin_stream and end_stream
  bool chunked_ = false;             // the stream uses chunked framing
  bool gone_ = false;                // the client left during this exchange
  bool busy_ = false;                // counted in Shared::busy
  std::string heartbeat_;            // written after heartbeat_interval of silence
  std::deque<std::string> out_;      // bytes queued for the socket
  size_t out_bytes_ = 0;             // total size of out_
  std::vector<std::function<void()>> disconnect_callbacks_;
};

// --- ResponseWriter --------------------------------------------------------------------------

ResponseWriter::ResponseWriter(std::shared_ptr<Session> session, uint64_t exchange, int http_version, bool head_only)
    : session_(std::move(session)), exchange_(exchange), http_version_(http_version), head_only_(head_only) {}

ResponseWriter::~ResponseWriter() {
  if (!answered_) session_->run([s = session_, ex = exchange_] { s->abandon(ex); });
}

void ResponseWriter::send(Response response) {
  answered_ = true;
  response.headers.insert(response.headers.end(), extra_headers_.begin(), extra_headers_.end());
  if (status_hook_) status_hook_(response.status);
  session_->run([s = session_, ex = exchange_, r = std::move(response), head = head_only_] { s->send_whole(ex, r, head); });
}

void ResponseWriter::begin_stream(Response head, std::string heartbeat) {
  answered_ = true;
  head.headers.insert(head.headers.end(), extra_headers_.begin(), extra_headers_.end());
  if (status_hook_) status_hook_(head.status);
  session_->run([s = session_, ex = exchange_, r = std::move(head), hb = std::move(heartbeat), h = head_only_]() mutable {
    s->begin_stream(ex, r, std::move(hb), h);
  });
}

void ResponseWriter::write(std::string data) {
  session_->run([s = session_, ex = exchange_, d = std::move(data)] { s->write_stream(ex, d); });
}

void ResponseWriter::end_stream() {
  session_->run([s = session_, ex = exchange_] { s->end_stream(ex); });
}

void ResponseWriter::on_disconnect(std::function<void()> f) {
  session_->run([s = session_, ex = exchange_, f = std::move(f)]() mutable { s->on_disconnect(ex, std::move(f)); });
}

void ResponseWriter::post(std::function<void()> f) {
  // post, not dispatch: the caller may hold locks or be the engine thread.
  session_->run_posted(std::move(f));
}

// --- Server --------------------------------------------------------------------------------

struct Server::Impl {
  std::shared_ptr<Shared> shared;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;   // after EMFILE: try accepting again shortly
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;  // running shared->ioc
  bool stopped = false;

  explicit Impl(Options options)
      : shared(std::make_shared<Shared>(std::move(options))), acceptor(shared->ioc), accept_retry(shared->ioc) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(shared->ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        // Out of file descriptors (or another transient failure): a busy loop would not help.
        accept_retry.expires_after(std::chrono::milliseconds(50));
        accept_retry.async_wait([this](beast::error_code e) {
          if (!e && acceptor.is_open()) accept();
        });
        return;
      }
      beast::error_code opt_ec;
      socket.set_option(tcp::no_delay(true), opt_ec);
      const size_t n = shared->open.fetch_add(1) + 1;  // given back by ~Session
      auto session = std::make_shared<Session>(shared, std::move(socket));
      if (n > shared->options.max_connections || shared->draining) {
        const int status = 503;
        Response r = shared->error_for(status, "");
        r.headers.emplace_back("Retry-After", "1");
        session->reject(std::move(r));
      } else {
        session->start();
      }
      accept();
    });
  }

  template <typename F>
  void for_each_session(F f) {
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> lock(shared->mutex);
      for (auto& [ptr, weak] : shared->sessions)
        if (auto s = weak.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) s->run([s, f] { f(*s); });
  }
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() { stop(); }

Status Server::start() {
  const Options& o = impl_->shared->options;
  beast::error_code ec;
  tcp::resolver resolver(impl_->shared->ioc);
  auto results = resolver.resolve(o.host, std::to_string(o.port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    return error(ErrorCode::kInvalidArgument, strprintf("cannot listen on %s: %s", o.host.c_str(), ec ? ec.message().c_str() : "no address"));
  const tcp::endpoint endpoint = results.begin()->endpoint();
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  // SO_REUSEADDR only lets a restarted server bind over connections in TIME_WAIT; unlike
  // SO_REUSEPORT it never lets a second live server share the port.
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (ec) {
    const std::string why = ec == asio::error::address_in_use ? "address already in use (another server is listening there)"
                                                              : ec.message();
    return error(ErrorCode::kIo, strprintf("cannot listen on %s:%d: %s", o.host.c_str(), o.port, why.c_str()));
  }
  a.listen(o.listen_backlog, ec);
  if (ec) return error(ErrorCode::kIo, strprintf("cannot listen on %s:%d: %s", o.host.c_str(), o.port, ec.message().c_str()));
  port_ = a.local_endpoint().port();
  impl_->work.emplace(impl_->shared->ioc.get_executor());
  impl_->accept();
  for (int i = 0; i < std::max(1, o.io_threads); ++i) impl_->threads.emplace_back([ioc = &impl_->shared->ioc] { ioc->run(); });
  return Status::ok();
}

void Server::stop_accepting() {
  asio::post(impl_->shared->ioc, [impl = impl_.get()] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->accept_retry.cancel();
  });
}

void Server::drain() {
  impl_->shared->draining = true;
  impl_->for_each_session([](Session& s) { s.drain(); });
}

size_t Server::busy_connections() const { return impl_->shared->busy.load(); }

size_t Server::open_connections() const { return impl_->shared->open.load(); }

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->threads.empty()) return;
  stop_accepting();
  impl_->for_each_session([](Session& s) { s.close(); });
  impl_->work.reset();
  // Closed sessions finish their handlers quickly; whatever is still queued after a moment
  // (a writer posting to a closed connection) is dropped with the loop.
  const auto until = Clock::now() + std::chrono::milliseconds(500);
  while (impl_->shared->open.load() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  impl_->shared->ioc.stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace fathom::server::http
