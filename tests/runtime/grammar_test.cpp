// Constrained decoding: the GBNF parser, JSON Schema -> grammar, the plain recognizer and its
// fast automaton twin, fast token masks against the per-token reference on real vocabularies,
// and generation through the engine and the CLI with a schema.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "../cli_util.h"
#include "model/synth.h"
#include "runtime/engine.h"
#include "runtime/grammar/grammar.h"
#include "runtime/grammar/matcher.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

using json = nlohmann::ordered_json;

std::shared_ptr<const Grammar> gbnf(const std::string& text) {
  auto g = grammar_from_gbnf(text);
  EXPECT_TRUE(g) << g.status().to_string() << "\n" << text;
  return g ? *g : nullptr;
}

// Whole-string membership by both recognizers; they must agree on every prefix too.
bool accepts(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  PlainRecognizer plain(g);
  GrammarAutomaton fast(g);
  int32_t c = fast.initial();
  bool plain_ok = true;
  for (char ch : text) {
    plain_ok = plain.advance(static_cast<uint8_t>(ch));
    c = fast.next(c, static_cast<uint8_t>(ch));
    EXPECT_EQ(plain_ok, c >= 0) << "recognizers disagree on " << text;
    if (!plain_ok) return false;
  }
  EXPECT_EQ(plain.accepting(), fast.accepting(c)) << text;
  return plain.accepting();
}

const char* kJsonGbnf = R"(# json.gbnf in the llama.cpp style
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
)";

const char* kArithmeticGbnf = R"G(root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
)G";

TEST(Gbnf, ParsesLlamaStyleGrammars) {
  auto j = gbnf(kJsonGbnf);
  ASSERT_TRUE(j);
  EXPECT_TRUE(accepts(j, R"({"a": [1, 2.5e3, "x\"y", true, null, {}], "b\u00e9": "caf\u00e9 ✓"})"));
  EXPECT_TRUE(accepts(j, "{\n  \"k\": -0.5\n}"));
  EXPECT_FALSE(accepts(j, R"({"a": })"));
  EXPECT_FALSE(accepts(j, R"({"a": 1,})"));
  EXPECT_FALSE(accepts(j, "{\"a\": \"\x01\"}"));
  auto a = gbnf(kArithmeticGbnf);
  ASSERT_TRUE(a);
  EXPECT_TRUE(accepts(a, "x +2 = 4\n(a*b) = c\n"));
  EXPECT_FALSE(accepts(a, "x + = 4\n"));
  EXPECT_FALSE(accepts(a, "x = 4"));  // missing the newline
  auto list = gbnf("root ::= item{2,3}\nitem ::= \"- \" [^\\n]+ \"\\n\"\n");
  ASSERT_TRUE(list);
  EXPECT_TRUE(accepts(list, "- a\n- b\n"));
  EXPECT_TRUE(accepts(list, "- a\n- é\n- c\n"));
  EXPECT_FALSE(accepts(list, "- a\n"));
  EXPECT_FALSE(accepts(list, "- a\n- b\n- c\n- d\n"));
  // Alternatives may continue on the next line; '.' is any character, UTF-8 included.
  auto multi = gbnf("root ::= \"a\" .\n  | \"b\"?\n");
  ASSERT_TRUE(multi);
  EXPECT_TRUE(accepts(multi, "a✓"));
  EXPECT_TRUE(accepts(multi, ""));
  EXPECT_TRUE(accepts(multi, "b"));
  EXPECT_FALSE(accepts(multi, "a\xE2\x9C"));  // a truncated UTF-8 sequence is not a character
  EXPECT_FALSE(accepts(multi, "a\xC0\x80"));  // overlong encodings are not UTF-8
}

TEST(Gbnf, RepetitionBounds) {
  auto g = gbnf("root ::= \"ab\"{2,4} [x]{3} [0-9]{1,}\n");
  ASSERT_TRUE(g);
  EXPECT_TRUE(accepts(g, "ababxxx1"));
  EXPECT_TRUE(accepts(g, "ababababxxx123"));
  EXPECT_FALSE(accepts(g, "abxxx1"));
  EXPECT_FALSE(accepts(g, "ababababababxxx1"));
  EXPECT_FALSE(accepts(g, "ababxx1"));
  EXPECT_FALSE(accepts(g, "ababxxx"));
}

TEST(Gbnf, ErrorsNameTheProblemAndWhere) {
  struct Case {
    const char* text;
    const char* expected;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"root ::= \"abc\n", "line 1 column 10: unclosed string literal"},
           {"root ::= foo\n", "'foo' is used but never defined (line 1)"},
           {"start ::= \"a\"\n", "no 'root' rule"},
           {"root ::= [a-z\n", "unclosed character class"},
           {"root ::= (\"a\" | \"b\"\n", "unclosed '('"},
           {"root ::= \"a\"{3,1}\n", "the maximum is below the minimum"},
           {"root ::= \"a\"\nroot ::= \"b\"\n", "line 2 column 1: rule 'root' is defined twice"},
           {"root ::= root \"a\" | \"b\"\n", "left-recursive"},
           {"root ::= (\"a\"?)*\n", "repeats something that can be empty"},
           {"root ::= \"a\" \\q\n", "unexpected character"},
           {"root ::= \"\\q\"\n", "unknown escape"},
           {"root ::= [z-a]\n", "reversed"},
           {"root ::= \"a\"{100000}\n", "repetition bound"},
           {"root ::= <think>\n", "token references"},
           {"", "empty"},
           {"root \"a\"\n", "expected '::='"},
       }) {
    auto g = grammar_from_gbnf(c.text);
    ASSERT_FALSE(g) << c.text;
    EXPECT_NE(g.status().message().find(c.expected), std::string::npos) << c.text << " -> " << g.status().message();
  }
  std::string deep = "root ::= " + std::string(100, '(') + "\"a\"" + std::string(100, ')') + "\n";
  auto g = grammar_from_gbnf(deep);
  ASSERT_FALSE(g);
  EXPECT_NE(g.status().message().find("nested deeper than 64"), std::string::npos) << g.status().message();
  GrammarLimits small;
  small.max_text_bytes = 10;
  EXPECT_FALSE(grammar_from_gbnf("root ::= \"aaaaaaaaa\"\n", small));
}

