// Unit tests of the Jinja subset interpreter: expressions, filters, tests, methods, scoping,
// loops, macros, whitespace control, and errors with positions. Expected renderings were
// produced by python's jinja2 (render_jinja.py) and are checked in, so these tests need no
// python.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace fathom {
namespace {

using ojson = nlohmann::ordered_json;

struct Snippet {
  const char* source;           // template
  const char* context;          // JSON object of variables
  const char* chat_mode;        // jinja2's rendering with trim_blocks + lstrip_blocks
  const char* default_mode;     // jinja2's rendering with default settings; null: same as chat_mode
};

// clang-format off
const Snippet kSnippets[] = {
    {R"({{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 3 ** 2 }})",
     R"({})",
     R"(7|9|3|-4|2|3.5|64)",
     nullptr},
    {R"({{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.00001 }}|{{ 1.5e-7 }}|{{ 3.0 * 2 }}|{{ 10 / 4 }})",
     R"({})",
     R"(1.0|0.30000000000000004|1e+16|1000000000000000.0|1e-05|1.5e-07|6.0|2.5)",
     nullptr},
    {R"({{ true }}|{{ none }}|{{ [1, 'a', none, true, 2.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1,) }}|{{ (1, 'b') }})",
     R"({})",
     R"(True|None|[1, 'a', None, True, 2.5]|{'k': 'v', 'n': [1]}|(1,)|(1, 'b'))",
     nullptr},
    {R"({{ "it's" }}|{{ ['it\'s', "q\""] }}|{{ 'a' 'b' }}|{{ '\u00e9\x41\n'|length }})",
     R"({})",
     R"(it's|["it's", 'q"']|ab|3)",
     nullptr},
    {R"({{ 'abc'[::-1] }}|{{ 'héllo'[1:3] }}|{{ x[1:] }}|{{ x[:-1] }}|{{ x[::2] }}|{{ x[-1] }}|{{ 'héllo'[1] }}|{{ x[10] }})",
     R"({"x": [1, 2, 3, 4]})",
     R"(cba|él|[2, 3, 4]|[1, 2, 3]|[1, 3]|4|é|)",
     nullptr},
    {R"({{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a-b-c'.rsplit('-', 1) }})",
     R"({})",
     R"(a b|a|a | a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|['a-b', 'c'])",
     nullptr},
    {R"({{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'MiXé'.upper() }}|{{ 'MiXÉ'.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('bc') }})",
     R"({})",
     R"(True|True|bba|MIXÉ|mixé|Hello World|Hello|2|2)",
     nullptr},
    {R"({{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}|{{ d.get('zz') }}|{{ d.get('zz', 5) }}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %})",
     R"({"d": {"b": 1, "a": 2}})",
     R"([('b', 1), ('a', 2)]|['b', 'a']|[1, 2]|2|None|5|b=1;a=2;)",
     nullptr},
    {R"({{ x | length }}|{{ 'héllo' | length }}|{{ d | length }}|{{ nope | length }}|{{ x | first }}|{{ x | last }}|{{ x | join(', ') }}|{{ x | reverse | list }}|{{ x | sum }}|{{ x | max }}|{{ x | min }})",
     R"({"x": [3, 1, 2], "d": {"a": 1}})",
     R"(3|5|1|0|3|2|3, 1, 2|[2, 1, 3]|6|3|1)",
     nullptr},
    {R"({{ '  t  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'aXa' | replace('a', 'b') }}|{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ '3.7' | int }}|{{ 3.7 | int }}|{{ '2.5' | float }}|{{ 5 | string }}|{{ [1] | string }})",
     R"({})",
     R"(t|AB|ab|bXb|43|0|3|3|2.5|5|[1])",
     nullptr},
    {R"({{ nope | default('d') }}|{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ none | default('d') }}|{{ x | default('d') }})",
     R"({"x": 0})",
     R"(d||d|None|0)",
     nullptr},
    {R"({{ m | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ m | rejectattr('role', 'equalto', 'user') | list | length }}|{{ m | selectattr('tool') | list | length }}|{{ ['a', 'b'] | map('upper') | list }}|{{ [1, 0, 2] | select | list }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }})",
     R"({"m": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool": true}, {"role": "user", "content": "c"}]})",
     R"(a,c|1|1|['A', 'B']|[1, 2]|[1, 3]|[1, 3])",
     nullptr},
    {R"({{ v | tojson }}|{{ v | tojson(indent=2) }}|{{ v | tojson(sort_keys=true) }}|{{ 'é"\n' | tojson }}|{{ 'é' | tojson(true) }}|{{ v | tojson(separators=(',', ':')) }})",
     R"({"v": {"z": [1, 2.5, null, true], "a": "x", "e": {}, "l": []}})",
     R"({"z": [1, 2.5, null, true], "a": "x", "e": {}, "l": []}|{
  "z": [
    1,
    2.5,
    null,
    true
  ],
  "a": "x",
  "e": {},
  "l": []
}|{"a": "x", "e": {}, "l": [], "z": [1, 2.5, null, true]}|"é\"\n"|"\u00e9"|{"z":[1,2.5,null,true],"a":"x","e":{},"l":[]})",
     nullptr},
    {R"({{ x is defined }}|{{ nope is defined }}|{{ nope is undefined }}|{{ n is none }}|{{ 'a' is string }}|{{ d is mapping }}|{{ x is iterable }}|{{ 1 is iterable }}|{{ x is sequence }}|{{ 1 is number }}|{{ 1.5 is number }}|{{ true is true }}|{{ 1 is true }}|{{ false is false }}|{{ 'a' is equalto 'a' }}|{{ 3 is divisibleby 3 }}|{{ x is not none }}|{{ 2 is even }})",
     R"({"x": [1], "n": null, "d": {}})",
     R"(True|False|True|True|True|True|True|False|True|True|True|True|False|True|True|True|True|True)",
     nullptr},
    {R"({{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 'a' in 'cat' }}|{{ 'z' not in 'cat' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ 'a' != 'b' }}|{{ [1, 2] == [1, 2] }}|{{ 'b' > 'a' }}|{{ not 0 }}|{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ '' and 'y' }})",
     R"({})",
     R"(True|False|True|True|True|True|True|True|True|True|True|True|x|y|)",
     nullptr},
    {R"({{ 'yes' if x else 'no' }}|{{ 'yes' if not x else 'no' }}|{{ 'only' if x }}|[{{ 'only' if not x }}]|{{ x ~ 1 ~ none }}|{{ 'a' ~ nope ~ 'b' }})",
     R"({"x": 1})",
     R"(yes|no|only|[]|11None|ab)",
     nullptr},
    {R"({% set ns = namespace(count=0, names=[]) %}{% for i in range(5) %}{% if i is odd %}{% set ns.count = ns.count + i %}{% endif %}{% endfor %}{{ ns.count }}|{% for i in range(3) %}{% set local = i %}{% endfor %}[{{ local }}]|{% set t = 'top' %}{% for i in [1] %}{{ t }}{% set t = 'inner' %}{{ t }}{% endfor %}{{ t }})",
     R"({})",
     R"(4|[]|topinnertop)",
     nullptr},
    {R"({% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}{% if not loop.last %},{% endif %}{% endfor %}|{% for x in items if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in items %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for x in items %}{{ loop.previtem }}>{{ loop.nextitem }} {% endfor %})",
     R"({"items": [1, 2, 3]})",
     R"(1/0/3/3/True/False,2/1/2/3/False/False,3/2/1/3/False/True|2:1/2 3:2/2 |empty|aba|>2 1>3 2> )",
     nullptr},
    {R"({% for x in items %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor %}|{% for k in d %}{{ k }}{% endfor %})",
     R"({"items": [1, 2, 3, 4, 5], "d": {"x": 1, "y": 2}})",
     R"(13|[h][é]|xy)",
     nullptr},
    {R"({% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }})",
     R"({})",
     R"(Hi Ann! Hi Bob? Hi Cy.)",
     nullptr},
    {R"({% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]|{% raw %}{{ not rendered }}{% endraw %}|{# comment #}after)",
     R"({})",
     R"([inner 2]|{{ not rendered }}|after)",
     nullptr},
    {R"(a
  {% if true %}
    b
  {% endif %}
c {{ 'x' }}  
  {%- if true -%}  d  {%- endif %}
e
  {%+ if true %}f{% endif %}
{# c #}
g
)",
     R"({})",
     R"(a
    b
c xde
  fg)",
     R"(a
  
    b
  
