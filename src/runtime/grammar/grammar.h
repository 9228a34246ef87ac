// Grammars for constrained decoding: a context-free grammar over *bytes*, built from GBNF text
// (llama.cpp's format), from a JSON Schema, or the built-in "any JSON object" grammar.
//
// Public API (what the server and the CLI call):
//   Expected<std::shared_ptr<const Grammar>> grammar_from_gbnf(std::string_view text, const GrammarLimits& = {});
//   Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema_text(std::string_view schema_json, const JsonSchemaOptions& = {});
//   Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema(const nlohmann::ordered_json& schema, const JsonSchemaOptions& = {});
//   Expected<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& = {});
//   std::shared_ptr<const Grammar> json_object_grammar();   // response_format {"type": "json_object"}
//   std::shared_ptr<const Grammar> json_value_grammar();    // any JSON value
//   Expected<std::shared_ptr<const Grammar>> tool_call_grammar(alternatives, ArgumentSyntax, const JsonSchemaOptions& = {});
// Every error is a Status naming what was wrong (GBNF: line and column; schema: the JSON pointer
// path and the keyword), kInvalidArgument for malformed input, kUnsupported for valid schema
// keywords fathom cannot guarantee, kOutOfRange for a limit.
// Attach the grammar to SamplingParams::grammar; the engine masks every token that cannot
// continue a valid parse and ends the request with "stop" once the grammar is complete.
// A Grammar is immutable and may be shared by any number of requests and threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace fathom {

// Every limit a grammar is checked against while it is built; exceeding one is an error value.
struct GrammarLimits {
  size_t max_text_bytes = 1 << 20;      // GBNF source size
  int32_t max_rules = 20000;            // rules, including those generated for groups and repetitions
  int64_t max_elements = 2000000;       // grammar elements after expansion of repetitions
  int32_t max_nesting = 64;             // nested parentheses in GBNF
  int32_t max_repetition = 10000;       // the largest m or n in x{m,n}
};

// Code-point classes and literals are compiled to UTF-8 byte sequences, so the grammar, the
// recognizer and the token trie all speak bytes and partial UTF-8 tokens need no special case.
struct GrammarElement {
  enum Kind : uint8_t { kBytes, kRule, kEnd };
  Kind kind = kEnd;
  int32_t value = 0;  // kBytes: index into Grammar::byte_sets; kRule: rule id; kEnd: rule id of the alternative
};

using ByteSet = std::array<uint64_t, 4>;  // bit b set: byte b matches
inline bool byte_set_has(const ByteSet& s, uint8_t b) { return (s[b >> 6] >> (b & 63)) & 1; }

class Grammar {
 public:
  // Flat element array: each alternative is a run of kBytes/kRule elements closed by kEnd.
  std::vector<GrammarElement> elements;
  // [rule] start index in `elements` of each alternative of the rule
  std::vector<std::vector<int32_t>> rule_alternatives;
  std::vector<std::string> rule_names;  // [rule] name as written, or a generated "parent_N"
  std::vector<ByteSet> byte_sets;       // distinct byte sets the kBytes elements index
  int32_t root = 0;                     // start rule
  // Byte equivalence classes: bytes no byte set tells apart share a class, so transition tables
  // need n_byte_classes columns instead of 256.
  std::array<uint8_t, 256> byte_class{};
  int32_t n_byte_classes = 0;
  std::string source;                   // GBNF text the grammar was built from (for messages and debugging)

  int32_t n_rules() const { return static_cast<int32_t>(rule_alternatives.size()); }
};

Expected<std::shared_ptr<const Grammar>> grammar_from_gbnf(std::string_view text, const GrammarLimits& limits = {});

struct JsonSchemaOptions {
  int32_t max_depth = 32;              // nesting of schemas (objects in arrays in ...), $ref chains included
  int32_t max_whitespace = 20;         // at most this many spaces/tabs of indentation after a newline
  GrammarLimits limits;
};

// JSON Schema -> GBNF text (for inspection) and -> Grammar. Keywords that would constrain the
// document in a way the grammar cannot honour are errors naming the keyword.
Expected<std::string> json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options = {});
Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema(const nlohmann::ordered_json& schema,
                                                                  const JsonSchemaOptions& options = {});
// Parses the text itself so that properties keep the schema's order (nlohmann::json sorts keys,
// so a schema passed as nlohmann::json converts to ordered_json with its keys sorted).
Expected<std::shared_ptr<const Grammar>> grammar_from_json_schema_text(std::string_view schema_json,
                                                                  const JsonSchemaOptions& options = {});
// A forced tool call (tool_choice "required" or a named function): the text the model writes
// after the prompt's call opening. One alternative per function it may call: `before` (its name
// and separator, when the model picks the function), its arguments, `after` (the markers that
// close the call). kDsml writes the arguments as DeepSeek V3.2/V4 DSML parameters rather than a
// JSON object: each property <｜DSML｜parameter name="KEY" string="true">raw text</｜DSML｜parameter>
// for a plain string (raw text without '<', so the closing tag cannot appear inside it), else
// string="false" with the JSON value; properties in schema order, optional ones may be absent.
struct FramedArguments {
  std::string label;              // names the schema in messages ("tools[2].function.parameters")
  std::string before;             // literal text before the arguments
  nlohmann::ordered_json schema;  // the function's `parameters` (null: any JSON object)
  std::string after;              // literal text after them
};
enum class ArgumentSyntax { kJson, kDsml };
Expected<std::string> tool_call_gbnf(const std::vector<FramedArguments>& alternatives, ArgumentSyntax syntax,
                                     const JsonSchemaOptions& options = {});
Expected<std::shared_ptr<const Grammar>> tool_call_grammar(const std::vector<FramedArguments>& alternatives,
                                                           ArgumentSyntax syntax, const JsonSchemaOptions& options = {});
// Any JSON object at the top level (values of any type inside), bounded whitespace.
std::shared_ptr<const Grammar> json_object_grammar();
// GBNF text of the grammar above.
std::string json_object_gbnf();
// Any JSON value at the top level (the schema {}).
std::shared_ptr<const Grammar> json_value_grammar();

}  // namespace fathom
