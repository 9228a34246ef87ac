// The official `openai` npm client against an in-process server (tests/server/openai_client_test.mjs).
// The package is installed once into FATHOM_TEST_TMP/npm; without node, npm or the registry the
// test is skipped, saying why.
#include <fstream>

#include "node_fixture.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

std::string shared_template(const std::string& name) {
  std::ifstream in(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/" + name);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

NodeScript openai_script() { return prepare_node_script("npm", {"openai", "ajv", "ajv-formats"}, "openai_client_test.mjs"); }

TEST(OpenAiNpmClient, DrivesTheServer) {
  const NodeScript node = openai_script();
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;
  ServerOptions o = test_options();
  o.api_keys = {"sk-npm-test"};
  o.chat_template = shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::string out;
  const int rc = run_command("node '" + node.script.string() + "' " + s->address() + " sk-npm-test tiny", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

// The forced tool-call checks of the script in the other tool-call formats (the test above
// covers R1's): V3.1, V3.2 and V4 DSML, Qwen2.5.
TEST(OpenAiNpmClient, ForcedToolCallsInEveryFormat) {
  const NodeScript node = openai_script();
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;
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
    const int rc = run_command("node '" + node.script.string() + "' " + s->address() + " sk-npm-test tiny tools", &out);
    EXPECT_EQ(rc, 0) << out;
    std::printf("[%s]\n%s", name, out.c_str());
  }
}

}  // namespace
}  // namespace fathom::server::test