TEST(Gbnf, AmbiguityIsBoundedNotExponential) {
  // Every split of the input is a parse: stacks are deduplicated, so this stays small.
  auto g = gbnf("root ::= x*\nx ::= \"a\" | \"aa\" | \"aaa\"\n");
  ASSERT_TRUE(g);
  EXPECT_TRUE(accepts(g, std::string(200, 'a')));
}

// ---- JSON Schema ----

// A second, independent reading of the supported keywords: random documents the schema accepts.
class DocGenerator {
 public:
  DocGenerator(const json& root, uint64_t seed) : root_(root), rng_(seed) {}
  json generate(const json& s, int depth = 0) {
    if (s.contains("$ref")) {
      const std::string ref = s["$ref"];
      const size_t slash = ref.find('/', 2);
      return generate(root_[ref.substr(2, slash - 2)][ref.substr(slash + 1)], depth + 1);
    }
    if (s.contains("const")) return s["const"];
    if (s.contains("enum")) return s["enum"][pick(s["enum"].size())];
    if (s.contains("anyOf")) return generate(s["anyOf"][pick(s["anyOf"].size())], depth);
    if (s.contains("oneOf")) return generate(s["oneOf"][pick(s["oneOf"].size())], depth);
    std::string type = "any";
    if (s.contains("type")) type = s["type"].is_array() ? s["type"][pick(s["type"].size())].get<std::string>() : s["type"].get<std::string>();
    else if (s.contains("properties") || s.contains("additionalProperties")) type = "object";
    if (type == "any") {
      const char* types[] = {"string", "integer", "number", "boolean", "null", "object", "array"};
      type = types[pick(depth > 2 ? 5 : 7)];
    }
    if (type == "string") return string_of(s);
    if (type == "integer") return static_cast<int64_t>(rng_() % 2000001) - 1000000;
    if (type == "number") return (static_cast<double>(rng_() % 20001) - 10000.0) / 8.0;
    if (type == "boolean") return rng_() % 2 == 0;
    if (type == "null") return nullptr;
    if (type == "array") {
      const size_t min = s.value("minItems", 0), max = s.value("maxItems", 4);
      json a = json::array();
      const size_t n = min + pick(max - min + 1);
      for (size_t i = 0; i < n; ++i) a.push_back(generate(s.contains("items") ? s["items"] : json::object(), depth + 1));
      return a;
    }
    json o = json::object();
    if (s.contains("properties")) {
      std::vector<std::string> req = s.value("required", std::vector<std::string>{});
      for (const auto& [k, sub] : s["properties"].items())
        // Optional properties thin out with depth: pretty-printed indentation is bounded (20).
        if (std::find(req.begin(), req.end(), k) != req.end() || (depth < 6 && rng_() % 2 == 0)) o[k] = generate(sub, depth + 1);
    } else if (!(s.contains("additionalProperties") && s["additionalProperties"].is_boolean())) {
      const json value = s.contains("additionalProperties") ? s["additionalProperties"] : json::object();
      for (size_t i = pick(3); i > 0; --i) o[string_of(json::object()).get<std::string>() + std::to_string(i)] = generate(value, depth + 1);
    }
    return o;
  }

 private:
  size_t pick(size_t n) { return static_cast<size_t>(rng_() % n); }
  json string_of(const json& s) {
    const std::string format = s.value("format", "");
    auto digits = [&](int n, int mod) {
      std::string d;
      for (int i = 0; i < n; ++i) d += static_cast<char>('0' + rng_() % mod);
      return d;
    };
    const std::string date = digits(4, 10) + "-0" + std::to_string(1 + pick(9)) + "-1" + digits(1, 10);
    const std::string time = "1" + digits(1, 10) + ":" + digits(1, 6) + digits(1, 10) + ":0" + digits(1, 10) + (pick(2) ? "Z" : ".25+02:00");
    if (format == "date") return date;
    if (format == "time") return time;
    if (format == "date-time") return date + "T" + time;
    if (format == "uuid") return "123e4567-e89b-12d3-a456-4266141740" + digits(2, 10);
    static const std::vector<std::string> chars{"a", "Z", " ", "\"", "\\", "\n", "\t", "\x01", "é", "✓", "😀", "/", "{", "}"};
    const size_t min = s.value("minLength", 0), max = s.value("maxLength", 12);
    std::string out;
    for (size_t i = 0, n = min + pick(max - min + 1); i < n; ++i) out += chars[pick(chars.size())];
    return out;
  }
  const json& root_;
  std::mt19937_64 rng_;
};

struct SchemaCase {
  const char* name;
  const char* schema;
  std::vector<std::string> invalid;  // documents the grammar must reject
};

