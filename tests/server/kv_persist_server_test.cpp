// `--kv-persist`: a server saves its prefix cache when it stops; the next one restores it, gets a
// prefix-cache hit on a prompt the first one saw and answers it with the same greedy text. A
// damaged file is ignored (reported in /metrics) and the server serves as usual. The SIGTERM path
// of the real process is covered in serve_cli_test.cpp.
#include <filesystem>
#include <fstream>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/kv-persist-" + name + "-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

// A prompt of well over two 16-token blocks.
const char* kPrompt =
    "You are a careful assistant. Answer briefly and precisely, cite the facts you use, and say so "
    "when you do not know. Question: why is the sky blue during the day and red at sunset?";

json completion_body() { return {{"model", "tiny"}, {"prompt", kPrompt}, {"max_tokens", 12}, {"ignore_eos", true}}; }

double metric(const Server& s, const std::string& name) {
  httplib::Client c = client_for(s);
  auto res = c.Get("/metrics");
  return res ? metric_value(res->body, name) : -1;
}

TEST(KvPersistServer, RestartedServerHitsThePrefixAndAnswersTheSame) {
  const std::string dir = fresh_dir("restart");
  std::string uncached_text;
  {
    ServerOptions o = test_options();
    o.engine.prefix_cache = false;
    auto plain = start_server(o);
    ASSERT_TRUE(plain);
    httplib::Client c = client_for(*plain);
    const Reply r = post_json(c, "/v1/completions", completion_body());
    ASSERT_EQ(r.status, 200) << r.text;
    uncached_text = r.body["choices"][0]["text"];
  }
  ServerOptions o = test_options();
  o.kv_persist_dir = dir;
  const std::string file = dir + "/serve-qwen2-tiny.prefix-cache";
  {
    auto first = start_server(o);
    ASSERT_TRUE(first);
    EXPECT_EQ(metric(*first, "fathom_prefix_cache_restored_blocks"), 0);
    EXPECT_EQ(metric(*first, "fathom_prefix_cache_restore_rejected"), 0);  // no file yet is not an error
    httplib::Client c = client_for(*first);
    const Reply r = post_json(c, "/v1/completions", completion_body());
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["choices"][0]["text"], uncached_text);
    first->shutdown(std::chrono::seconds(5));
  }
  ASSERT_TRUE(std::filesystem::exists(file));
  auto second = start_server(o);
  ASSERT_TRUE(second);
  EXPECT_GE(metric(*second, "fathom_prefix_cache_restored_blocks"), 2);
  EXPECT_EQ(metric(*second, "fathom_prefix_cache_hit_rate"), 0);
  httplib::Client c = client_for(*second);
  const Reply r = post_json(c, "/v1/completions", completion_body());
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["choices"][0]["text"], uncached_text);
  EXPECT_GT(metric(*second, "fathom_prefix_cache_hit_rate"), 0.5);
  second.reset();
  std::filesystem::remove_all(dir);
}

TEST(KvPersistServer, DamagedFileIsIgnoredAndReplacedAtShutdown) {
  const std::string dir = fresh_dir("damaged");
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/serve-qwen2-tiny.prefix-cache";
  {
    static const char kJunk[] = "FATHOMKV\x01\x00\x00\x00 this is not a prefix cache";
    std::ofstream out(file, std::ios::binary);
    out.write(kJunk, sizeof kJunk - 1);
  }
  ServerOptions o = test_options();
  o.kv_persist_dir = dir;
  {
    auto s = start_server(o);
    ASSERT_TRUE(s);
    EXPECT_EQ(metric(*s, "fathom_prefix_cache_restore_rejected"), 1);
    EXPECT_EQ(metric(*s, "fathom_prefix_cache_restored_blocks"), 0);
    httplib::Client c = client_for(*s);
    const Reply r = post_json(c, "/v1/completions", completion_body());
    EXPECT_EQ(r.status, 200) << r.text;
  }
  auto again = start_server(o);  // the first one rewrote the file at shutdown
  ASSERT_TRUE(again);
  EXPECT_EQ(metric(*again, "fathom_prefix_cache_restore_rejected"), 0);
  EXPECT_GE(metric(*again, "fathom_prefix_cache_restored_blocks"), 2);
  again.reset();
  std::filesystem::remove_all(dir);
}

TEST(KvPersistServer, ConflictingOptionsAreRefused) {
  ServerOptions o = test_options();
  o.kv_persist_dir = fresh_dir("conflict");
  o.engine.prefix_cache = false;
  EXPECT_FALSE(Server::create(o));
  o = test_options();
  o.kv_persist_dir = tiny_model_path();  // a file, not a folder
  EXPECT_FALSE(Server::create(o));
}

}  // namespace
}  // namespace fathom::server::test
