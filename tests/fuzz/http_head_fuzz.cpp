// The HTTP layer of `fathom serve` (src/server/http_server.cpp) on arbitrary bytes: one server
// runs for the whole fuzzing session; each input is sent on a fresh loopback connection, which
// is then half-closed. Whatever the bytes (heads, pipelined requests, chunked or oversized
// bodies, Expect: 100-continue, garbage), the server must answer only with HTTP responses and
// close the connection soon after the client's end of input — never crash, hang or leak.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "server/http_server.h"

namespace {

using namespace fathom::server::http;

Server& server() {
  static std::unique_ptr<Server> s = [] {
    Options o;
    o.port = 0;
    o.max_header_bytes = 2048;
    o.max_body_bytes = 4096;
    o.max_connections = 64;
    o.error_response = [](int status, const std::string&) {
      return Response{status, "application/json", {}, "{\"error\":" + std::to_string(status) + "}"};
    };
    // Every request is answered; every tenth one as a short stream, to exercise both framings.
    o.handler = [](Request req, std::shared_ptr<ResponseWriter> writer) {
      if (req.body.size() % 10 == 3) {
        writer->begin_stream(Response{200, "text/event-stream", {}, "data: a\n\n"});
        writer->write("data: " + std::to_string(req.body.size()) + "\n\n");
        writer->end_stream();
        return;
      }
      writer->send(Response{200, "text/plain", {{"X-Path-Bytes", std::to_string(req.path.size())}}, req.method});
    };
    auto srv = std::make_unique<Server>(std::move(o));
    if (!srv->start().is_ok()) std::abort();
    return srv;
  }();
  return *s;
}

}  // namespace

// libFuzzer's -timeout watchdog is a SIGALRM every few seconds: any blocking call below may
// return EINTR, which is a retry, not a verdict on the server.
template <typename F>
auto retry_eintr(F f) {
  for (;;) {
    auto r = f();
    if (r >= 0 || errno != EINTR) return r;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int port = server().port();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    std::fprintf(stderr, "http_head_fuzz: socket: %s\n", std::strerror(errno));
    std::abort();
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A connect interrupted by a signal goes on in the background; poll for its end.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == EINTR) {
      pollfd p{fd, POLLOUT, 0};
      retry_eintr([&] { return ::poll(&p, 1, 5000); });
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err != 0 && err != EINTR) {
      std::fprintf(stderr, "http_head_fuzz: connect to 127.0.0.1:%d: %s\n", port, std::strerror(err));
      std::abort();
    }
  }
  // No TIME_WAIT left behind on close: ten thousand inputs would otherwise hold as many ports.
  const linger no_linger{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = retry_eintr([&] { return ::send(fd, data + sent, size - sent, MSG_NOSIGNAL); });
    if (n <= 0) break;  // the server may close early (an error response), which is fine
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  // The server must close within a few seconds of the end of input (its own deadlines are
  // 10 s and more, so a close here comes from seeing the EOF, not from a timer).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string reply;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    const int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      std::fprintf(stderr, "http_head_fuzz: the server did not close the connection 5 s after the input ended "
                           "(%zu connections open, %zu busy; %zu reply bytes: %.60s)\n",
                   server().open_connections(), server().busy_connections(), reply.size(), reply.c_str());
      std::abort();
    }
    char buf[4096];
    const ssize_t n = retry_eintr([&] { return ::recv(fd, buf, sizeof buf, 0); });
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!reply.empty() && reply.rfind("HTTP/1.1 ", 0) != 0) {
    std::fprintf(stderr, "http_head_fuzz: the reply is not HTTP: %.40s\n", reply.c_str());
    std::abort();
  }
  return 0;
}