std::vector<SchemaCase> schema_cases() {
  return {
      {"person",
       R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"email":{"type":"string"},
           "tags":{"type":"array","items":{"type":"string"},"maxItems":3},"active":{"type":"boolean"}},
           "required":["name","age","active"],"additionalProperties":false})",
       {R"({"name":"a","active":true})", R"({"name":"a","age":1.5,"active":true})", R"({"name":"a","age":1,"active":true,"x":1})",
        R"({"name":"a","age":1,"tags":["a","b","c","d"],"active":true})", R"({"name":"a","age":1,"active":"yes"})",
        R"({"name":"a","age":01,"active":true})", R"({"name":"a","age":1,"active":true} )", R"({name:"a","age":1,"active":true})",
        "{\"name\":\"a\nb\",\"age\":1,\"active\":true}", R"({"name":"a","age":1,"active":true}x)", R"([])"}},
      {"choices",
       R"({"type":"object","properties":{"color":{"enum":["red","green",3,null]},"kind":{"const":{"k":[1,"x"]}},
           "value":{"anyOf":[{"type":"number"},{"type":"null"},{"type":"string","maxLength":3}]}},"required":["color","kind","value"]})",
       {R"({"color":"blue","kind":{"k":[1,"x"]},"value":1})", R"({"color":"red","kind":{"k":[1,"y"]},"value":1})",
        R"({"color":"red","kind":{"k":[1,"x"]},"value":"abcd"})", R"({"color":"red","kind":{"k":[1,"x"]},"value":true})"}},
      {"tree",
       R"({"$defs":{"node":{"type":"object","properties":{"label":{"type":"string","minLength":1,"maxLength":6},
           "children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["label"]}},"$ref":"#/$defs/node"})",
       {R"({"label":""})", R"({"label":"a","children":[{"children":[]}]})", R"({"label":"a","children":[{"label":"b"},{"label":"c"},{"label":"d"}]})"}},
      {"formats",
       R"({"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"time"},
           "dt":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},"code":{"type":"string","minLength":2,"maxLength":4}},
           "required":["d","t","dt","id","code"]})",
       {R"({"d":"2024-13-01","t":"10:00:00Z","dt":"2024-01-01T10:00:00Z","id":"123e4567-e89b-12d3-a456-426614174000","code":"ab"})",
        R"({"d":"2024-01-01","t":"24:00:00Z","dt":"2024-01-01T10:00:00Z","id":"123e4567-e89b-12d3-a456-426614174000","code":"ab"})",
        R"({"d":"2024-01-01","t":"10:00:00Z","dt":"2024-01-01 10:00:00Z","id":"123e4567-e89b-12d3-a456-426614174000","code":"ab"})",
        R"({"d":"2024-01-01","t":"10:00:00Z","dt":"2024-01-01T10:00:00Z","id":"123e4567-e89b-12d3-a456-42661417400","code":"ab"})",
        R"({"d":"2024-01-01","t":"10:00:00Z","dt":"2024-01-01T10:00:00Z","id":"123e4567-e89b-12d3-a456-426614174000","code":"abcde"})"}},
      {"list",
       R"({"type":"array","items":{"type":["integer","null"]},"minItems":2,"maxItems":4})",
       {R"([1])", R"([1,2,3,4,5])", R"([1,"a"])", R"([1,2,])", R"([1.5,2])"}},
      {"map",
       R"({"type":"object","additionalProperties":{"type":"integer"}})",
       {R"({"a":"x"})", R"({"a":1,})", R"({1:1})"}},
      {"any", R"({})", {R"({"a":})", R"(tru)", R"([1 2])", R"("\ud800")"}},
  };
}

TEST(JsonSchema, RandomValidDocumentsAcceptedInvalidRejected) {
  for (const SchemaCase& c : schema_cases()) {
    const json schema = json::parse(c.schema);
    auto g = grammar_from_json_schema_text(c.schema);
    ASSERT_TRUE(g) << c.name << ": " << g.status().to_string();
    DocGenerator gen(schema, 7);
    for (int i = 0; i < 40; ++i) {
      const json doc = gen.generate(schema);
      EXPECT_TRUE(accepts(*g, doc.dump())) << c.name << ": " << doc.dump() << "\n" << (*g)->source;
      EXPECT_TRUE(accepts(*g, doc.dump(2))) << c.name << ": " << doc.dump(2);
    }
    for (const std::string& bad : c.invalid) EXPECT_FALSE(accepts(*g, bad)) << c.name << ": " << bad;
  }
}

TEST(JsonSchema, UnsupportedKeywordsAreNamed) {
  struct Case {
    const char* schema;
    const char* expected;
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"({"type":"string","pattern":"(?=a)b"})", "lookaround"},
           {R"({"type":"string","pattern":"(a)\\1"})", "backreferences"},
           {R"({"type":"string","pattern":"\\bfoo"})", "word boundaries"},
           {R"({"type":"string","pattern":"a^b"})", "anchors are supported only at the start and end"},
           {R"({"type":"string","pattern":"^a","maxLength":3})", "'pattern' together with"},
           {R"({"type":"number","minimum":0})", "'minimum' does not apply to type 'number'"},
           {R"({"type":"integer","minimum":5,"maximum":4})", "no integer lies between"},
           {R"({"type":"integer","multipleOf":2})", "'multipleOf'"},
           {R"({"allOf":[{"type":"string"}]})", "'allOf'"},
           {R"({"type":"string","format":"email"})", "format 'email'"},
           {R"({"type":"object","properties":{"a":{"type":"string"}},"required":["b"]})", "\"b\" is not in 'properties'"},
           {R"({"$ref":"#/$defs/missing"})", "points at nothing"},
           {R"({"$ref":"other.json#/x"})", "only #"},
           {R"({"type":"integer","minLength":2})", "'minLength' does not apply"},
           {R"({"type":"object","properties":{"a":{"type":"array","prefixItems":[]}}})", "/properties/a: keyword 'prefixItems'"},
           {R"({"type":"strin"})", "unknown type 'strin'"},
           {R"(false)", "accepts no document"},
           {R"({"type": )", "not valid JSON"},
       }) {
    auto g = grammar_from_json_schema_text(c.schema);
    ASSERT_FALSE(g) << c.schema;
    EXPECT_NE(g.status().message().find(c.expected), std::string::npos) << c.schema << " -> " << g.status().message();
  }
  // Depth is bounded: a chain of 40 nested arrays is refused.
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 40; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  auto g = grammar_from_json_schema_text(deep);
  ASSERT_FALSE(g);
  EXPECT_NE(g.status().message().find("nested deeper"), std::string::npos) << g.status().message();
}

