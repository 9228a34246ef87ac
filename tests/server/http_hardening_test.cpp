// The HTTP layer against careless and hostile clients: slow and idle connections cost no
// thread, limits answer with the right status, pipelined requests are all answered, a client
// that leaves has its generation cancelled and billed, shutdown is bounded.
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "raw_client.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double metric(const Server& s, const std::string& name) {
  auto c = client_for(s);
  auto res = c.Get("/metrics");
  return res ? metric_value(res->body, name) : -2;
}

template <typename F>
bool eventually(F f, milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return f();
}

TEST(HttpHardening, SlowAndIdleConnectionsDoNotStarveOthers) {
  ServerOptions o = test_options();
  o.header_timeout_seconds = 3;
  o.keep_alive_seconds = 30;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  // 200 connections trickling a head byte by byte and 200 idle ones: with a thread per
  // connection (the old server had 28) nobody else would be answered.
  std::vector<RawConnection> trickling, idle;
  for (int i = 0; i < 200; ++i) {
    trickling.emplace_back(s->port());
    ASSERT_TRUE(trickling.back().ok());
    ASSERT_TRUE(trickling.back().send("G"));
    idle.emplace_back(s->port());
    ASSERT_TRUE(idle.back().ok());
  }
  for (RawConnection& c : trickling) ASSERT_TRUE(c.send("E"));
  auto t0 = Clock::now();
  RawConnection fresh(s->port());
  ASSERT_TRUE(fresh.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(status_of(fresh.read_response(milliseconds(2000))), 200);
  // The targets are 100 ms and 1 s (scripts/serve-hostile.sh measures them on a quiet
  // machine); here other tests share the two cores, so the bounds keep some slack.
  EXPECT_LT(ms_since(t0), 500);
  t0 = Clock::now();
  ASSERT_TRUE(fresh.send(post_request("/v1/completions", R"({"prompt":"Hi","max_tokens":16,"ignore_eos":true})")));
  const std::string r = fresh.read_response(milliseconds(5000));
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_LT(ms_since(t0), 3000);
  // The head deadline runs from the first byte, however slowly the rest trickles in.
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(milliseconds(500));
    for (RawConnection& c : trickling) c.send("T");
  }
  EXPECT_TRUE(trickling[0].closed_by_peer(milliseconds(2500)));
  EXPECT_FALSE(idle[0].closed_by_peer(milliseconds(10)));  // keep-alive 30 s
}

TEST(HttpHardening, IdleKeepAliveConnectionsClose) {
  ServerOptions o = test_options();
  o.keep_alive_seconds = 0.3;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  RawConnection c(s->port());
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(status_of(c.read_response(milliseconds(2000))), 200);
  const auto t0 = Clock::now();
  EXPECT_TRUE(c.closed_by_peer(milliseconds(3000)));
  EXPECT_GT(ms_since(t0), 200);
}

TEST(HttpHardening, ConnectionCapAnswers503) {
  ServerOptions o = test_options();
  o.max_connections = 4;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::vector<RawConnection> held;
  for (int i = 0; i < 4; ++i) {
    held.emplace_back(s->port());
    ASSERT_TRUE(held.back().send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_EQ(status_of(held.back().read_response(milliseconds(2000))), 200);
  }
  RawConnection extra(s->port());
  const std::string r = extra.read_all(milliseconds(2000));
  EXPECT_EQ(status_of(r), 503) << r;
  EXPECT_NE(r.find("too_many_connections"), std::string::npos);
  EXPECT_NE(r.find("Retry-After: 1"), std::string::npos);
  held.clear();  // places free up as the server sees them close
  EXPECT_TRUE(eventually([&] {
    RawConnection again(s->port());
    again.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    return status_of(again.read_response(milliseconds(1000))) == 200;
  }, milliseconds(2000)));
}

TEST(HttpHardening, PipelinedRequestsAreAllAnsweredInOrder) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  RawConnection c(s->port());
  ASSERT_TRUE(c.send(post_request("/v1/completions", R"({"prompt":"One","max_tokens":3,"ignore_eos":true})") +
                     "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
                     post_request("/v1/completions", R"({"prompt":"Two","max_tokens":2,"ignore_eos":true})")));
  const std::string a = c.read_response(milliseconds(10000));
  const std::string b = c.read_response(milliseconds(10000));
  const std::string d = c.read_response(milliseconds(10000));
  EXPECT_EQ(status_of(a), 200);
  EXPECT_NE(a.find("\"completion_tokens\":3"), std::string::npos) << a;
  EXPECT_EQ(status_of(b), 200);
  EXPECT_NE(b.find("\"status\":\"ok\""), std::string::npos) << b;
  EXPECT_EQ(status_of(d), 200);
  EXPECT_NE(d.find("\"completion_tokens\":2"), std::string::npos) << d;
}

