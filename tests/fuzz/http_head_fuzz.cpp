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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int port = server().port();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early (an error response), which is fine
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  // The server must close within a few seconds of the end of input (its own deadlines are
  // 10 s and more, so a close here comes from seeing the EOF, not from a timer).
  std::string reply;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) {
      std::fprintf(stderr, "http_head_fuzz: the server did not close the connection 5 s after the input ended "
                           "(%zu connections open, %zu busy; %zu reply bytes: %.60s)\n",
                   server().open_connections(), server().busy_connections(), reply.size(), reply.c_str());
      std::abort();
    }
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
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