TEST(JsonSchema, PatternsMatchTheJsonSpellingOfTheirStrings) {
  struct Case {
    const char* pattern;
    std::vector<std::string> good, bad;  // decoded strings
  };
  for (const Case& c : std::initializer_list<Case>{
           {"^[A-Z]{2}-\\d{3}$", {"AB-123", "ZZ-000"}, {"AB-12", "ab-123", "xAB-123", "AB-1234"}},
           {"ab|c\"d", {"ab", "xxabyy", "c\"d", "\"c\"d\\"}, {"a b", "", "cd"}},
           {"^\\s*\\w+\\.$", {"  foo_1.", "\tx.", "\u00a0y."}, {"foo", " .", "a.b"}},
           {"^[^a-c]$", {"d", "\n", "\"", "\\", "é"}, {"a", "dd", ""}},
           {"^(?:ab)+(?<x>c)?$", {"ab", "ababc"}, {"abcc", "c", "aba"}},
           {"^.{2,3}$", {"ab", "a✓c"}, {"a", "a\nb", "abcd"}},
           {"^\\x41\\u00e9[\\d\\-]?$", {"Aé", "Aé-", "Aé7"}, {"A", "Aéx"}},
       }) {
    const json schema = {{"type", "string"}, {"pattern", c.pattern}};
    auto g = grammar_from_json_schema(schema);
    ASSERT_TRUE(g) << c.pattern << ": " << g.status().to_string();
    for (const std::string& s : c.good) EXPECT_TRUE(accepts(*g, json(s).dump())) << c.pattern << " should match " << json(s).dump() << "\n" << (*g)->source;
    for (const std::string& s : c.bad) EXPECT_FALSE(accepts(*g, json(s).dump())) << c.pattern << " should not match " << json(s).dump();
  }
}

TEST(JsonSchema, OverloadsForTextOrderedAndPlainJson) {
  const std::string text = R"({"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"integer"}},"required":["a","b"]})";
  auto from_text = grammar_from_json_schema_text(text);
  auto from_ordered = grammar_from_json_schema(json::parse(text));
  auto from_plain = grammar_from_json_schema(nlohmann::json::parse(text));  // keys sorted by nlohmann::json
  ASSERT_TRUE(from_text && from_ordered && from_plain);
  EXPECT_TRUE(accepts(*from_text, R"({"b":1,"a":2})"));
  EXPECT_TRUE(accepts(*from_ordered, R"({"b":1,"a":2})"));
  EXPECT_TRUE(accepts(*from_plain, R"({"a":2,"b":1})"));
  EXPECT_FALSE(accepts(*from_plain, R"({"b":1,"a":2})"));
}

TEST(JsonSchema, IntegerRanges) {
  struct Case {
    const char* schema;
    int64_t lo, hi;  // the accepted range, checked over [lo - 30, hi + 30] and at far values
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"({"type":"integer","minimum":-15,"maximum":27})", -15, 27},
           {R"({"type":"integer","minimum":0,"maximum":1000})", 0, 1000},
           {R"({"type":"integer","exclusiveMinimum":-1,"exclusiveMaximum":100})", 0, 99},
           {R"({"type":"integer","minimum":2.5,"maximum":3.5})", 3, 3},
           {R"({"type":"integer","minimum":-1234,"maximum":-987})", -1234, -987},
           {R"({"type":"integer","minimum":95,"maximum":1105})", 95, 1105},
       }) {
    auto g = grammar_from_json_schema_text(c.schema);
    ASSERT_TRUE(g) << c.schema << ": " << g.status().to_string();
    for (int64_t v = c.lo - 30; v <= c.hi + 30; ++v) EXPECT_EQ(accepts(*g, std::to_string(v)), v >= c.lo && v <= c.hi) << c.schema << " " << v;
    EXPECT_FALSE(accepts(*g, "-0")) << c.schema;
    std::string leading_zero = std::to_string(c.hi);
    leading_zero.insert(leading_zero[0] == '-' ? 1 : 0, 1, '0');
    EXPECT_FALSE(accepts(*g, leading_zero)) << c.schema;  // no leading zeros
  }
  auto open_above = grammar_from_json_schema_text(R"({"type":"integer","minimum":10})");
  ASSERT_TRUE(open_above);
  EXPECT_TRUE(accepts(*open_above, "10"));
  EXPECT_TRUE(accepts(*open_above, "9999999999999999"));
  EXPECT_FALSE(accepts(*open_above, "9"));
  EXPECT_FALSE(accepts(*open_above, "-10"));
  EXPECT_FALSE(accepts(*open_above, "10000000000000000"));  // 17 digits: beyond the integer rule
}

TEST(JsonSchema, PropertiesInSchemaOrderOptionalOnesMayBeAbsent) {
  auto g = grammar_from_json_schema_text(
      R"({"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"integer"},"m":{"type":"integer"}},"required":["a"]})");
  ASSERT_TRUE(g);
  EXPECT_TRUE(accepts(*g, R"({"z":1,"a":2,"m":3})"));
  EXPECT_TRUE(accepts(*g, R"({"a":2})"));
  EXPECT_TRUE(accepts(*g, R"({"z":1,"a":2})"));
  EXPECT_TRUE(accepts(*g, R"({"a":2,"m":3})"));
  EXPECT_FALSE(accepts(*g, R"({"a":2,"z":1})"));
  EXPECT_FALSE(accepts(*g, R"({"z":1,"m":3})"));
  EXPECT_FALSE(accepts(*g, R"({})"));
  EXPECT_FALSE(accepts(*g, R"({,"a":2})"));
}

