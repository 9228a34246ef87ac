// Concurrency and client disconnects: 64 simultaneous streams each get the greedy text they get
// alone, and a client that drops mid-stream has its KV blocks freed within a second.
#include <chrono>
#include <thread>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

TEST(ServerLoad, SixtyFourConcurrentStreamsMatchSoloOutputs) {
  ServerOptions o = test_options();
  o.engine.n_seq_max = 8;
  o.engine.n_ctx = 128;
  o.max_queue = 64;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  constexpr int kRequests = 64;
  auto request = [](int i) {
    return json{{"prompt", "Request " + std::to_string(i) + " says"}, {"max_tokens", 8}, {"ignore_eos", true}, {"stream", true}};
  };
  std::vector<std::string> solo(kRequests);
  {
    auto c = client_for(*s);
    for (int i = 0; i < kRequests; ++i) {
      const Reply r = post_json(c, "/v1/completions", request(i));
      ASSERT_EQ(r.status, 200);
      solo[i] = streamed_text(r.text);
    }
  }
  std::vector<Reply> together(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i)
    threads.emplace_back([&, i] {
      auto c = client_for(*s);
      together[i] = post_json(c, "/v1/completions", request(i));
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(together[i].status, 200) << "request " << i << ": " << together[i].text;
    EXPECT_EQ(sse_payloads(together[i].text).back(), "[DONE]");
    EXPECT_EQ(streamed_text(together[i].text), solo[i]) << "request " << i;
  }
  auto c = client_for(*s);
  const std::string m = c.Get("/metrics")->body;
  EXPECT_EQ(metric_value(m, "fathom_kv_blocks_used"), 0);
  EXPECT_EQ(metric_value(m, "fathom_generated_tokens_total"), 2 * kRequests * 8);
}

TEST(ServerLoad, DisconnectFreesKvBlocks) {
  ServerOptions o = test_options();
  o.engine.n_ctx = 4096;
  o.engine.n_seq_max = 1;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  auto metrics = [&] {
    auto c = client_for(*s);
    return c.Get("/metrics")->body;
  };
  const double total_blocks = metric_value(metrics(), "fathom_kv_blocks_free");
  double used_at_drop = -1;
  {
    // Reads the stream until a few tokens arrived, then hangs up.
    httplib::Client c("127.0.0.1", s->port());
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.set_header("Content-Type", "application/json");
    req.body = json{{"messages", json::array({{{"role", "user"}, {"content", "Go on forever."}}})},
                    {"ignore_eos", true}, {"stream", true}}.dump();
    size_t received = 0;
    req.content_receiver = [&](const char*, size_t n, uint64_t, uint64_t) {
      received += n;
      if (received < 2000) return true;
      used_at_drop = metric_value(metrics(), "fathom_kv_blocks_used");
      return false;  // the client closes the connection
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    c.send(req, res, err);
    EXPECT_GE(received, 2000u);
  }
  EXPECT_GT(used_at_drop, 0);  // still generating when the client left
  const auto t0 = std::chrono::steady_clock::now();
  double used = used_at_drop;
  while (used != 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    used = metric_value(metrics(), "fathom_kv_blocks_used");
  }
  EXPECT_EQ(used, 0) << "KV blocks still held 1 s after the client disconnected";
  EXPECT_EQ(metric_value(metrics(), "fathom_kv_blocks_free"), total_blocks);
  EXPECT_EQ(metric_value(metrics(), "fathom_requests_running"), 0);
}

}  // namespace
}  // namespace fathom::server::test
