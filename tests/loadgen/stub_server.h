// A small, deliberately unreliable OpenAI-compatible server for the load generator's tests, on
// 127.0.0.1 at a free port. The n-th request it receives behaves as behaviours[n % size]:
// a valid stream, a slow one, a dropped connection, a 500, malformed SSE, an error event, or a
// hang past the client's timeout. Counting by arrival keeps the totals exact whatever order
// concurrent requests arrive in.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace fathom::loadgen::stub {

enum class Behaviour { kOk, kSlow, kDrop, kHttp500, kMalformed, kErrorEvent, kHang };

class StubServer {
 public:
  struct Options {
    std::vector<Behaviour> behaviours{Behaviour::kOk};  // cycled per arriving request
    double slow_delay_s = 0.15;                         // kSlow: wait before the first chunk
    double hang_s = 1.0;                                // kHang: wait before answering at all
    double token_gap_s = 0.003;                         // between content chunks
  };

  explicit StubServer(Options options) : options_(std::move(options)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(32); };
    server_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"stub-model","object":"model"}]})", "application/json");
    });
    auto handler = [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); };
    server_.Post("/v1/completions", handler);
    server_.Post("/v1/chat/completions", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // The socket already listens (connections queue in its backlog); wait for the accept loop
    // anyway so a test's first request is not timed against the server's start-up.
    while (port_ > 0 && !server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StubServer() {
    server_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int64_t requests_seen() const { return counter_.load(); }

 private:
  static std::string chunk_event(bool chat, const std::string& text) {
    nlohmann::json choice = {{"index", 0}, {"finish_reason", nullptr}};
    if (chat) choice["delta"] = {{"content", text}};
    else choice["text"] = text;
    nlohmann::json j = {{"id", "cmpl-stub"}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                        {"choices", nlohmann::json::array({choice})}};
    return "data: " + j.dump() + "\n\n";
  }

  static void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

  void handle(const httplib::Request& req, httplib::Response& res) {
    const Behaviour b = options_.behaviours[static_cast<size_t>(counter_.fetch_add(1)) % options_.behaviours.size()];
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    const int64_t max_tokens = body.is_object() ? body.value("max_tokens", int64_t{4}) : 4;
    const bool chat = req.path.find("chat") != std::string::npos;
    if (b == Behaviour::kHttp500) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"stub failure","type":"server_error"}})", "application/json");
      return;
    }
    if (b == Behaviour::kHang) sleep_s(options_.hang_s);
    const Options o = options_;
    res.set_chunked_content_provider("text/event-stream", [o, b, max_tokens, chat](size_t, httplib::DataSink& sink) {
      if (b == Behaviour::kSlow) sleep_s(o.slow_delay_s);
      for (int64_t i = 0; i < max_tokens; ++i) {
        if (b == Behaviour::kDrop && i == 2) return false;  // closes without the final chunk
        if (b == Behaviour::kMalformed && i == 1) {
          const std::string bad = "data: {\"choices\": [{\"text\": \"unterminated\n\n";
          sink.write(bad.data(), bad.size());
        }
        if (b == Behaviour::kErrorEvent && i == 1) {
          const std::string err = "data: {\"error\": {\"message\": \"overloaded\"}}\n\n";
          sink.write(err.data(), err.size());
        }
        const std::string ev = chunk_event(chat, " tok" + std::to_string(i));
        if (!sink.write(ev.data(), ev.size())) return false;
        sleep_s(o.token_gap_s);
      }
      nlohmann::json fin = {{"choices", {{{"index", 0}, {"text", ""}, {"finish_reason", "length"}}}}};
      nlohmann::json usage = {{"choices", nlohmann::json::array()},
                              {"usage", {{"prompt_tokens", 7}, {"completion_tokens", max_tokens}, {"total_tokens", 7 + max_tokens}}}};
      const std::string tail = "data: " + fin.dump() + "\n\ndata: " + usage.dump() + "\n\ndata: [DONE]\n\n";
      sink.write(tail.data(), tail.size());
      sink.done();
      return true;
    });
  }

  Options options_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int64_t> counter_{0};
};

}  // namespace fathom::loadgen::stub