// A forced tool call: the function's name (when the model picks it), its arguments under its
// schema, the closing markers; DSML arguments as parameters, plain strings raw.
TEST(ToolCallGrammar, NamesArgumentsAndClosingMarkers) {
  const json weather = json::parse(R"({"type":"object","properties":{"city":{"type":"string","maxLength":8},
                                       "unit":{"enum":["c","f"]}},"required":["city"]})");
  const json add = json::parse(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"$ref":"#/$defs/n"}},
                                   "required":["a","b"],"$defs":{"n":{"type":"number"}}})");
  auto g = tool_call_grammar({{"tools[0]", "get_weather|", weather, "|end"}, {"tools[1]", "add|", add, "|end"}, {"tools[2]", "any|", json(), "|end"}},
                             ArgumentSyntax::kJson);
  ASSERT_TRUE(g) << g.status().to_string();
  EXPECT_TRUE(accepts(*g, R"(get_weather|{"city": "Paris"}|end)"));
  EXPECT_TRUE(accepts(*g, R"(get_weather|{"city":"Rome","unit":"f"}|end)"));
  EXPECT_TRUE(accepts(*g, R"(add|{"a": 1, "b": 2.5}|end)"));
  EXPECT_TRUE(accepts(*g, R"(any|{"whatever": [1, {}]}|end)"));
  EXPECT_FALSE(accepts(*g, R"(get_weather|{"city": "Paris"})"));          // not closed
  EXPECT_FALSE(accepts(*g, R"(get_weather|{"city": "Lutetia Parisiorum"}|end)"));  // maxLength
  EXPECT_FALSE(accepts(*g, R"(get_weather|{"unit": "c", "city": "Rome"}|end)"));   // schema order
  EXPECT_FALSE(accepts(*g, R"(add|{"city": "Paris"}|end)"));              // another function's arguments
  EXPECT_FALSE(accepts(*g, R"(remove|{"a": 1, "b": 2}|end)"));           // not offered
  EXPECT_FALSE(accepts(*g, R"(any|[1]|end)"));                            // arguments are an object

  auto dsml = tool_call_grammar({{"tools[0]", "", weather, "</｜DSML｜invoke>"}}, ArgumentSyntax::kDsml);
  ASSERT_TRUE(dsml) << dsml.status().to_string();
  const std::string city = "<｜DSML｜parameter name=\"city\" string=\"true\">Par \"is\"</｜DSML｜parameter>\n";
  EXPECT_TRUE(accepts(*dsml, city + "</｜DSML｜invoke>"));
  EXPECT_TRUE(accepts(*dsml, city + "<｜DSML｜parameter name=\"unit\" string=\"true\">c</｜DSML｜parameter>\n</｜DSML｜invoke>"));
  EXPECT_TRUE(accepts(*dsml, city + "<｜DSML｜parameter name=\"unit\" string=\"false\">\"f\"</｜DSML｜parameter>\n</｜DSML｜invoke>"));
  EXPECT_TRUE(accepts(*dsml, "<｜DSML｜parameter name=\"city\" string=\"false\">\"a<b\"</｜DSML｜parameter>\n</｜DSML｜invoke>"));
  EXPECT_FALSE(accepts(*dsml, "</｜DSML｜invoke>"));  // city is required
  EXPECT_FALSE(accepts(*dsml, city + "<｜DSML｜parameter name=\"unit\" string=\"true\">k</｜DSML｜parameter>\n</｜DSML｜invoke>"));
  EXPECT_FALSE(accepts(*dsml, "<｜DSML｜parameter name=\"city\" string=\"true\">a<b</｜DSML｜parameter>\n</｜DSML｜invoke>"));
  EXPECT_FALSE(accepts(*dsml, "<｜DSML｜parameter name=\"city\" string=\"true\">Lutetia Parisiorum</｜DSML｜parameter>\n</｜DSML｜invoke>"));

  auto not_object = tool_call_grammar({{"tools[0]", "", json::parse(R"({"type":"array"})"), ""}}, ArgumentSyntax::kDsml);
  ASSERT_FALSE(not_object);
  EXPECT_NE(not_object.status().message().find("tools[0]"), std::string::npos) << not_object.status().message();
  EXPECT_FALSE(tool_call_grammar({}, ArgumentSyntax::kJson));
}

TEST(JsonSchema, WhitespaceIsBounded) {
  auto g = json_object_grammar();
  EXPECT_TRUE(accepts(g, "{\n" + std::string(20, ' ') + "\"a\": 1}"));
  EXPECT_FALSE(accepts(g, "{\n" + std::string(21, ' ') + "\"a\": 1}"));
  EXPECT_FALSE(accepts(g, "{  \"a\": 1}"));
  EXPECT_FALSE(accepts(g, "[1]"));  // json_object: an object at the top
  EXPECT_FALSE(accepts(g, " {}"));
  auto v = json_value_grammar();
  for (const char* doc : {"[1, {\"a\": null}]", "\"x\"", "-1.5e3", "true", "{}"}) EXPECT_TRUE(accepts(v, doc)) << doc;
  for (const char* doc : {"[1,]", "'x'", "nul", ""}) EXPECT_FALSE(accepts(v, doc)) << doc;
}

// ---- Token masks ----

std::unique_ptr<Tokenizer> load_vocab(const std::string& name) {
  auto t = Tokenizer::from_file(std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-" + name + ".gguf");
  EXPECT_TRUE(t) << t.status().to_string();
  return t ? std::move(t).value() : nullptr;
}

// At each state along a document's own tokenization, and along a random walk of allowed
// tokens, the fast mask equals the reference mask (every token checked on its own).
void check_masks(const Tokenizer& tok, const std::shared_ptr<const Grammar>& g, const std::string& doc, int n_random, uint64_t seed) {
  auto trie = TokenTrie::build(tok);
  CompiledGrammar compiled(g, trie, 64);
  auto matcher = GrammarMatcher::create(std::shared_ptr<CompiledGrammar>(&compiled, [](CompiledGrammar*) {}));
  ASSERT_TRUE(matcher);
  PlainRecognizer plain(g);
  std::mt19937_64 rng(seed);
  const std::vector<int32_t> doc_tokens = tok.encode(doc, false, false);
  size_t n_checked = 0, n_allowed_total = 0;
  for (size_t step = 0; step < doc_tokens.size() + static_cast<size_t>(n_random); ++step) {
    TokenMask fast;
    ASSERT_TRUE(compiled.compute_mask(matcher->config(), &fast).is_ok());
    const TokenMask reference = reference_token_mask(plain, *trie);
    ASSERT_EQ(fast, reference) << "step " << step;
    auto cached = compiled.mask(matcher->config());
    ASSERT_TRUE(cached);
    ASSERT_EQ(**cached, reference);
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < trie->n_vocab; ++t)
      if (mask_has(fast, t) && !trie->pieces[static_cast<size_t>(t)].empty()) allowed.push_back(t);
    ++n_checked;
    n_allowed_total += allowed.size();
    if (allowed.empty()) break;
    const int32_t token = step < doc_tokens.size() ? doc_tokens[step] : allowed[rng() % allowed.size()];
    ASSERT_TRUE(mask_has(fast, token)) << "the document's own token " << token << " is masked at step " << step;
    ASSERT_TRUE(matcher->accept(token).is_ok());
    ASSERT_TRUE(plain.advance(trie->pieces[static_cast<size_t>(token)]));
  }
  EXPECT_GT(n_checked, 10u);
  EXPECT_GT(n_allowed_total, n_checked);  // not a trivially empty mask
}

