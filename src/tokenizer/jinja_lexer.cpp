#include "tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "tokenizer/jinja_strings.h"

namespace fathom::jinja {

std::string format_pos(SourcePos pos) { return strprintf("line %d, column %d", pos.line, pos.column); }

namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// jinja2 treats \r\n, \r and \n alike and, with keep_trailing_newline=False, drops one final
// newline of the template.
std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// python's str.rstrip(): removes trailing Unicode whitespace.
std::string_view rstrip_python(std::string_view text) {
  std::string stripped = python_strip(text, std::nullopt, false, true);
  return text.substr(0, stripped.size());
}

// Whether `text` is non-empty and all Unicode whitespace (python's \s+ fullmatch).
bool all_whitespace(std::string_view text) {
  if (text.empty()) return false;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!is_python_space(next_code_point(text, pos))) return false;
  }
  return true;
}

// Octal/hex/decimal escape and named-escape decoding, following python's "unicode-escape" codec
// that jinja2 applies to string literals. Unknown escapes keep their backslash.
Expected<std::string> decode_string_literal(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    const auto read_hex = [&](int digits) -> Expected<uint32_t> {
      if (i + digits >= body.size()) {
        return error(ErrorCode::kInvalidArgument, "truncated \\x/\\u escape in string literal");
      }
      uint32_t value = 0;
      for (int k = 1; k <= digits; ++k) {
        const char h = body[i + k];
        value <<= 4;
        if (h >= '0' && h <= '9') value |= h - '0';
        else if (h >= 'a' && h <= 'f') value |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') value |= h - 'A' + 10;
        else return error(ErrorCode::kInvalidArgument, "truncated \\x/\\u escape in string literal");
      }
      i += digits;
      return value;
    };
    switch (c) {
      case '\n': break;  // line continuation
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x': {
        FATHOM_ASSIGN_OR_RETURN(uint32_t cp, read_hex(2));
        append_utf8(cp, out);
        break;
      }
      case 'u': {
        FATHOM_ASSIGN_OR_RETURN(uint32_t cp, read_hex(4));
        append_utf8(cp, out);
        break;
      }
      case 'U': {
        FATHOM_ASSIGN_OR_RETURN(uint32_t cp, read_hex(8));
        if (cp > 0x10FFFF) return error(ErrorCode::kInvalidArgument, "illegal Unicode character in \\U escape");
        append_utf8(cp, out);
        break;
      }
      case 'N':
        return error(ErrorCode::kUnsupported, "named unicode escape \\N{...} in string literal");
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = c - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            cp = cp * 8 + (body[++i] - '0');
          }
          append_utf8(cp, out);
        } else {
          out.push_back('\\');
          out.push_back(c);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& options) : src_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  Expected<std::vector<Token>> run() {
    while (pos_ < src_.size()) {
      const size_t tag = find_tag_start(pos_);
      if (tag == std::string::npos) {
        push_text(std::string_view(src_).substr(pos_), pos_);
        pos_ = src_.size();
        break;
      }
      FATHOM_RETURN_IF_ERROR(lex_tag(tag));
    }
    Token end;
    end.kind = TokenKind::kEnd;
    end.pos = pos_at(src_.size());
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  // Tokens are made in source order, so counting code points on from the previous position keeps
  // lexing linear: counting from the line start made a 400 KB one-line template take minutes.
  // Offsets are token starts, which never split a UTF-8 sequence, so the counts add up.
  SourcePos pos_at(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line_start = *(it - 1);
    size_t from = line_start;
    size_t column = 0;
    if (last_offset_ >= line_start && last_offset_ <= offset) {
      from = last_offset_;
      column = last_column_;
    }
    column += code_point_count(std::string_view(src_).substr(from, offset - from));
    last_offset_ = offset;
    last_column_ = column;
    SourcePos p;
    p.line = static_cast<int>(it - line_starts_.begin());
    p.column = static_cast<int>(column) + 1;
    return p;
  }

  Status error_at(size_t offset, const std::string& message) const {
    return error(ErrorCode::kInvalidArgument, "template syntax error at " + format_pos(pos_at(offset)) + ": " + message);
  }

  size_t find_tag_start(size_t from) const {
    size_t at = from;
    while ((at = src_.find('{', at)) != std::string::npos) {
      if (at + 1 < src_.size() && (src_[at + 1] == '{' || src_[at + 1] == '%' || src_[at + 1] == '#')) return at;
      ++at;
    }
    return std::string::npos;
  }

  void push_text(std::string_view text, size_t offset) {
    if (text.empty()) return;
    Token t;
    t.kind = TokenKind::kText;
    t.text = std::string(text);
    t.pos = pos_at(offset);
    tokens_.push_back(std::move(t));
  }

  void push(TokenKind kind, std::string text, size_t offset) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.pos = pos_at(offset);
    tokens_.push_back(std::move(t));
  }

  // Text before a tag, after the tag's whitespace control: `-` strips all whitespace before it;
  // otherwise lstrip_blocks removes the indentation of a block/comment tag that starts a line.
  std::string_view strip_before_tag(std::string_view text, char sign, bool block_like) const {
    if (sign == '-') return rstrip_python(text);
    if (sign != '+' && options_.lstrip_blocks && block_like) {
      const size_t newline = text.rfind('\n');
      const size_t line_begin = newline == std::string_view::npos ? 0 : newline + 1;
      if ((line_begin > 0 || line_starting_) && all_whitespace(text.substr(line_begin))) {
        return text.substr(0, line_begin);
      }
    }
    return text;
  }

  // Consumes a closing delimiter at `at` of length `len` with its whitespace control; returns
  // the offset after it. `trim` enables trim_blocks' single newline removal.
  size_t consume_end(size_t at, size_t len, char sign, bool trim) {
    size_t end = at + len;
    if (sign == '-') {
      size_t scan = end;
      while (scan < src_.size()) {
        size_t next = scan;
        if (!is_python_space(next_code_point(src_, next))) break;
        scan = next;
      }
      end = scan;
    } else if (sign != '+' && trim && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    return end;
  }

  // `{% raw %}` (with optional -/+ markers and spaces) starting at `tag`; returns the offset
  // after its `%}` or npos.
  size_t match_raw_begin(size_t tag, const char* keyword, char* end_sign) const {
    size_t at = tag + 2;
    if (at < src_.size() && (src_[at] == '-' || src_[at] == '+')) ++at;
    while (at < src_.size() && is_ascii_space(src_[at])) ++at;
    const std::string_view word(keyword);
    if (src_.compare(at, word.size(), word) != 0) return std::string::npos;
    at += word.size();
    if (at < src_.size() && is_name_char(src_[at])) return std::string::npos;
    while (at < src_.size() && is_ascii_space(src_[at])) ++at;
    *end_sign = 0;
    if (at < src_.size() && (src_[at] == '-' || src_[at] == '+')) *end_sign = src_[at++];
    if (src_.compare(at, 2, "%}") != 0) return std::string::npos;
    return at;  // offset of "%}"
  }

  Status lex_raw(size_t tag, size_t begin_close, char begin_sign) {
    // jinja2 applies no trim_blocks newline removal after `{% raw %}`, only `-%}` stripping.
    pos_ = consume_end(begin_close, 2, begin_sign == '-' ? '-' : '+', false);
    for (size_t at = find_tag_start(pos_); at != std::string::npos; at = find_tag_start(at + 1)) {
      if (src_[at + 1] != '%') continue;
      char end_sign = 0;
      const size_t close = match_raw_begin(at, "endraw", &end_sign);
      if (close == std::string::npos) continue;
      const char open_sign = (src_[at + 2] == '-' || src_[at + 2] == '+') ? src_[at + 2] : 0;
      push_text(strip_before_tag(std::string_view(src_).substr(pos_, at - pos_), open_sign, true), pos_);
      pos_ = consume_end(close, 2, end_sign, options_.trim_blocks);
      return Status::ok();
    }
    return error_at(tag, "missing end of raw directive");
  }

  Status lex_tag(size_t tag) {
    const char type = src_[tag + 1];
    const char sign = (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')) ? src_[tag + 2] : 0;
    const std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
    if (type == '%') {
      char raw_end_sign = 0;
      const size_t raw_close = match_raw_begin(tag, "raw", &raw_end_sign);
      if (raw_close != std::string::npos) {
        push_text(strip_before_tag(text, sign, true), pos_);
        return lex_raw(tag, raw_close, raw_end_sign);
      }
    }
    push_text(strip_before_tag(text, sign, type != '{'), pos_);
    const size_t body = tag + 2 + (sign ? 1 : 0);
    if (type == '#') {
      const size_t close = src_.find("#}", body);
      if (close == std::string::npos) return error_at(tag, "missing end of comment tag");
      const char end_sign = (close > body && (src_[close - 1] == '-' || src_[close - 1] == '+')) ? src_[close - 1] : 0;
      pos_ = consume_end(close, 2, end_sign, options_.trim_blocks);
      return Status::ok();
    }
    push(type == '{' ? TokenKind::kVarBegin : TokenKind::kBlockBegin, type == '{' ? "{{" : "{%", tag);
    return lex_expression_tokens(body, type == '{');
  }

  // Tokens inside {{ }} / {% %} up to the closing delimiter. A delimiter inside open brackets is
  // an operator (`{{ {'a': {'b': 1}} }}`), as in jinja2.
  Status lex_expression_tokens(size_t at, bool is_variable) {
    std::vector<char> brackets;  // expected closing brackets
    const char close_char = is_variable ? '}' : '%';
    while (true) {
      while (at < src_.size() && is_ascii_space(src_[at])) ++at;
      if (at >= src_.size()) return error_at(at, is_variable ? "unexpected end of template, expected '}}'"
                                                             : "unexpected end of template, expected '%}'");
      if (brackets.empty()) {
        const char c = src_[at];
        const bool minus = c == '-' && src_.compare(at + 1, 2, std::string(1, close_char) + "}") == 0;
        const bool plus = !is_variable && c == '+' && src_.compare(at + 1, 2, "%}") == 0;
        const bool plain = c == close_char && at + 1 < src_.size() && src_[at + 1] == '}';
        if (minus || plus || plain) {
          push(is_variable ? TokenKind::kVarEnd : TokenKind::kBlockEnd, is_variable ? "}}" : "%}", at);
          pos_ = consume_end(plain ? at : at + 1, 2, plain ? 0 : c, !is_variable && options_.trim_blocks);
          return Status::ok();
        }
      }
      FATHOM_ASSIGN_OR_RETURN(at, lex_one(at, brackets));
    }
  }

  Expected<size_t> lex_number(size_t at) {
    const size_t start = at;
    std::string digits;
    const auto take_digits = [&]() {
      while (at < src_.size() && (is_digit(src_[at]) || (src_[at] == '_' && at + 1 < src_.size() && is_digit(src_[at + 1])))) {
        if (src_[at] != '_') digits.push_back(src_[at]);
        ++at;
      }
    };
    if (src_[at] == '0' && at + 1 < src_.size() && std::string_view("xXoObB").find(src_[at + 1]) != std::string_view::npos) {
      const char base_char = src_[at + 1] | 0x20;
      const int base = base_char == 'x' ? 16 : base_char == 'o' ? 8 : 2;
      at += 2;
      while (at < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[at])) || src_[at] == '_')) {
        if (src_[at] != '_') digits.push_back(src_[at]);
        ++at;
      }
      Token t;
      t.kind = TokenKind::kInteger;
      t.int_value = std::strtoll(digits.c_str(), nullptr, base);
      t.text = src_.substr(start, at - start);
      t.pos = pos_at(start);
      tokens_.push_back(std::move(t));
      return at;
    }
    take_digits();
    bool is_float = false;
    if (at + 1 < src_.size() && src_[at] == '.' && is_digit(src_[at + 1])) {
      is_float = true;
      digits.push_back('.');
      ++at;
      take_digits();
    }
    if (at < src_.size() && (src_[at] == 'e' || src_[at] == 'E')) {
      size_t exp = at + 1;
      if (exp < src_.size() && (src_[exp] == '+' || src_[exp] == '-')) ++exp;
      if (exp < src_.size() && is_digit(src_[exp])) {
        is_float = true;
        digits.append(src_, at, exp - at);
        at = exp;
        take_digits();
      }
    }
    Token t;
    t.kind = is_float ? TokenKind::kFloat : TokenKind::kInteger;
    t.text = src_.substr(start, at - start);
    t.pos = pos_at(start);
    if (is_float) {
      t.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      errno = 0;
      t.int_value = std::strtoll(digits.c_str(), nullptr, 10);
      if (errno == ERANGE) return error(ErrorCode::kUnsupported, "integer literal beyond 64 bits at " + format_pos(t.pos));
    }
    tokens_.push_back(std::move(t));
    return at;
  }

  Expected<size_t> lex_string(size_t at) {
    const char quote = src_[at];
    size_t scan = at + 1;
    while (scan < src_.size() && src_[scan] != quote) {
      if (src_[scan] == '\\') ++scan;
      ++scan;
    }
    if (scan >= src_.size()) return error_at(at, "unterminated string literal");
    auto decoded = decode_string_literal(std::string_view(src_).substr(at + 1, scan - at - 1));
    if (!decoded) return error_at(at, decoded.status().message());
    push(TokenKind::kString, std::move(decoded).value(), at);
    return scan + 1;
  }

  Expected<size_t> lex_one(size_t at, std::vector<char>& brackets) {
    const char c = src_[at];
    if (is_digit(c)) return lex_number(at);
    if (c == '\'' || c == '"') return lex_string(at);
    if (is_name_start(c)) {
      size_t end = at;
      while (end < src_.size() && is_name_char(src_[end])) ++end;
      push(TokenKind::kName, src_.substr(at, end - at), at);
      return end;
    }
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (src_.compare(at, 2, op) == 0) {
        push(TokenKind::kOperator, std::string(op), at);
        return at + 2;
      }
    }
    if (std::string_view("+-/*%~<>=.:|,;").find(c) != std::string_view::npos) {
      push(TokenKind::kOperator, std::string(1, c), at);
      return at + 1;
    }
    if (c == '(' || c == '[' || c == '{') {
      brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      push(TokenKind::kOperator, std::string(1, c), at);
      return at + 1;
    }
    if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) return error_at(at, strprintf("unexpected '%c'", c));
      if (brackets.back() != c) return error_at(at, strprintf("unexpected '%c', expected '%c'", c, brackets.back()));
      brackets.pop_back();
      push(TokenKind::kOperator, std::string(1, c), at);
      return at + 1;
    }
    size_t next = at;
    const char32_t cp = next_code_point(src_, next);
    std::string shown;
    append_utf8(cp, shown);
    return error_at(at, "unexpected character '" + shown + "'");
  }

  std::string src_;                 // normalised template source
  LexOptions options_;              // trim_blocks / lstrip_blocks
  size_t pos_ = 0;                  // offset of the next unconsumed byte
  bool line_starting_ = true;       // whether the last consumed text ended a line (lstrip_blocks)
  std::vector<size_t> line_starts_; // offset of each line's first byte, for positions
  mutable size_t last_offset_ = 0;   // the offset pos_at saw last ...
  mutable size_t last_column_ = 0;   // ... and its code point count from its line's start
  std::vector<Token> tokens_;       // output
};

}  // namespace

Expected<std::vector<Token>> tokenize(std::string_view source, const LexOptions& options) {
  Lexer lexer(normalize_source(source), options);
  return lexer.run();
}

}  // namespace fathom::jinja