TEST(HttpHardening, LimitsGetTheirStatus) {
  ServerOptions o = test_options();
  o.max_body_bytes = 4096;
  o.max_header_bytes = 2048;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  {
    RawConnection c(s->port());
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
    const std::string r = c.read_all(milliseconds(2000));
    EXPECT_EQ(status_of(r), 431) << r;
  }
  {
    RawConnection c(s->port());
    std::string chunked = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 8; ++i) chunked += "400\r\n" + std::string(1024, ' ') + "\r\n";
    chunked += "0\r\n\r\n";
    c.send(chunked);
    const std::string r = c.read_all(milliseconds(2000));
    EXPECT_EQ(status_of(r), 413) << r;
    EXPECT_NE(r.find("request_too_large"), std::string::npos);
  }
  {
    RawConnection c(s->port());
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n{\"prompt\":\"Hi\"}");
    const std::string r = c.read_response(milliseconds(2000));
    EXPECT_EQ(status_of(r), 415) << r;
    EXPECT_NE(r.find("unsupported_media_type"), std::string::npos);
  }
  {
    RawConnection c(s->port());
    c.send("BLAH\r\n\r\n");
    EXPECT_EQ(status_of(c.read_all(milliseconds(2000))), 400);
  }
  // Expect: 100-continue gets the interim answer before the body is sent.
  {
    RawConnection c(s->port());
    const std::string body = R"({"prompt":"Hi","max_tokens":1})";
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n");
    const std::string interim = c.read_until([](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; }, milliseconds(2000));
    EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << interim;
    c.send(body);
    std::string r = c.read_until([](const std::string& b) { return b.find("\"usage\"") != std::string::npos; }, milliseconds(5000));
    EXPECT_NE(r.find("HTTP/1.1 200 OK"), std::string::npos) << r;
  }
  auto c = client_for(*s);
  const std::string m = c.Get("/metrics")->body;
  EXPECT_NE(m.find("status=\"431\""), std::string::npos) << m;
  EXPECT_NE(m.find("status=\"413\""), std::string::npos) << m;
  EXPECT_NE(m.find("fathom_requests_total{route=\"/v1/completions\",status=\"415\"} 1"), std::string::npos) << m;
}

TEST(HttpHardening, Http10StreamIsNotChunked) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  RawConnection c(s->port());
  c.send(post_request("/v1/completions", R"({"prompt":"Hi","max_tokens":3,"ignore_eos":true,"stream":true})", "", "HTTP/1.0"));
  const std::string r = c.read_all(milliseconds(10000));
  EXPECT_TRUE(c.peer_closed());
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_EQ(r.find("Transfer-Encoding"), std::string::npos) << r;
  EXPECT_NE(r.find("\r\n\r\ndata: {"), std::string::npos) << r;
  EXPECT_NE(r.find("data: [DONE]\n\n"), std::string::npos) << r;
  // A plain HTTP/1.0 request is answered and closed.
  RawConnection d(s->port());
  d.send("GET /health HTTP/1.0\r\n\r\n");
  const std::string h = d.read_all(milliseconds(2000));
  EXPECT_EQ(status_of(h), 200);
  EXPECT_NE(h.find("Connection: close"), std::string::npos);
}

TEST(HttpHardening, SecondServerOnAUsedPortFails) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  ServerOptions o = test_options();
  o.port = s->port();
  auto created = Server::create(o);
  ASSERT_TRUE(created);
  const Status st = (*created)->start();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("address already in use"), std::string::npos) << st.to_string();
}

// A server with a long context and an audit log at `log` (emptied first).
std::unique_ptr<Server> start_audited(const std::string& log) {
  std::remove(log.c_str());
  ServerOptions o = test_options();
  o.engine.n_ctx = 4096;
  o.audit_log = log;
  return start_server(o);
}

TEST(HttpHardening, DroppedNonStreamedRequestIsCancelledAndBilled) {
  const std::string log = std::string(FATHOM_TEST_TMP) + "/serve-cancel-audit-" + std::to_string(getpid()) + ".jsonl";
  auto s = start_audited(log);
  ASSERT_TRUE(s);
  {
    RawConnection c(s->port());
    c.send(post_request("/v1/completions", R"({"prompt":"Hi","max_tokens":4000,"ignore_eos":true})"));
    ASSERT_TRUE(eventually([&] { return metric(*s, "fathom_requests_running") == 1; }, milliseconds(5000)));
    std::this_thread::sleep_for(milliseconds(100));
  }  // the client leaves without its answer
  const auto t0 = Clock::now();
  ASSERT_TRUE(eventually([&] { return metric(*s, "fathom_requests_running") == 0; }, milliseconds(3000)));
  EXPECT_LT(ms_since(t0), 1500);  // the target is 1 s; slack for a loaded machine
  EXPECT_EQ(metric(*s, "fathom_requests_cancelled_total"), 1);
  const double generated = metric(*s, "fathom_generated_tokens_total");
  EXPECT_GT(generated, 0);
  EXPECT_LT(generated, 4000);
  EXPECT_EQ(metric(*s, "fathom_kv_blocks_used"), 0);
  s->shutdown(milliseconds(0));
  std::ifstream in(log);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const json rec = json::parse(line);
  EXPECT_EQ(rec["status"], 499) << line;
  EXPECT_EQ(rec["completion_tokens"].get<double>(), generated) << line;
  EXPECT_GT(rec["prompt_tokens"].get<int>(), 0);
}