c xd
e
  f

g)"},
    {R"({{ '%s and %d' % ('x', 3) }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}|{{ 'a' + 'b' }}|{{ x.y.z }}|{{ x['y']['z'] }}|{{ x.nope }}|{{ d['items'] }})",
     R"({"x": {"y": {"z": "deep"}}, "d": {"items": "key wins"}})",
     R"(x and 3|abab|[1, 2]|ab|deep|deep||key wins)",
     nullptr},
};
// clang-format on

TEST(JinjaInterpreter, SnippetsMatchJinja2) {
  for (const Snippet& s : kSnippets) {
    SCOPED_TRACE(s.source);
    const ojson context = ojson::parse(s.context);
    for (bool chat_mode : {true, false}) {
      const auto got = render_template(s.source, context, chat_mode);
      ASSERT_TRUE(got.has_value()) << got.status().to_string();
      const char* expected = (!chat_mode && s.default_mode) ? s.default_mode : s.chat_mode;
      EXPECT_EQ(got.value(), expected) << (chat_mode ? "chat mode" : "default mode");
    }
  }
}

std::string render_ok(const std::string& source, const ojson& context = ojson::object()) {
  const auto got = render_template(source, context);
  EXPECT_TRUE(got.has_value()) << got.status().to_string();
  return got.has_value() ? got.value() : "";
}

