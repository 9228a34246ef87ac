// `fathom serve` as a process ($FATHOM_BIN): prints the address it listens on for --port 0,
// serves, and exits 0 on SIGTERM after finishing the request in flight.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

// Child process with its stdout on a pipe.
struct Child {
  pid_t pid = -1;           // process id
  std::FILE* out = nullptr; // its stdout
};

Child spawn(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  return {pid, fdopen(fds[0], "r")};
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(ServeCli, ListensOnAFreePortAndStopsOnSigterm) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (!bin) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  Child child = spawn({bin, "serve", "-m", tiny_model_path(), "--port", "0", "-t", "2", "-c", "256", "--model-alias", "cli"});
  ASSERT_GT(child.pid, 0);
  char line[256] = {};
  ASSERT_TRUE(std::fgets(line, sizeof line, child.out));
  const std::string prefix = "fathom serve: listening on http://127.0.0.1:";
  ASSERT_EQ(std::string(line).rfind(prefix, 0), 0u) << line;
  const int port = std::atoi(line + prefix.size());
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  int health = 0;
  for (int i = 0; i < 200 && health != 200; ++i) {
    if (auto res = c.Get("/health")) health = res->status;
    if (health != 200) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(health, 200);
  // A request in flight when SIGTERM arrives still completes.
  auto in_flight = std::async(std::launch::async, [port] {
    httplib::Client c2("127.0.0.1", port);
    c2.set_read_timeout(30, 0);
    return post_json(c2, "/v1/completions", {{"model", "cli"}, {"prompt", "Hi"}, {"max_tokens", 60}, {"ignore_eos", true}});
  });
  for (int i = 0; i < 400; ++i) {
    auto res = c.Get("/metrics");
    if (res && metric_value(res->body, "fathom_requests_running") == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(child.pid, SIGTERM);
  const Reply r = in_flight.get();
  EXPECT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 60);
  EXPECT_EQ(wait_exit(child.pid), 0);
  std::fclose(child.out);
}

// Reads the "listening on" line and waits for /health 200; the port, or 0.
int wait_ready(const Child& child) {
  char line[256] = {};
  if (!std::fgets(line, sizeof line, child.out)) return 0;
  const std::string prefix = "fathom serve: listening on http://127.0.0.1:";
  if (std::string(line).rfind(prefix, 0) != 0) return 0;
  const int port = std::atoi(line + prefix.size());
  httplib::Client c("127.0.0.1", port);
  for (int i = 0; i < 400; ++i) {
    auto res = c.Get("/health");
    if (res && res->status == 200) return port;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return 0;
}

TEST(ServeCli, KvPersistSavesOnSigtermAndRestoresOnStart) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (!bin) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/kv-persist-cli-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  const std::vector<std::string> argv = {bin, "serve", "-m", tiny_model_path(), "--port", "0", "-t", "2", "-c", "256",
                                         "--model-alias", "cli", "--temp", "0", "--kv-persist", dir};
  const json body = {{"model", "cli"}, {"prompt", "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog again."}, {"max_tokens", 8}, {"ignore_eos", true}};
  std::string first_text;
  {
    Child child = spawn(argv);
    const int port = wait_ready(child);
    ASSERT_GT(port, 0);
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    const Reply r = post_json(c, "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.text;
    first_text = r.body["choices"][0]["text"];
    kill(child.pid, SIGTERM);
    EXPECT_EQ(wait_exit(child.pid), 0);
    std::fclose(child.out);
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/serve-qwen2-tiny.prefix-cache"));
  Child child = spawn(argv);
  const int port = wait_ready(child);
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_GT(metric_value(metrics->body, "fathom_prefix_cache_restored_blocks"), 0);
  const Reply r = post_json(c, "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["choices"][0]["text"], first_text);
  metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_GT(metric_value(metrics->body, "fathom_prefix_cache_hit_rate"), 0.5);
  kill(child.pid, SIGTERM);
  EXPECT_EQ(wait_exit(child.pid), 0);
  std::fclose(child.out);
  std::filesystem::remove_all(dir);
}

TEST(ServeCli, SecondSignalCancelsAtOnceAndStillSavesTheCache) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (!bin) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  const std::string dir = std::string(FATHOM_TEST_TMP) + "/kv-persist-2sig-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  Child child = spawn({bin, "serve", "-m", tiny_model_path(), "--port", "0", "-t", "2", "-c", "8192", "--model-alias", "cli",
                       "--shutdown-timeout", "60", "--kv-persist", dir});
  const int port = wait_ready(child);
  ASSERT_GT(port, 0);
  auto in_flight = std::async(std::launch::async, [port] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return post_json(c, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 8000}, {"ignore_eos", true}});
  });
  httplib::Client c("127.0.0.1", port);
  for (int i = 0; i < 400; ++i) {
    auto res = c.Get("/metrics");
    if (res && metric_value(res->body, "fathom_requests_running") == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(child.pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = std::chrono::steady_clock::now();
  kill(child.pid, SIGTERM);  // the 60 s grace is cut short
  const Reply r = in_flight.get();
  EXPECT_EQ(wait_exit(child.pid), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(r.status, 503) << r.text;
  EXPECT_TRUE(std::filesystem::exists(dir + "/serve-qwen2-tiny.prefix-cache"));
  std::fclose(child.out);
  std::filesystem::remove_all(dir);
}

TEST(ServeCli, UsedPortExitsBeforeListening) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (!bin) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  Child first = spawn({bin, "serve", "-m", tiny_model_path(), "--port", "0", "-t", "1", "-c", "256"});
  const int port = wait_ready(first);
  ASSERT_GT(port, 0);
  Child second = spawn({bin, "serve", "-m", tiny_model_path(), "--port", std::to_string(port), "-t", "1", "-c", "256"});
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, second.out)) out += buf;
  std::fclose(second.out);
  EXPECT_EQ(wait_exit(second.pid), 1);
  EXPECT_EQ(out.find("listening"), std::string::npos) << out;
  kill(first.pid, SIGTERM);
  EXPECT_EQ(wait_exit(first.pid), 0);
  std::fclose(first.out);
}

TEST(ServeCli, HelpAndUsageErrors) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (!bin) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  Child help = spawn({bin, "serve", "--help"});
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, help.out)) text += buf;
  std::fclose(help.out);
  EXPECT_EQ(wait_exit(help.pid), 0);
  for (const char* option : {"--port", "--api-key", "--max-queue", "--parallel", "--audit-log", "--shutdown-timeout", "--kv-persist"})
    EXPECT_NE(text.find(option), std::string::npos) << option;
  Child no_model = spawn({bin, "serve", "--port", "0"});
  std::fclose(no_model.out);
  EXPECT_EQ(wait_exit(no_model.pid), 2);
  Child missing = spawn({bin, "serve", "-m", "/nonexistent.gguf", "--port", "0"});
  while (std::fgets(buf, sizeof buf, missing.out)) {
  }
  std::fclose(missing.out);
  EXPECT_EQ(wait_exit(missing.pid), 1);  // the model fails to load after the port opened
}

}  // namespace
}  // namespace fathom::server::test
