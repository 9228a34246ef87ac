// Against the real server: `fathom serve` on a synthetic model in a child process, loaded by the
// server scenario over loopback. Skipped where this build has no `serve` command.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>

#include "model/synth.h"
#include "runtime/engine.h"
#include "tools/commands.h"

namespace fathom::loadgen {
namespace {

// A child process whose stdout we read; killed and reaped on destruction.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
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
    out_fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      // SIGTERM lets the server finish in-flight requests; don't wait forever for that.
      for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(100 * 1000);
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    if (out_fd_ >= 0) close(out_fd_);
  }
  bool started() const { return pid_ > 0 && out_fd_ >= 0; }

  // Reads stdout until a line matches `pattern`; returns its first capture group, "" on timeout/EOF.
  std::string wait_for_line(const std::regex& pattern, double timeout_s) {
    const double deadline = now_seconds() + timeout_s;
    for (;;) {
      for (size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
        const std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        std::smatch m;
        if (std::regex_search(line, m, pattern)) return m.size() > 1 ? m[1].str() : line;
      }
      const double left = deadline - now_seconds();
      if (left <= 0) return "";
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left * 1000) + 1) <= 0) return "";
      char buf[4096];
      const ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  pid_t pid_ = -1;       // child process
  int out_fd_ = -1;      // read end of its stdout
  std::string buffer_;   // stdout read but not yet split into lines
};

TEST(BenchLoadServe, ServerScenarioAgainstFathomServe) {
  const char* bin = std::getenv("FATHOM_BIN");
  if (bin == nullptr || access(bin, X_OK) != 0) GTEST_SKIP() << "FATHOM_BIN is not set (run through ctest)";
  const std::string model = std::string(FATHOM_TEST_TMP) + "/loadgen-serve-llama-tiny.gguf";
  SynthOptions so;
  so.arch = "llama";
  so.preset = "tiny";
  so.seed = 8;
  so.n_threads = 2;
  ASSERT_TRUE(synth_model(so, model).is_ok());

  Child server({bin, "serve", "-m", model, "--port", "0", "-np", "4", "-t", "2"});
  ASSERT_TRUE(server.started());
  const std::string address = server.wait_for_line(std::regex("listening on (http://[0-9.]+:[0-9]+)"), 20.0);
  ASSERT_FALSE(address.empty()) << "fathom serve did not print its address";
  // Requests before the model is loaded would be answered 503; wait for it (best effort: an
  // older server may not announce it).
  server.wait_for_line(std::regex("ready"), 20.0);

  ::testing::internal::CaptureStdout();
  const int rc = tools::cmd_bench_load({"--url", address + "/v1", "--scenario", "server", "--qps", "4", "--requests", "8",
                                        "--prompt-len", "16", "--output-len", "8", "--timeout", "30", "--json", "-q"});
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["requests"]["ok"], 8) << j.dump(2);
  EXPECT_EQ(j["requests"]["errors"], 0) << j.dump(2);
  EXPECT_EQ(j["latency_ms"]["ttft"]["count"].get<int64_t>() > 0, true);
  // --prompt-len is what the server counts: the words go through its /tokenize and are sent as
  // exactly 16 token ids (the tiny vocabulary splits the words into several tokens each).
  EXPECT_EQ(j["tokens"]["prompt"], 8 * 16) << j.dump(2);
}

}  // namespace
}  // namespace fathom::loadgen