TEST(GrammarMask, FastEqualsReferenceOnRealVocabularies) {
  const SchemaCase person = schema_cases()[0];
  auto schema_grammar = grammar_from_json_schema_text(person.schema);
  ASSERT_TRUE(schema_grammar);
  const std::string doc = "{\"name\": \"Zoë \\\"Z\\\" ✓\", \"age\": -42, \"tags\": [\"x\", \"yz\"], \"active\": true}";
  for (const char* vocab : {"qwen2", "deepseek-llm"}) {
    auto tok = load_vocab(vocab);
    ASSERT_TRUE(tok);
    SCOPED_TRACE(vocab);
    check_masks(*tok, *schema_grammar, doc, 12, 1);
    check_masks(*tok, gbnf(kArithmeticGbnf), "ab_1 *(c +22) = 7\n", 10, 2);
  }
}

TEST(GrammarMask, EndOfGenerationOnlyWhenComplete) {
  // A toy vocabulary: "a", "b", "ab", "", and token 4 is end-of-generation.
  auto trie = TokenTrie::build({"a", "b", "ab", "", ""}, {4});
  auto g = gbnf("root ::= \"a\" \"b\"?\n");
  auto compiled = std::make_shared<CompiledGrammar>(g, trie, 8);
  auto m = GrammarMatcher::create(compiled);
  ASSERT_TRUE(m);
  std::vector<float> logits(6, 1.0f);  // one more row than the vocabulary: always masked
  ASSERT_TRUE(m->apply_mask(logits.data(), 6).is_ok());
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -INFINITY, 1.0f, -INFINITY, -INFINITY, -INFINITY}));
  EXPECT_FALSE(m->accept(1).is_ok());
  EXPECT_FALSE(m->accept(4).is_ok());
  ASSERT_TRUE(m->accept(0).is_ok());
  EXPECT_TRUE(m->is_complete());
  EXPECT_FALSE(m->is_terminated());
  logits.assign(6, 1.0f);
  ASSERT_TRUE(m->apply_mask(logits.data(), 6).is_ok());
  EXPECT_EQ(logits, (std::vector<float>{-INFINITY, 1.0f, -INFINITY, -INFINITY, 1.0f, -INFINITY}));
  ASSERT_TRUE(m->accept(1).is_ok());
  EXPECT_TRUE(m->is_terminated());
  // A grammar this vocabulary cannot spell is a reported dead end, not a hang.
  auto dead = GrammarMatcher::create(std::make_shared<CompiledGrammar>(gbnf("root ::= \"c\"\n"), trie, 8));
  ASSERT_TRUE(dead);
  logits.assign(6, 1.0f);
  EXPECT_FALSE(dead->apply_mask(logits.data(), 6).is_ok());
}

// A masked row: the sampler never draws a -inf token, whatever the filters, and a constrained
// request always asks for the whole row.
TEST(GrammarMask, SamplerNeverDrawsAMaskedToken) {
  std::vector<float> row(5000, -INFINITY);
  for (int i = 0; i < 5000; i += 997) row[static_cast<size_t>(i)] = static_cast<float>(i % 7) * 0.1f;
  for (float temperature : {0.0f, 0.7f, 5.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.3f;
    p.seed = 9;
    Sampler s(p);
    for (int i = 0; i < 500; ++i) {
      const int32_t t = s.sample(row.data(), 5000);
      ASSERT_TRUE(std::isfinite(row[static_cast<size_t>(t)])) << "temperature " << temperature << " drew " << t;
      s.accept(t);
    }
  }
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  EXPECT_EQ(Sampler::candidates_needed(greedy, 64), 1);
  greedy.grammar = json_object_grammar();
  EXPECT_EQ(Sampler::candidates_needed(greedy, 64), 0);
}

// ---- Generation ----

std::string tiny_qwen2() {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/grammar-qwen2.gguf";
  SynthOptions o;
  o.arch = "qwen2";
  o.preset = "tiny";
  o.dtype = DType::Q8_0;
  o.seed = 5;
  o.vocab_path = std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf";
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

// Every string bounded, so a random-weight model must finish the document within max_tokens.
const char* kBoundedSchema =
    R"({"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string","maxLength":6},
        "kind":{"enum":["a","b"]},"score":{"type":"number"},"ok":{"type":"boolean"},
        "tags":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2},"when":{"type":"string","format":"date"}},
        "required":["id","name","kind"],"additionalProperties":false})";

// Structural validation of kBoundedSchema, independent of the grammar.
bool validates(const nlohmann::json& d) {
  if (!d.is_object() || !d.contains("id") || !d.contains("name") || !d.contains("kind")) return false;
  for (const auto& [k, v] : d.items()) {
    if (k == "id" && !v.is_number_integer()) return false;
    if (k == "name" && !(v.is_string() && v.get<std::string>().size() <= 6 * 4)) return false;
    if (k == "kind" && v != "a" && v != "b") return false;
    if (k == "score" && !v.is_number()) return false;
    if (k == "ok" && !v.is_boolean()) return false;
    if (k == "tags" && !(v.is_array() && v.size() <= 2)) return false;
    if (k == "when" && !(v.is_string() && v.get<std::string>().size() == 10)) return false;
    if (k != "id" && k != "name" && k != "kind" && k != "score" && k != "ok" && k != "tags" && k != "when") return false;
  }
  return true;
}

