// `fathom chat` on a real terminal (tmux): Ctrl-C on a line of text clears it and the chat goes
// on, Ctrl-C at an empty prompt and Ctrl-D end it with status 0; the weights' loading line is
// gone by the first prompt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "../cli_util.h"

namespace fathom {
namespace {

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

std::string fathom_bin() {
  const char* bin = std::getenv("FATHOM_BIN");
  return bin ? bin : FATHOM_BIN_PATH;
}

// One tmux server of its own (a private socket), killed with the object.
class TmuxSession {
 public:
  TmuxSession(const std::string& name, const std::string& command)
      : socket_("fathom-test-" + std::to_string(getpid()) + "-" + name) {
    // The shell stays after the command, so its exit status can be read from the pane.
    started_ = test::run_command(tmux() + " new-session -d -s main -x 100 -y 30 '" + command +
                                 "; echo EXIT=$?; sleep 120'").code == 0;
  }
  ~TmuxSession() { test::run_command(tmux() + " kill-server 2>/dev/null"); }
  bool started() const { return started_; }
  void keys(const std::string& keys) const { test::run_command(tmux() + " send-keys -t main " + keys); }
  void text(const std::string& text) const { test::run_command(tmux() + " send-keys -t main -l '" + text + "'"); }
  std::string screen() const { return test::run_command(tmux() + " capture-pane -p -t main").output; }
  // Polls the screen until `done` holds (true) or 60 s pass (false).
  bool wait_for(const std::function<bool(const std::string&)>& done) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done(screen())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string tmux() const { return "tmux -L " + socket_; }
  std::string socket_;
  bool started_ = false;
};

// The screen's lines, trailing blanks dropped.
std::vector<std::string> lines(const std::string& screen) {
  std::vector<std::string> out;
  std::istringstream in(screen);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out.push_back(line);
  }
  while (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

std::string last_line(const std::string& screen) {
  const std::vector<std::string> l = lines(screen);
  return l.empty() ? "" : l.back();
}

size_t count(const std::string& screen, const std::string& what) {
  size_t n = 0;
  for (size_t at = screen.find(what); at != std::string::npos; at = screen.find(what, at + 1)) ++n;
  return n;
}

bool have_tmux() { return test::run_command("command -v tmux >/dev/null 2>&1").code == 0; }

std::string chat_command() { return fathom_bin() + " chat -m " + kStories + " -t 2 --temp 0 -n 6"; }

TEST(ChatTerminal, CtrlCClearsTheLineThenEndsTheChatAtAnEmptyPrompt) {
  if (!have_tmux()) GTEST_SKIP() << "tmux is not installed (scripts/install-deps.sh installs it)";
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << "no " << kStories;
  const std::string saved = std::string(FATHOM_TEST_TMP) + "/chat-tty-" + std::to_string(getpid()) + ".json";
  TmuxSession tmux("ctrl-c", chat_command());
  ASSERT_TRUE(tmux.started());
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>>"; })) << tmux.screen();
  EXPECT_EQ(tmux.screen().find("loading "), std::string::npos) << tmux.screen();  // erased before the prompt

  // A line of text, then Ctrl-C: the line is empty again, the chat still runs.
  tmux.text("abc");
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>> abc"; })) << tmux.screen();
  tmux.keys("C-c");
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>>"; })) << tmux.screen();
  // The cursor is at the line's start after Ctrl-A: the whole line goes, not only what follows.
  tmux.text("xyz");
  tmux.keys("C-a");
  tmux.keys("C-c");
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>>" && s.find("xyz") == std::string::npos; }))
      << tmux.screen();
  EXPECT_EQ(tmux.screen().find("EXIT="), std::string::npos) << tmux.screen();

  // The next message is the conversation's first: nothing of the cleared lines went with it.
  tmux.text("Once upon");
  tmux.keys("Enter");
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return count(s, ">>>") == 2 && last_line(s) == ">>>"; }))
      << tmux.screen();
  tmux.text("/save " + saved);
  tmux.keys("Enter");
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return s.find("(saved 2 messages") != std::string::npos; }))
      << tmux.screen();
  std::ifstream in(saved);
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(doc.is_object() && doc["messages"].is_array() && doc["messages"].size() == 2) << doc.dump();
  EXPECT_EQ(doc["messages"][0]["role"], "user");
  EXPECT_EQ(doc["messages"][0]["content"], "Once upon");

  // Ctrl-C at the empty prompt ends the chat cleanly.
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>>"; })) << tmux.screen();
  tmux.keys("C-c");
  EXPECT_TRUE(tmux.wait_for([](const std::string& s) { return s.find("EXIT=0") != std::string::npos; })) << tmux.screen();
  std::remove(saved.c_str());
}

TEST(ChatTerminal, CtrlDEndsTheChat) {
  if (!have_tmux()) GTEST_SKIP() << "tmux is not installed (scripts/install-deps.sh installs it)";
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << "no " << kStories;
  TmuxSession tmux("ctrl-d", chat_command());
  ASSERT_TRUE(tmux.started());
  ASSERT_TRUE(tmux.wait_for([](const std::string& s) { return last_line(s) == ">>>"; })) << tmux.screen();
  tmux.keys("C-d");
  EXPECT_TRUE(tmux.wait_for([](const std::string& s) { return s.find("EXIT=0") != std::string::npos; })) << tmux.screen();
}

}  // namespace
}  // namespace fathom