Status render_error(const std::string& source, const ojson& context = ojson::object()) {
  const auto got = render_template(source, context);
  EXPECT_FALSE(got.has_value()) << "rendered: " << (got.has_value() ? got.value() : "");
  return got.has_value() ? Status::ok() : got.status();
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

TEST(JinjaInterpreter, TrailingNewlineDroppedOnce) {
  EXPECT_EQ(render_ok("a\n"), "a");
  EXPECT_EQ(render_ok("a\n\n"), "a\n");
  EXPECT_EQ(render_ok("a\r\nb\rc"), "a\nb\nc");  // newlines normalised like jinja2
}

TEST(JinjaInterpreter, DictKeepsInsertionOrder) {
  const ojson context = ojson::parse(R"({"d": {"zeta": 1, "alpha": 2, "mid": 3}})");
  EXPECT_EQ(render_ok("{% for k in d %}{{ k }} {% endfor %}{{ d | tojson }}", context),
            R"(zeta alpha mid {"zeta": 1, "alpha": 2, "mid": 3})");
}

TEST(JinjaInterpreter, UndefinedBehavesLikeJinja2) {
  EXPECT_EQ(render_ok("[{{ nope }}]{{ nope is defined }}{% for x in nope %}x{% endfor %}{{ nope | length }}"
                      "{{ 'a' in nope }}{{ not nope }}"),
            "[]False0FalseTrue");
  // A missing attribute of a defined value is Undefined; one more step is an error.
  EXPECT_EQ(render_ok("[{{ d.missing }}]", ojson{{"d", ojson::object()}}), "[]");
  const Status st = render_error("{{ d.missing.deeper }}", ojson{{"d", ojson::object()}});
  EXPECT_TRUE(contains(st.message(), "UndefinedError")) << st.message();
  EXPECT_TRUE(contains(st.message(), "'dict object' has no attribute 'missing'")) << st.message();
  EXPECT_TRUE(contains(render_error("{{ nope + 'x' }}").message(), "'nope' is undefined"));
}

TEST(JinjaInterpreter, RuntimeErrorsNamePosition) {
  const Status st = render_error("line one\n{{ 'a' + 1 }}");
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(st.message(), "line 2, column 8")) << st.message();
  EXPECT_TRUE(contains(st.message(), "can only concatenate str (not \"int\") to str")) << st.message();
  EXPECT_TRUE(contains(render_error("{{ 1 // 0 }}").message(), "ZeroDivisionError"));
  EXPECT_TRUE(contains(render_error("{{ [1].append(2) }}").message(), "SecurityError"));
  EXPECT_TRUE(contains(render_error("{% set x = 1 %}{% set x.attr = 2 %}").message(), "non-namespace"));
}

