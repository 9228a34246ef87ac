// The official `ollama` npm client against an in-process server (tests/server/ollama_client_test.mjs):
// version, list, show, ps, chat and generate (streamed and not), format, abort, errors, and
// pull (--allow-pull) from tests/hub/fake_hf.py, an imitation of Hugging Face.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "node_fixture.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

TEST(OllamaNpmClient, DrivesTheServer) {
  const NodeScript node = prepare_node_script("npm-ollama", {"ollama"}, "ollama_client_test.mjs");
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;

  // fake_hf.py serves one repository holding the shared tiny model, for /api/pull.
  namespace fs = std::filesystem;
  const fs::path tmp = fs::path(FATHOM_TEST_TMP) / "ollama-npm-pull";
  fs::remove_all(tmp);
  fs::create_directories(tmp / "repos" / "fathom-test" / "tiny-GGUF");
  fs::copy_file(std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf",
                tmp / "repos" / "fathom-test" / "tiny-GGUF" / "tiny-F32.gguf");
  const fs::path port_file = tmp / "fake_hf.out";
  std::string pid_text;
  ASSERT_EQ(run_command("python3 '" + std::string(FATHOM_SOURCE_DIR) + "/tests/hub/fake_hf.py' --root '" +
                            (tmp / "repos").string() + "' > '" + port_file.string() + "' 2>&1 & echo $!",
                        &pid_text), 0);
  const pid_t fake_hf = static_cast<pid_t>(std::stol(pid_text));
  struct Stop {
    pid_t pid;
    ~Stop() { kill(pid, SIGTERM); }
  } stop{fake_hf};
  int hub_port = 0;
  for (int i = 0; i < 200 && hub_port == 0; ++i) {
    std::ifstream in(port_file);
    std::string word;
    if (in >> word >> hub_port && word != "PORT") hub_port = 0;
    if (hub_port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(hub_port, 0) << "fake_hf.py did not start";

  ServerOptions o = test_options();
  o.allow_pull = true;
  o.models_dir = (tmp / "store").string();
  o.pull_endpoint = "http://127.0.0.1:" + std::to_string(hub_port);
  o.api_keys = {"ollama-npm-test"};
  o.engine.n_ctx = 8192;  // a reply without a limit is still running when the client aborts it
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::string out;
  const int rc = run_command("node '" + node.script.string() + "' " + s->address() + " ollama-npm-test tiny fathom-test/tiny-GGUF", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace fathom::server::test