TEST(HttpHardening, AbortedStreamIsBilled) {
  const std::string log = std::string(FATHOM_TEST_TMP) + "/serve-abort-audit-" + std::to_string(getpid()) + ".jsonl";
  auto s = start_audited(log);
  ASSERT_TRUE(s);
  {
    RawConnection c(s->port());
    c.send(post_request("/v1/completions", R"({"prompt":"Hi","max_tokens":3000,"ignore_eos":true,"stream":true})"));
    // Leave after some 20 tokens have been streamed.
    c.read_until([](const std::string& b) {
      size_t n = 0, pos = 0;
      while ((pos = b.find("data: ", pos)) != std::string::npos) ++n, ++pos;
      return n >= 20;
    }, milliseconds(10000));
  }
  ASSERT_TRUE(eventually([&] { return metric(*s, "fathom_requests_running") == 0; }, milliseconds(1000)));
  EXPECT_EQ(metric(*s, "fathom_requests_cancelled_total"), 1);
  const double generated = metric(*s, "fathom_generated_tokens_total");
  EXPECT_GE(generated, 20);
  s->shutdown(milliseconds(0));
  std::ifstream in(log);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const json rec = json::parse(line);
  EXPECT_EQ(rec["completion_tokens"].get<double>(), generated) << line;
}

TEST(HttpHardening, MetricsLabelsAndProcessGauges) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  auto c = client_for(*s);
  post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"stream", true}});
  c.Get("/metrics");
  const std::string m = c.Get("/metrics")->body;
  EXPECT_EQ(m.find("status=\"-1\""), std::string::npos) << m;
  EXPECT_NE(m.find("fathom_requests_total{route=\"/v1/completions\",status=\"200\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("fathom_requests_total{route=\"/metrics\",status=\"200\"} 1"), std::string::npos) << m;
  EXPECT_GT(metric_value(m, "process_resident_memory_bytes"), 1e6);
  EXPECT_GT(metric_value(m, "process_open_fds"), 2);
  const double start = metric_value(m, "process_start_time_seconds");
  EXPECT_GT(start, static_cast<double>(std::time(nullptr)) - 3600);
  // Boot time and start ticks are whole seconds and clock ticks: allow a little slack.
  EXPECT_LE(start, static_cast<double>(std::time(nullptr)) + 5);
}

TEST(HttpHardening, KeepAliveRequestsHaveNoNagleDelay) {
  auto s = start_server(test_options());
  ASSERT_TRUE(s);
  RawConnection c(s->port());
  std::vector<double> ms;
  for (int i = 0; i < 60; ++i) {
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_EQ(status_of(c.read_response(milliseconds(2000))), 200);
    ms.push_back(ms_since(t0));
  }
  std::sort(ms.begin(), ms.end());
  // Nagle with delayed ACKs shows as +40 ms on most requests; a median far below is the test.
  EXPECT_LT(ms[ms.size() / 2], 20) << "median " << ms[ms.size() / 2] << " ms";
}

TEST(HttpHardening, ShutdownIsBoundedWithSlowClients) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/kvp-bounded-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  ServerOptions o = test_options();
  o.engine.n_ctx = 4096;
  o.kv_persist_dir = dir;
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::vector<RawConnection> slow;
  for (int i = 0; i < 20; ++i) {
    slow.emplace_back(s->port());
    slow.back().send("POST /v1/completions HTTP/1.1\r\nHo");
  }
  std::vector<std::future<std::string>> streams;
  for (int i = 0; i < 4; ++i)
    streams.push_back(std::async(std::launch::async, [port = s->port()] {
      RawConnection c(port);
      c.send(post_request("/v1/completions", R"({"prompt":"Hi","max_tokens":4000,"ignore_eos":true,"stream":true})"));
      return c.read_all(milliseconds(20000));
    }));
  ASSERT_TRUE(eventually([&] { return metric(*s, "fathom_requests_running") == 4; }, milliseconds(5000)));
  const auto t0 = Clock::now();
  s->shutdown(milliseconds(500));
  const double took = ms_since(t0);
  EXPECT_LT(took, 2500);  // grace 500 ms + cancel + flush, with slack for a loaded machine
  for (auto& f : streams) {
    const std::string r = f.get();
    EXPECT_NE(r.find("shutting_down"), std::string::npos) << r.substr(0, 300);
    EXPECT_NE(r.find("data: [DONE]"), std::string::npos);
  }
  for (RawConnection& c : slow) EXPECT_TRUE(c.closed_by_peer(milliseconds(100)));
  EXPECT_TRUE(std::filesystem::exists(dir + "/serve-qwen2-tiny.prefix-cache"));
}

}  // namespace
}  // namespace fathom::server::test
