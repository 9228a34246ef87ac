// Depth limits of the chat-template engine: a template or context nested past the limit is an
// error value naming the limit and the place, never a stack overflow; nesting just inside the
// limit still renders.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_ast.h"

namespace fathom {
namespace {

using nlohmann::json;

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

Expected<std::string> render(const std::string& source, const json& context = json::object()) {
  return render_template(source, context, /*hf_chat_mode=*/false);
}

void expect_too_deep(const std::string& source, const std::string& what) {
  auto r = render(source);
  ASSERT_FALSE(r) << what << " rendered " << r->substr(0, 40);
  EXPECT_NE(r.status().message().find("nested deeper than 256 levels at line 1"), std::string::npos)
      << what << ": " << r.status().message();
}

constexpr int kLimit = jinja::kMaxTemplateDepth;

TEST(ChatTemplateLimits, ParenthesesPastTheLimit) {
  // 100,000 nested parentheses segfaulted the parser before the limit existed.
  expect_too_deep("{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}", "100k parentheses");
  expect_too_deep("{{ " + repeat("(", kLimit) + "1" + repeat(")", kLimit) + " }}", "limit + 1 parentheses");
  // The output expression is one level, so limit - 1 parentheses fit.
  auto ok = render("{{ " + repeat("(", kLimit - 1) + "7" + repeat(")", kLimit - 1) + " }}");
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, "7");
}

TEST(ChatTemplateLimits, ListsDictsAndCallsPastTheLimit) {
  expect_too_deep("{{ " + repeat("[", 100000) + repeat("]", 100000) + " }}", "nested lists");
  expect_too_deep("{{ " + repeat("{'a': ", 100000) + "1" + repeat("}", 100000) + " }}", "nested dicts");
  expect_too_deep("{{ " + repeat("range(", 100000) + "1" + repeat(")", 100000) + " }}", "nested calls");
  auto ok = render("{{ (" + repeat("[", kLimit - 2) + repeat("]", kLimit - 2) + ") | length }}");
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, "1");
}

TEST(ChatTemplateLimits, OperatorAndFilterChainsPastTheLimit) {
  // Chains build a tall tree without recursing in the parser; evaluation and destruction would.
  expect_too_deep("{{ " + repeat("not ", 100000) + "1 }}", "not chain");
  expect_too_deep("{{ " + repeat("-", 100000) + "1 }}", "unary minus chain");
  expect_too_deep("{{ 1" + repeat(" + 1", 100000) + " }}", "addition chain");
  expect_too_deep("{{ 'a'" + repeat(" | lower", 100000) + " }}", "filter chain");
  expect_too_deep("{{ x" + repeat(".a", 100000) + " }}", "attribute chain");
  expect_too_deep("{{ 1" + repeat(" if 1 else 1", 100000) + " }}", "conditional chain");
  auto sum = render("{{ 1" + repeat(" + 1", kLimit - 1) + " }}");
  ASSERT_TRUE(sum) << sum.status().message();
  EXPECT_EQ(*sum, std::to_string(kLimit));
  auto negations = render("{{ " + repeat("not ", kLimit - 2) + "true }}");
  ASSERT_TRUE(negations) << negations.status().message();
  EXPECT_EQ(*negations, "True");
}

TEST(ChatTemplateLimits, NestedBlocksPastTheLimit) {
  expect_too_deep(repeat("{% if 1 %}", 100000) + "x" + repeat("{% endif %}", 100000), "nested if");
  expect_too_deep(repeat("{% for i in [1] %}", 100000) + "x" + repeat("{% endfor %}", 100000), "nested for");
  expect_too_deep(repeat("{% macro m() %}", 100000) + repeat("{% endmacro %}", 100000), "nested macro");
  // Each block is a level, and the innermost condition one more.
  auto ok = render(repeat("{% if 1 %}", kLimit - 1) + "x" + repeat("{% endif %}", kLimit - 1));
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, "x");
}

TEST(ChatTemplateLimits, RecursiveMacroStops) {
  auto r = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("evaluation nested deeper than 512 levels"), std::string::npos)
      << r.status().message();
  // Found by the fuzzer: with text around the call, each recursion costs two levels, and 1,024
  // levels overflowed the stack under AddressSanitizer.
  EXPECT_FALSE(render("{% macro f(n) %} f({{ f(n + 1) }}){% endmacro %}{{ f(0) }}"));
  // Bounded recursion (a schema walker, say) still works.
  auto ok = render("{% macro f(n) %}{% if n > 0 %}({{ f(n - 1) }}){% endif %}{% endmacro %}{{ f(80) }}");
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, repeat("(", 80) + repeat(")", 80));
}

TEST(ChatTemplateLimits, ValuesGrownInALoopStop) {
  auto deep = render("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                     "{{ ns.x }}");
  ASSERT_FALSE(deep);
  EXPECT_NE(deep.status().message().find("value nested deeper than 256 levels"), std::string::npos)
      << deep.status().message();
  auto ok = render("{% set ns = namespace(x=1) %}{% for i in range(200) %}{% set ns.x = [ns.x] %}{% endfor %}"
                   "{{ ns.x | length }}");
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, "1");
  // A namespace holding itself would be a reference cycle (leaked, and printed without end).
  auto cycle = render("{% set ns = namespace(x=1) %}{% set ns.x = [ns] %}{{ ns }}");
  ASSERT_FALSE(cycle);
  EXPECT_NE(cycle.status().message().find("cannot hold a namespace"), std::string::npos) << cycle.status().message();
  EXPECT_FALSE(render("{% set a = namespace() %}{% set b = namespace(x=a) %}{{ b }}"));
  auto repeated = render("{{ 'x' * 1000000000000 }}");
  ASSERT_FALSE(repeated);
  EXPECT_NE(repeated.status().message().find("MemoryError"), std::string::npos) << repeated.status().message();
}

TEST(ChatTemplateLimits, RunawayRendersStop) {
  // Shared halves make the value's printed size double per iteration while memory grows by one list.
  auto doubled = render("{% set ns = namespace(x=[1]) %}{% for i in range(100) %}{% set ns.x = [ns.x, ns.x] %}"
                        "{% endfor %}{{ ns.x }}");
  ASSERT_FALSE(doubled);
  EXPECT_NE(doubled.status().message().find("MemoryError: value of more than"), std::string::npos)
      << doubled.status().message();
  auto strings = render("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s | length }}");
  ASSERT_FALSE(strings);
  EXPECT_NE(strings.status().message().find("MemoryError"), std::string::npos) << strings.status().message();
  auto loops = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  ASSERT_FALSE(loops);
  EXPECT_NE(loops.status().message().find("more than 1000000 steps"), std::string::npos) << loops.status().message();
  // A long but finite loop is fine.
  auto ok = render("{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% set ns.n = ns.n + i %}{% endfor %}"
                   "{{ ns.n }}");
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(*ok, "4999950000");
}

TEST(ChatTemplateLimits, DeepContextIsRefused) {
  json deep = 1;
  for (int i = 0; i < 100000; ++i) deep = json::array({std::move(deep)});
  auto r = render("{{ x }}", json{{"x", deep}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("context nests arrays and objects deeper than 256"), std::string::npos)
      << r.status().message();
  json ok = 1;
  for (int i = 0; i < 200; ++i) ok = json::array({std::move(ok)});
  auto rendered = render("{{ x | length }}", json{{"x", ok}});
  ASSERT_TRUE(rendered) << rendered.status().message();
  EXPECT_EQ(*rendered, "1");
}

}  // namespace
}  // namespace fathom
