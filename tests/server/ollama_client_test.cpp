// The official `ollama` npm client against an in-process server (tests/server/ollama_client_test.mjs):
// version, list, show, ps, chat and generate (streamed and not), format, abort, errors.
#include <fstream>

#include "node_fixture.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

TEST(OllamaNpmClient, DrivesTheServer) {
  const NodeScript node = prepare_node_script("npm-ollama", {"ollama"}, "ollama_client_test.mjs");
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;

  ServerOptions o = test_options();
  o.api_keys = {"ollama-npm-test"};
  o.engine.n_ctx = 8192;  // a reply without a limit is still running when the client aborts it
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  std::string out;
  const int rc = run_command("node '" + node.script.string() + "' " + s->address() + " ollama-npm-test tiny", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace fathom::server::test