TEST(JinjaInterpreter, SyntaxErrorsNamePosition) {
  Status st = render_error("ok\n  {% if x %}never closed");
  EXPECT_TRUE(contains(st.message(), "unexpected end of template, expected 'elif' or 'else' or 'endif'")) << st.message();
  st = render_error("{{ 1 + }}");
  EXPECT_TRUE(contains(st.message(), "line 1, column 8")) << st.message();
  st = render_error("{{ 'unterminated }}");
  EXPECT_TRUE(contains(st.message(), "unterminated string")) << st.message();
  st = render_error("{% frobnicate %}");
  EXPECT_TRUE(contains(st.message(), "unknown or misplaced tag 'frobnicate'")) << st.message();
  st = render_error("{{ (1 }}");
  EXPECT_FALSE(st.is_ok());
}

TEST(JinjaInterpreter, UnsupportedConstructsAreNamed) {
  Status st = render_error("abc\n   {% include 'other.jinja' %}");
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(st.message(), "'{% include %}' at line 2, column 7")) << st.message();
  st = render_error("{% for x in y recursive %}{% endfor %}");
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(st.message(), "'recursive' for loop")) << st.message();
  st = render_error("{{ x | from_json }}", ojson{{"x", "{}"}});
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(st.message(), "unsupported filter 'from_json'")) << st.message();
  EXPECT_TRUE(contains(st.message(), "line 1, column 8")) << st.message();
  st = render_error("{% generation %}x{% endgeneration %}");
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
  st = render_error("{{ f(*args) }}");
  EXPECT_EQ(st.code(), ErrorCode::kUnsupported);
}

TEST(JinjaInterpreter, RaiseExceptionKeepsMessage) {
  const Status st = render_error("{% if messages | length == 0 %}{{ raise_exception('No messages!') }}{% endif %}",
                                 ojson{{"messages", ojson::array()}});
  EXPECT_TRUE(contains(st.message(), "No messages!")) << st.message();
}

TEST(JinjaInterpreter, StrftimeNowFormatsLocalTime) {
  const std::string year = render_ok("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
}

TEST(JinjaInterpreter, NestedBracesInsideTags) {
  EXPECT_EQ(render_ok("{{ {'a': {'b': 1}} }}"), "{'a': {'b': 1}}");
  EXPECT_EQ(render_ok("{{ {'a': {'b': 1}}['a']['b'] }}"), "1");
}

TEST(JinjaValue, FloatReprMatchesPython) {
  using jinja::format_float;
  EXPECT_EQ(format_float(0.0), "0.0");
  EXPECT_EQ(format_float(-0.0), "-0.0");
  EXPECT_EQ(format_float(1.0), "1.0");
  EXPECT_EQ(format_float(123456789.123), "123456789.123");
  EXPECT_EQ(format_float(1e16), "1e+16");
  EXPECT_EQ(format_float(9999999999999998.0), "9999999999999998.0");
  EXPECT_EQ(format_float(1e-5), "1e-05");
  EXPECT_EQ(format_float(0.0001), "0.0001");
  EXPECT_EQ(format_float(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(format_float(5e-324), "5e-324");
  EXPECT_EQ(format_float(1.0 / 0.0), "inf");
}

TEST(JinjaLexer, PositionsCountCodePoints) {
  const auto tokens = jinja::tokenize("é{{ x }}", {});
  ASSERT_TRUE(tokens.has_value());
  ASSERT_GE(tokens->size(), 3u);
  EXPECT_EQ((*tokens)[1].kind, jinja::TokenKind::kVarBegin);
  EXPECT_EQ((*tokens)[1].pos.column, 2);
  EXPECT_EQ((*tokens)[2].text, "x");
  EXPECT_EQ((*tokens)[2].pos.column, 5);
}

}  // namespace
}  // namespace fathom
