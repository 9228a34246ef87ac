// The official `openai` npm client against an in-process server (tests/server/openai_client_test.mjs).
// The package is installed once into FATHOM_TEST_TMP/npm; without node, npm or the registry the
// test is skipped, saying why.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "server_fixture.h"

namespace fathom::server::test {
namespace {

// Runs a shell command; its exit status and combined output.
int run_command(const std::string& command, std::string* output) {
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string shared_template(const std::string& name) {
  std::ifstream in(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/" + name);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The test script beside an npm install of openai, ajv and ajv-formats; "" and `why` when node,
// npm or the registry is missing.
std::string npm_script(std::string* why) {
  std::string out;
  if (run_command("node --version", &out) != 0) {
    *why = "node is not installed (apt-get install nodejs npm)";
    return "";
  }
  const std::filesystem::path dir = std::filesystem::path(FATHOM_TEST_TMP) / "npm";
  std::filesystem::create_directories(dir);
  if (!std::filesystem::exists(dir / "node_modules/openai/package.json") || !std::filesystem::exists(dir / "node_modules/ajv/package.json") ||
      !std::filesystem::exists(dir / "node_modules/ajv-formats/package.json")) {
    out.clear();
    if (run_command("npm --version", &out) != 0) {
      *why = "npm is not installed (apt-get install npm)";
      return "";
    }
    out.clear();
    const int rc = run_command("cd '" + dir.string() + "' && timeout 180 npm install --no-audit --no-fund --loglevel=error openai ajv ajv-formats", &out);
    if (rc != 0 || !std::filesystem::exists(dir / "node_modules/openai/package.json")) {
      *why = "could not install the openai, ajv and ajv-formats npm packages (registry unreachable?): " + out;
      return "";
    }
  }
  // The script imports 'openai', which node resolves from the node_modules beside the script.
  const std::filesystem::path script = dir / "openai_client_test.mjs";
  std::filesystem::copy_file(std::string(FATHOM_SOURCE_DIR) + "/tests/server/openai_client_test.mjs", script,
                             std::filesystem::copy_options::overwrite_existing);
  return script.string();
}

TEST(OpenAiNpmClient, DrivesTheServer) {
  std::string why;
  const std::string script = npm_script(&why);
  if (script.empty()) GTEST_SKIP() << why;
  ServerOptions o = test_options();
  o.api_keys = {"sk-npm-test"};
  o.chat_template = shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::string out;
  const int rc = run_command("node '" + script + "' " + s->address() + " sk-npm-test tiny", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

// The forced tool-call checks of the script in the other tool-call formats (the test above
// covers R1's): V3.1, V3.2 and V4 DSML, Qwen2.5.
TEST(OpenAiNpmClient, ForcedToolCallsInEveryFormat) {
  std::string why;
  const std::string script = npm_script(&why);
  if (script.empty()) GTEST_SKIP() << why;
  for (const char* name : {"deepseek-ai-DeepSeek-V3.1.jinja", "deepseek-ai-DeepSeek-V3.2.jinja", "deepseek-ai-DeepSeek-V4.jinja",
                           "Qwen-Qwen2.5-7B-Instruct.jinja"}) {
    SCOPED_TRACE(name);
    ServerOptions o = test_options();
    o.api_keys = {"sk-npm-test"};
    o.engine.n_ctx = 2048;  // the DSML templates' tool preambles are long
    o.chat_template = shared_template(name);
    auto s = start_server(o);
    ASSERT_TRUE(s);
    std::string out;
    const int rc = run_command("node '" + script + "' " + s->address() + " sk-npm-test tiny tools", &out);
    EXPECT_EQ(rc, 0) << out;
    std::printf("[%s]\n%s", name, out.c_str());
  }
}

}  // namespace
}  // namespace fathom::server::test
