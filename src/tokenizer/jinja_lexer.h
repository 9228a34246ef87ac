// Jinja lexer: splits a template into text and tag tokens, applying jinja2's whitespace rules
// (`-` markers, trim_blocks, lstrip_blocks, `+` opt-outs, newline normalisation and the dropped
// trailing newline) so that the parser sees exactly the text jinja2 would output.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace fathom::jinja {

// 1-based position in the template source, for error messages.
struct SourcePos {
  int line = 1;    // line number
  int column = 1;  // code point column within the line
};

enum class TokenKind : uint8_t {
  kText,        // literal template text, whitespace control already applied
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword (if, for, and, not, ...)
  kString,      // string literal, escapes decoded
  kInteger,     // integer literal
  kFloat,       // float literal
  kOperator,    // + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { } ;
  kEnd,         // end of the template
};

struct Token {
  TokenKind kind = TokenKind::kEnd;  // what the token is
  std::string text;                  // text / name / decoded string / operator spelling
  int64_t int_value = 0;             // kInteger value
  double float_value = 0.0;          // kFloat value
  SourcePos pos;                     // where the token starts
};

struct LexOptions {
  bool trim_blocks = false;    // drop the first newline after a block or comment tag
  bool lstrip_blocks = false;  // drop spaces/tabs before a block or comment tag that starts a line
};

// "line 3, column 7" — shared by the lexer, parser and evaluator messages.
std::string format_pos(SourcePos pos);

// Tokenizes the whole template; the last token is kEnd. Syntax errors carry the position.
Expected<std::vector<Token>> tokenize(std::string_view source, const LexOptions& options);

}  // namespace fathom::jinja
