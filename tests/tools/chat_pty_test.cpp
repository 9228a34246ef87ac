// `fathom chat` on a terminal (a pseudo-terminal, so libedit reads the lines as a user types
// them), driven past its context for several turns: every turn still answers with story text,
// the drop notice appears, and /bye ends it with exit code 0. The session is written to
// test-tmp/chat-context-transcript.txt.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace fathom {
namespace {

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

// A child process on a pseudo-terminal and everything it printed.
class PtySession {
 public:
  explicit PtySession(const std::vector<std::string>& argv) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      setenv("TERM", "dumb", 1);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~PtySession() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0; }
  const std::string& output() const { return output_; }

  // Reads until `marker` appears in the output after offset `from`; false at the deadline or EOF.
  bool wait_for(const std::string& marker, size_t from, std::chrono::steady_clock::time_point deadline) {
    while (output_.find(marker, from) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0 || !read_some(static_cast<int>(left))) return false;
    }
    return true;
  }
  void type(const std::string& line) {
    const std::string text = line + "\r";
    ASSERT_EQ(write(fd_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  // Exit code after reading the rest of the output; -1 when it did not exit by the deadline.
  int wait_exit(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        while (read_some(50)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      read_some(50);
    }
  }

 private:
  bool read_some(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;  // EIO once the child closed the terminal
    output_.append(buf, static_cast<size_t>(n));
    return true;
  }
  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string output_;
};

// Words of two or more letters in text.
int count_words(const std::string& text) {
  int words = 0, run = 0;
  for (char ch : text + " ") {
    if (std::isalpha(static_cast<unsigned char>(ch))) {
      ++run;
    } else {
      words += run >= 2 ? 1 : 0;
      run = 0;
    }
  }
  return words;
}

TEST(ChatPty, KeepsAnsweringPastTheContext) {
  // 64 tokens of context: each exchange takes about 40, so from the second turn on the oldest
  // turns must go, and the answers (up to 100 tokens) run into the end of the context.
  PtySession chat({FATHOM_BIN_PATH, "chat", "-m", kStories, "-c", "64", "-n", "100", "--temp", "0", "--seed", "1"});
  ASSERT_TRUE(chat.started());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(18);
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Once upon a time there was a cat",
                                            "The sun was", "Once upon a time"};
  size_t at = 0;
  ASSERT_TRUE(chat.wait_for(">>> ", at, deadline)) << chat.output();
  for (const std::string& prompt : prompts) {
    at = chat.output().size();
    chat.type(prompt);
    ASSERT_TRUE(chat.wait_for(">>> ", at, deadline)) << "no prompt after '" << prompt << "':\n" << chat.output();
    const std::string turn = chat.output().substr(at);
    // The echoed input and the notices aside, the answer is story text.
    std::string answer;
    for (size_t b = 0, e; b < turn.size(); b = e + 1) {
      e = turn.find('\n', b);
      if (e == std::string::npos) e = turn.size();
      const std::string line = turn.substr(b, e - b);
      if (line.find(prompt) == std::string::npos && line.find("(context full") == std::string::npos) answer += line + "\n";
    }
    EXPECT_GE(count_words(answer), 5) << "turn '" << prompt << "':\n" << turn;
  }
  at = chat.output().size();
  chat.type("/bye");
  EXPECT_EQ(chat.wait_exit(deadline), 0) << chat.output();
  EXPECT_NE(chat.output().find("(context full: dropped the"), std::string::npos) << chat.output();
  EXPECT_NE(chat.output().find("(context full: the answer stopped at the end of the context"), std::string::npos);
  EXPECT_EQ(chat.output().find("context holds"), std::string::npos) << chat.output();  // no turn was refused
  std::ofstream(std::string(FATHOM_TEST_TMP) + "/chat-context-transcript.txt") << chat.output();
}

}  // namespace
}  // namespace fathom
