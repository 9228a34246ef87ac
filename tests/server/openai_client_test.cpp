// The official `openai` npm client against an in-process server (tests/server/openai_client_test.mjs).
// The package is installed once into FATHOM_TEST_TMP/npm; without node, npm or the registry the
// test is skipped, saying why.
#include <fstream>

#include "node_fixture.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

TEST(OpenAiNpmClient, DrivesTheServer) {
  const NodeScript node = prepare_node_script("npm", {"openai", "ajv", "ajv-formats"}, "openai_client_test.mjs");
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;

  ServerOptions o = test_options();
  o.api_keys = {"sk-npm-test"};
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::string out;
  const int rc = run_command("node '" + node.script.string() + "' " + s->address() + " sk-npm-test tiny", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace fathom::server::test