TEST(GrammarGeneration, SchemaOutputAlwaysParsesAndValidates) {
  EngineOptions eo;
  eo.model_path = tiny_qwen2();
  eo.n_threads = 2;
  eo.n_ctx = 512;
  eo.n_seq_max = 4;
  auto engine = Engine::create(eo);
  ASSERT_TRUE(engine) << engine.status().to_string();
  auto g = grammar_from_json_schema_text(kBoundedSchema);
  ASSERT_TRUE(g) << g.status().to_string();
  const std::vector<int32_t> prompt = (*engine)->tokenizer().encode("Give me JSON:", false, true);
  std::vector<std::string> out(20);
  std::vector<FinishReason> reasons(20, FinishReason::kNone);
  for (int seed = 0; seed < 20; ++seed) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = 400;
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = seed % 2 ? 40 : 0;
    r.sampling.seed = static_cast<uint64_t>(seed);
    // Half the requests constrained, half not: they share batches.
    if (seed % 4 != 3) r.sampling.grammar = *g;
    r.on_event = [&, seed](const TokenEvent& ev) {
      out[static_cast<size_t>(seed)] += ev.text;
      if (ev.finished) {
        reasons[static_cast<size_t>(seed)] = ev.reason;
        EXPECT_NE(ev.reason, FinishReason::kError) << ev.status.to_string();
      }
    };
    ASSERT_TRUE((*engine)->submit(std::move(r)));
  }
  ASSERT_TRUE((*engine)->run_until_idle().is_ok());
  for (int seed = 0; seed < 20; ++seed) {
    if (seed % 4 == 3) continue;
    const std::string& text = out[static_cast<size_t>(seed)];
    EXPECT_EQ(reasons[static_cast<size_t>(seed)], FinishReason::kStop) << text;
    const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << "seed " << seed << ": " << text;
    EXPECT_TRUE(validates(doc)) << "seed " << seed << ": " << text;
  }
}

TEST(GrammarCli, RunTakesGrammarAndSchemaFiles) {
  const std::string model = tiny_qwen2();
  const std::string dir = FATHOM_TEST_TMP;
  {
    std::ofstream(dir + "/grammar-cli.json") << kBoundedSchema;
    std::ofstream(dir + "/grammar-cli.gbnf") << "root ::= \"yes\" | \"no\" | \"maybe, \" [0-9]\n";
    std::ofstream(dir + "/grammar-bad.gbnf") << "root ::= \"yes\n";
    std::ofstream(dir + "/grammar-bad.json") << R"J({"type":"string","pattern":"(?!a)"})J";
  }
  for (int seed = 1; seed <= 3; ++seed) {
    auto r = test::run_fathom("run -m " + model + " -p 'Answer:' -n 400 -q -s " + std::to_string(seed) + " --json-schema " + dir + "/grammar-cli.json", false);
    ASSERT_EQ(r.code, 0) << r.output;
    const nlohmann::json doc = nlohmann::json::parse(r.output, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << r.output;
    EXPECT_TRUE(validates(doc)) << r.output;
    auto y = test::run_fathom("run -m " + model + " -p 'Answer:' -n 50 -q -s " + std::to_string(seed) + " --grammar-file " + dir + "/grammar-cli.gbnf", false);
    ASSERT_EQ(y.code, 0) << y.output;
    const std::string answer = y.output.substr(0, y.output.find_last_not_of('\n') + 1);
    EXPECT_TRUE(answer == "yes" || answer == "no" || (answer.size() == 8 && answer.rfind("maybe, ", 0) == 0)) << y.output;
  }
  // chat: the answer is constrained too.
  auto chat = test::run_command("printf 'hi\\n' | " + std::string(std::getenv("FATHOM_BIN") ? std::getenv("FATHOM_BIN") : FATHOM_BIN_PATH) +
                                " chat -m " + model + " -n 400 -s 4 --json-schema " + dir + "/grammar-cli.json 2>/dev/null");
  ASSERT_EQ(chat.code, 0) << chat.output;
  const nlohmann::json chat_doc = nlohmann::json::parse(chat.output, nullptr, false);
  ASSERT_FALSE(chat_doc.is_discarded()) << chat.output;
  EXPECT_TRUE(validates(chat_doc)) << chat.output;
  auto bad = test::run_fathom("run -m " + model + " -p x --grammar-file " + dir + "/grammar-bad.gbnf");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("grammar-bad.gbnf: grammar line 1 column 10: unclosed string literal"), std::string::npos) << bad.output;
  auto schema = test::run_fathom("run -m " + model + " -p x --json-schema " + dir + "/grammar-bad.json");
  EXPECT_EQ(schema.code, 2);
  EXPECT_NE(schema.output.find("'pattern'"), std::string::npos) << schema.output;
  auto missing = test::run_fathom("run -m " + model + " -p x --json-schema " + dir + "/no-such-file.json");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.output.find("no-such-file.json"), std::string::npos) << missing.output;
  auto both = test::run_fathom("run -m " + model + " -p x --json-schema a --grammar-file b");
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.output.find("exclude each other"), std::string::npos) << both.output;
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Measurement, not a check (run with --gtest_also_run_disabled_tests): the mask cost per
// decode step on the real qwen2 vocabulary (151,646 tokens), for one sequence and for eight
// sequences sharing a schema, cold (a new grammar: every state is a miss) and warm (states
// seen before). Each step: mask lookup or trie walk, -inf over a 151,936-logit row, accept.
TEST(GrammarMask, DISABLED_CostOnQwen2Vocabulary) {
  auto tok = load_vocab("qwen2");
  ASSERT_TRUE(tok);
  auto seconds = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  double t0 = seconds();
  auto trie = TokenTrie::build(*tok);
  std::printf("trie: %zu nodes, built in %.1f ms\n", trie->byte.size(), (seconds() - t0) * 1e3);
  for (const char* schema_text : {schema_cases()[0].schema, kBoundedSchema}) {
    const json schema = json::parse(schema_text);
    std::vector<std::vector<int32_t>> docs;
    DocGenerator gen(schema, 3);
    for (int i = 0; i < 16; ++i) docs.push_back(tok->encode(gen.generate(schema).dump(i % 2 ? 2 : -1), false, false));
    auto g = grammar_from_json_schema_text(schema_text);
    ASSERT_TRUE(g);
    std::vector<float> row(151936);
    for (int batch : {1, 8}) {
      for (const char* phase : {"cold", "warm"}) {
        // Warm: the same compiled grammar already ran the other 8 documents.
        auto compiled = std::make_shared<CompiledGrammar>(*g, trie, 2048);
        const size_t first_doc = std::string(phase) == "warm" ? 8 : 0;
        if (first_doc) {
          for (size_t d = 0; d < 8; ++d) {
            auto m = GrammarMatcher::create(compiled);
            for (int32_t t : docs[d]) {
              ASSERT_TRUE(m->apply_mask(row.data(), 151936).is_ok());
              ASSERT_TRUE(m->accept(t).is_ok());
            }
          }
        }
        std::vector<GrammarMatcher> matchers;
        for (int b = 0; b < batch; ++b) matchers.push_back(*GrammarMatcher::create(compiled));
        double total = 0.0, worst = 0.0;
        size_t steps = 0;
        for (size_t step = 0;; ++step) {
          bool any = false;
          const double s0 = seconds();
          for (int b = 0; b < batch; ++b) {
            const auto& doc = docs[first_doc + static_cast<size_t>(b)];
            if (step >= doc.size()) continue;
            any = true;
            std::fill(row.begin(), row.end(), 0.0f);
            ASSERT_TRUE(matchers[static_cast<size_t>(b)].apply_mask(row.data(), 151936).is_ok());
            ASSERT_TRUE(matchers[static_cast<size_t>(b)].accept(doc[step]).is_ok());
          }
          const double dt = seconds() - s0;
          if (!any) break;
          total += dt;
          worst = std::max(worst, dt);
          ++steps;
        }
        std::printf("%s batch %d %s: %zu steps, mean %.0f us/step, worst %.0f us, %zu masks cached, %zu configurations\n",
                    schema_text == kBoundedSchema ? "bounded" : "person", batch, phase, steps, total / static_cast<double>(steps) * 1e6,
                    worst * 1e6, compiled->n_cached_masks(), compiled->automaton().n_configs());
      }
    }
  }
}

}  // namespace
}  // namespace fathom

