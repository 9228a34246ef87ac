// Prompt preparation (tokenizer/prompt.h), shared by run/chat, the server and the load generator:
// where BOS goes, which template renders a conversation, and the variables it sees.
#include <gtest/gtest.h>

#include "gguf/gguf.h"
#include "tokenizer/prompt.h"

namespace fathom {
namespace {

const std::string kShared = FATHOM_SHARED_DIR;

std::unique_ptr<Tokenizer> deepseek_v3() {
  const std::string dir = kShared + "/testdata/deepseek-v3/";
  auto tok = Tokenizer::from_hf_json(dir + "tokenizer.json", dir + "tokenizer_config.json");
  EXPECT_TRUE(tok.has_value()) << tok.status().to_string();
  return std::move(tok).value();
}

TEST(TokenizePrompt, BosOnceWhetherOrNotTheTextWritesIt) {
  const auto tok = deepseek_v3();
  ASSERT_TRUE(tok->add_bos());
  const int32_t bos = tok->bos_id();
  const std::vector<int32_t> body = tok->encode("Hello world", /*add_bos=*/false, /*parse_special=*/true);
  std::vector<int32_t> with_bos = {bos};
  with_bos.insert(with_bos.end(), body.begin(), body.end());
  EXPECT_EQ(tokenize_prompt(*tok, "Hello world"), with_bos);
  EXPECT_EQ(tokenize_prompt(*tok, tok->token_text(bos) + "Hello world"), with_bos);  // parsed, not doubled
  EXPECT_EQ(tokenize_prompt(*tok, "Hello world", /*allow_bos=*/false), body);
}

TEST(ChatFormatter, ModelTemplateUnlessOverridden) {
  const auto tok = deepseek_v3();
  ASSERT_TRUE(tok->chat_template().has_value());
  const ChatFormatter model(*tok);
  EXPECT_EQ(model.source(), *tok->chat_template());
  EXPECT_FALSE(model.plain_fallback());
  auto rendered = model.render(std::vector<ChatMessage>{{"user", "hi", ""}});
  ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
  EXPECT_EQ(*rendered, tok->token_text(tok->bos_id()) + "<｜User｜>hi<｜Assistant｜>");

  const ChatFormatter custom(*tok, "{{ bos_token }}|{{ eos_token }}|{% for m in messages %}{{ m['role'] }}={{ m['content'] }};"
                                   "{% endfor %}{% if add_generation_prompt %}>{% endif %}");
  EXPECT_FALSE(custom.plain_fallback());
  rendered = custom.render(std::vector<ChatMessage>{{"system", "S", ""}, {"user", "U", ""}});
  ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
  EXPECT_EQ(*rendered, tok->token_text(tok->bos_id()) + "|" + tok->token_text(tok->eos_id()) + "|system=S;user=U;>");
}

TEST(ChatFormatter, ExtraVariablesCannotReplaceTheContext) {
  const auto tok = deepseek_v3();
  const ChatFormatter f(*tok, "{{ flavour }}:{{ messages | length }}:{% if tools is defined %}{{ tools | length }}{% else %}-"
                              "{% endif %}:{{ add_generation_prompt }}");
  const nlohmann::ordered_json messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "a"}}});
  const nlohmann::json extra = {{"flavour", "x"}, {"add_generation_prompt", false}, {"messages", {1, 2, 3}}, {"tools", {1, 2}}};
  auto rendered = f.render(messages, nullptr, extra);
  ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
  EXPECT_EQ(*rendered, "x:1:-:True");  // tools not offered: not even the kwargs' tools
  rendered = f.render(messages, nlohmann::ordered_json::array({{{"type", "function"}}}), extra);
  ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
  EXPECT_EQ(*rendered, "x:1:1:True");
}

TEST(ChatFormatter, PlainFallbackForAModelWithoutTemplate) {
  auto file = gguf::GgufFile::open(kShared + "/models/tinyllamas-stories-260k-f32.gguf");
  ASSERT_TRUE(file.has_value()) << file.status().to_string();
  auto tok = Tokenizer::from_gguf(**file);
  ASSERT_TRUE(tok.has_value()) << tok.status().to_string();
  ASSERT_FALSE((*tok)->chat_template().has_value());
  const ChatFormatter f(**tok);
  EXPECT_TRUE(f.plain_fallback());
  EXPECT_EQ(f.source(), kPlainChatTemplate);
  auto rendered = f.render(std::vector<ChatMessage>{{"system", "S", ""}, {"user", "U", ""}, {"assistant", "A", ""}, {"user", "V", ""}});
  ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
  EXPECT_EQ(*rendered, "S\n\nUser: U\n\nAssistant: A\n\nUser: V\n\nAssistant:");
}

}  // namespace
}  // namespace fathom
