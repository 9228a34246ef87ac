// The built-in web chat in a real browser: Debian's chromium, headless, driven by puppeteer-core
// (tests/server/webchat_browser_test.mjs): API key on 401, streaming, reasoning, stop, reload,
// markdown safety. Leaves a screenshot in FATHOM_TEST_TMP/webchat.png (docs/webchat.png is one).
// Skipped, saying why, without chromium, node, npm or the registry.
#include <fstream>

#include "node_fixture.h"
#include "server_fixture.h"

namespace fathom::server::test {
namespace {

TEST(WebChatBrowser, ChatsStopsAndRemembers) {
  const char* chromium = std::getenv("CHROMIUM");
  const std::string browser = chromium ? chromium : "/usr/bin/chromium";
  if (!std::filesystem::exists(browser)) GTEST_SKIP() << browser << " is not installed (apt-get install chromium)";
  const NodeScript node = prepare_node_script("npm-browser", {"puppeteer-core"}, "webchat_browser_test.mjs");
  if (!node.skip_reason.empty()) GTEST_SKIP() << node.skip_reason;

  ServerOptions o = test_options();
  o.api_keys = {"webchat-test-key"};
  o.engine.n_ctx = 8192;  // room for a reply long enough to stop mid-stream (the tiny model is fast)
  std::ifstream tmpl(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  o.chat_template.assign(std::istreambuf_iterator<char>(tmpl), {});
  auto s = start_server(o);
  ASSERT_TRUE(s);
  const std::string screenshot = std::string(FATHOM_TEST_TMP) + "/webchat.png";
  std::string out;
  const int rc = run_command("timeout 60 node '" + node.script.string() + "' " + s->address() + " webchat-test-key '" +
                                 screenshot + "'", &out);
  EXPECT_EQ(rc, 0) << out;
  std::printf("%s", out.c_str());
  EXPECT_TRUE(std::filesystem::exists(screenshot));
}

}  // namespace
}  // namespace fathom::server::test