namespace fathom {
namespace {

// Measurement on a real-size model (run with --gtest_also_run_disabled_tests; the model from
// `fathom synth --arch qwen2 --preset 1.5b --type q4_0 --vocab .../ggml-vocab-qwen2.gguf`,
// path in FATHOM_GRAMMAR_BENCH_MODEL): decode step time with and without a schema, batch 1 and
// 8, and the share of the grammar work, cold (a grammar never seen) and warm.
TEST(GrammarGeneration, DISABLED_OverheadOnModel) {
  const char* path = std::getenv("FATHOM_GRAMMAR_BENCH_MODEL");
  if (!path) GTEST_SKIP() << "set FATHOM_GRAMMAR_BENCH_MODEL";
  EngineOptions eo;
  eo.model_path = path;
  eo.n_threads = 2;
  eo.n_ctx = 256;
  eo.n_seq_max = 8;
  auto engine = Engine::create(eo);
  ASSERT_TRUE(engine) << engine.status().to_string();
  const std::vector<int32_t> prompt = (*engine)->tokenizer().encode("Reply in JSON:", false, true);
  int variant = 0;
  auto run = [&](int batch, bool constrained, bool fresh_grammar) {
    std::shared_ptr<const Grammar> g;
    if (constrained) {
      // A new property name makes a new grammar text: nothing cached (cold).
      json schema = json::parse(schema_cases()[0].schema);
      if (fresh_grammar) schema["properties"]["v" + std::to_string(++variant)] = {{"type", "string"}};
      g = *grammar_from_json_schema(schema);
    }
    std::vector<RequestStats> stats(static_cast<size_t>(batch));
    for (int b = 0; b < batch; ++b) {
      GenerationRequest r;
      r.prompt = prompt;
      r.prompt.push_back(100 + b);
      r.max_tokens = 48;
      r.ignore_eos = !constrained;
      r.sampling.seed = static_cast<uint64_t>(b + 1);
      r.sampling.grammar = g;
      r.on_event = [&stats, b](const TokenEvent& ev) {
        if (ev.finished) stats[static_cast<size_t>(b)] = ev.stats;
      };
      ASSERT_TRUE((*engine)->submit(std::move(r)));
    }
    const double t0 = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    ASSERT_TRUE((*engine)->run_until_idle().is_ok());
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count() - t0;
    double gen = 0.0, grammar = 0.0;
    int64_t tokens = 0;
    for (const RequestStats& s : stats) {
      gen = std::max(gen, s.generation_seconds());
      grammar += s.grammar_seconds;
      tokens += s.n_generated;
    }
    const double steps = static_cast<double>(tokens) / batch;
    std::printf("batch %d %-24s %3lld tokens, wall %.2f s, %.1f ms per decode step, grammar %.2f ms per step (%.1f%% of the step)\n", batch,
                constrained ? (fresh_grammar ? "schema, cold" : "schema, warm") : "unconstrained", static_cast<long long>(tokens), wall,
                gen / std::max(1.0, steps - 1) * 1e3, grammar / steps * 1e3, grammar / std::max(1e-9, gen) * 100.0);
  };
  run(1, false, false);  // warm-up: weights paged in, trie not built yet
  run(1, false, false);
  run(1, true, true);
  run(1, true, false);
  run(8, false, false);
  run(8, true, true);
  run(8, true, false);
}

}  // namespace
}  // namespace fathom
