// A raw TCP client for the HTTP-layer tests: what a careless or hostile client sends (partial
// heads, pipelined requests, HTTP/1.0, trickled bytes) needs bytes on the wire, not a library.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace fathom::server::test {

class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    int one = 1;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawConnection() { close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  RawConnection(RawConnection&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads until `done(buffer)` holds, the peer closes, or `timeout` passes; what was read.
  template <typename F>
  std::string read_until(F done, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done(buffer_)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    return buffer_;
  }
  // Reads until the peer closes (or timeout).
  std::string read_all(std::chrono::milliseconds timeout) {
    return read_until([](const std::string&) { return false; }, timeout);
  }
  // Reads one whole response with a Content-Length body; returns it and keeps what follows.
  std::string read_response(std::chrono::milliseconds timeout) {
    auto whole = [](const std::string& b) -> size_t {
      const size_t head_end = b.find("\r\n\r\n");
      if (head_end == std::string::npos) return 0;
      size_t length = 0;
      const size_t cl = b.find("Content-Length: ");
      if (cl != std::string::npos && cl < head_end) length = std::stoul(b.substr(cl + 16));
      return b.size() >= head_end + 4 + length ? head_end + 4 + length : 0;
    };
    read_until([&](const std::string& b) { return whole(b) > 0; }, timeout);
    const size_t n = whole(buffer_);
    if (n == 0) return "";
    std::string one = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return one;
  }
  bool peer_closed() const { return closed_; }
  // True when the peer has closed the connection (polls without waiting long).
  bool closed_by_peer(std::chrono::milliseconds wait) {
    read_until([](const std::string&) { return false; }, wait);
    return closed_;
  }

 private:
  int fd_ = -1;
  std::string buffer_;  // bytes read and not yet returned by read_response
  bool closed_ = false; // recv returned 0 or an error
};

inline int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

inline std::string post_request(const std::string& path, const std::string& body, const std::string& extra_headers = "",
                                const std::string& version = "HTTP/1.1") {
  return "POST " + path + " " + version + "\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

}  // namespace fathom::server::test
