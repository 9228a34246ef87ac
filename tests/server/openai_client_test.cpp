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

TEST(OpenAiNpmClient, DrivesTheServer) {
  std::string out;
  if (run_command("node --version", &out) != 0) GTEST_SKIP() << "node is not installed (apt-get install nodejs npm)";
  const std::filesystem::path dir = std::filesystem::path(FATHOM_TEST_TMP) / "npm";
  std::filesystem::create_directories(dir);
  if (!std::filesystem::exists(dir / "node_modules/openai/package.json") || !std::filesystem::exists(dir / "node_modules/ajv/package.json") ||
      !std::filesystem::exists(dir / "node_modules/ajv-formats/package.json")) {
    out.clear();
    if (run_command("npm --version", &out) != 0) GTEST_SKIP() << "npm is not installed (apt-get install npm)";
    out.clear();
    const int rc = run_command("cd '" + dir.string() + "' && timeout 180 npm install --no-audit --no-fund --loglevel=error openai ajv ajv-formats", &out);
    if (rc != 0 || !std::filesystem::exists(dir / "node_modules/openai/package.json"))
      GTEST_SKIP() << "could not install the openai, ajv and ajv-formats npm packages (registry unreachable?): " << out;
  }
  // The script imports 'openai', which node resolves from the node_modules beside the script.
  const std::filesystem::path script = dir / "openai_client_test.mjs";
  std::filesystem::copy_file(std::string(FATHOM_SOURCE_DIR) + "/tests/server/openai_client_test.mjs", script,
                             std::filesystem::copy_options::overwrite_existing);

  ServerOptions o = test_options();
  o.api_keys = {"sk-npm-test"};
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  out.clear();
  const int rc = run_command("node '" + script.string() + "' " + s->address() + " sk-npm-test tiny", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace fathom::server::test
