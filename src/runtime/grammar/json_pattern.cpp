// JSON Schema `pattern` (an ECMAScript regular expression) -> GBNF for the *content* of a JSON
// string. Only the regular subset is accepted: literals, escapes, classes, `.`, groups,
// alternation, `* + ? {m,n}` (lazy forms too: same language), and `^`/`$` at the ends. The
// pattern speaks about decoded characters while the grammar writes the JSON text, so every
// character is emitted in its JSON form: `"` as `\"`, `\` as `\\`, control characters escaped.
#include "runtime/grammar/grammar_build.h"
#include "runtime/grammar/json_pattern.h"

namespace fathom {

namespace {

using grammar_internal::CodeRange;
using grammar_internal::normalize_ranges;

std::vector<CodeRange> set_of(std::initializer_list<CodeRange> r) { return normalize_ranges(r, false); }
const std::vector<CodeRange>& digits() { static const auto s = set_of({{'0', '9'}}); return s; }
const std::vector<CodeRange>& word() { static const auto s = set_of({{'0', '9'}, {'A', 'Z'}, {'a', 'z'}, {'_', '_'}}); return s; }
const std::vector<CodeRange>& space() {
  // ECMAScript's \s: white space and line terminators.
  static const auto s = set_of({{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
                                {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}});
  return s;
}

std::string hex8(uint32_t cp) { return strprintf("\\U%08X", cp); }

// A code point set as GBNF for its JSON-string spelling.
std::string json_chars(const std::vector<CodeRange>& set) {
  std::vector<CodeRange> plain;
  std::vector<std::string> alts;
  for (const CodeRange& r : set) {
    for (uint32_t special : {uint32_t{'"'}, uint32_t{'\\'}})
      if (r.first <= special && special <= r.second) alts.push_back(special == '"' ? "\"\\\\\\\"\"" : "\"\\\\\\\\\"");
    for (uint32_t c = r.first; c <= std::min<uint32_t>(r.second, 0x1F); ++c) {
      const char* short_form = c == '\n' ? "n" : c == '\t' ? "t" : c == '\r' ? "r" : c == '\b' ? "b" : c == '\f' ? "f" : nullptr;
      alts.push_back(short_form ? strprintf("\"\\\\%s\"", short_form) : strprintf("\"\\\\u%04x\"", c));
    }
    // The rest, split around the specials.
    uint32_t lo = std::max<uint32_t>(r.first, 0x20);
    for (uint32_t special : {uint32_t{'"'}, uint32_t{'\\'}}) {
      if (lo > r.second) break;
      if (special >= lo && special <= r.second) {
        if (special > lo) plain.push_back({lo, special - 1});
        lo = special + 1;
      }
    }
    if (lo <= r.second) plain.push_back({lo, r.second});
  }
  if (!plain.empty()) {
    std::string cls = "[";
    for (const CodeRange& r : plain) cls += r.first == r.second ? hex8(r.first) : hex8(r.first) + "-" + hex8(r.second);
    alts.insert(alts.begin(), cls + "]");
  }
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : " ") + alts[i];
  return out + " )";
}

class PatternParser {
 public:
  explicit PatternParser(std::string_view p) : p_(p) {}

  Expected<std::string> parse() {
    bool anchored_start = false, anchored_end = false;
    size_t end = p_.size();
    if (!p_.empty() && p_[0] == '^') {
      anchored_start = true;
      pos_ = 1;
    }
    if (end > pos_ && p_[end - 1] == '$') {
      size_t backslashes = 0;
      for (size_t i = end - 1; i > 0 && p_[i - 1] == '\\'; --i) ++backslashes;
      if (backslashes % 2 == 0) {
        anchored_end = true;
        --end;
      }
    }
    p_ = p_.substr(0, end);
    FATHOM_ASSIGN_OR_RETURN(std::string body, alternation(0));
    if (pos_ < p_.size()) return fail(p_[pos_] == ')' ? "unbalanced ')'" : "unexpected character");
    // An unanchored pattern may match anywhere in the string.
    return std::string(anchored_start ? "" : "char* ") + "( " + body + " )" + (anchored_end ? "" : " char*");
  }

 private:
  Status fail(const std::string& what) const {
    return error(ErrorCode::kUnsupported, strprintf("pattern at offset %zu: %s", pos_, what.c_str()));
  }

  Expected<std::string> alternation(int depth) {
    if (depth > 32) return fail("groups nested deeper than 32");
    std::string out;
    for (;;) {
      FATHOM_ASSIGN_OR_RETURN(std::string seq, sequence(depth));
      out += seq;
      if (pos_ < p_.size() && p_[pos_] == '|') {
        ++pos_;
        out += " | ";
        continue;
      }
      return out;
    }
  }

  Expected<std::string> sequence(int depth) {
    std::string out;
    while (pos_ < p_.size() && p_[pos_] != '|' && p_[pos_] != ')') {
      FATHOM_ASSIGN_OR_RETURN(std::string atom, this->atom(depth));
      FATHOM_ASSIGN_OR_RETURN(std::string quant, quantifier());
      if (!out.empty()) out += ' ';
      if (quant.empty()) {
        out += atom;
      } else {
        out += "( ";
        out += atom;
        out += " )";
        out += quant;
      }
    }
    return out;
  }

  Expected<std::string> quantifier() {
    if (pos_ >= p_.size()) return std::string();
    std::string q;
    const char c = p_[pos_];
    if (c == '*' || c == '+' || c == '?') {
      q = std::string(1, c);
      ++pos_;
    } else if (c == '{') {
      const size_t close = p_.find('}', pos_);
      if (close == std::string_view::npos) return fail("unclosed '{'");
      const std::string inner(p_.substr(pos_ + 1, close - pos_ - 1));
      for (char ch : inner)
        if (!(ch >= '0' && ch <= '9') && ch != ',') return fail("'{' must be a {m}, {m,} or {m,n} repetition");
      if (inner.empty() || inner[0] == ',') return fail("'{' must be a {m}, {m,} or {m,n} repetition");
      q = "{" + inner + "}";
      pos_ = close + 1;
    } else {
      return std::string();
    }
    if (pos_ < p_.size() && p_[pos_] == '?') ++pos_;  // lazy: the same language
    if (pos_ < p_.size() && (p_[pos_] == '*' || p_[pos_] == '+' || p_[pos_] == '{'))
      return fail("possessive or doubled quantifiers are not supported");
    return q;
  }

  Expected<std::string> atom(int depth) {
    const char c = p_[pos_];
    if (c == '(') {
      ++pos_;
      if (p_.substr(pos_, 2) == "?:") {
        pos_ += 2;
      } else if (p_.substr(pos_, 2) == "?<" && pos_ + 2 < p_.size() && p_[pos_ + 2] != '=' && p_[pos_ + 2] != '!') {
        const size_t close = p_.find('>', pos_);
        if (close == std::string_view::npos) return fail("unclosed group name");
        pos_ = close + 1;
      } else if (pos_ < p_.size() && p_[pos_] == '?') {
        return fail("lookaround and other '(?' groups are not regular; not supported");
      }
      FATHOM_ASSIGN_OR_RETURN(std::string inner, alternation(depth + 1));
      if (pos_ >= p_.size() || p_[pos_] != ')') return fail("unclosed '('");
      ++pos_;
      return "( " + inner + " )";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return json_chars(normalize_ranges({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}, true));
    }
    if (c == '^' || c == '$') return fail("anchors are supported only at the start and end of the pattern");
    if (c == '*' || c == '+' || c == '?' || c == '{') return fail("a quantifier needs something before it");
    if (c == '\\') {
      FATHOM_ASSIGN_OR_RETURN(std::vector<CodeRange> set, escape(false));
      return json_chars(set);
    }
    FATHOM_ASSIGN_OR_RETURN(uint32_t cp, utf8_char());
    return json_chars({{cp, cp}});
  }

  Expected<uint32_t> utf8_char() {
    const unsigned char c = static_cast<unsigned char>(p_[pos_]);
    const int n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || pos_ + static_cast<size_t>(n) > p_.size()) return fail("invalid UTF-8");
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(p_[pos_ + static_cast<size_t>(i)]) & 0x3F);
    pos_ += static_cast<size_t>(n);
    return cp;
  }

  Expected<uint32_t> hex(int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i, ++pos_) {
      if (pos_ >= p_.size() || !std::isxdigit(static_cast<unsigned char>(p_[pos_]))) return fail("bad hex escape");
      const char h = p_[pos_];
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  // After a backslash: a set (one code point for plain escapes).
  Expected<std::vector<CodeRange>> escape(bool in_class) {
    ++pos_;
    if (pos_ >= p_.size()) return fail("pattern ends with a backslash");
    const char e = p_[pos_++];
    switch (e) {
      case 'd': return digits();
      case 'D': return normalize_ranges(digits(), true);
      case 'w': return word();
      case 'W': return normalize_ranges(word(), true);
      case 's': return space();
      case 'S': return normalize_ranges(space(), true);
      case 'n': return set_of({{'\n', '\n'}});
      case 't': return set_of({{'\t', '\t'}});
      case 'r': return set_of({{'\r', '\r'}});
      case 'f': return set_of({{'\f', '\f'}});
      case 'v': return set_of({{'\v', '\v'}});
      case '0': return set_of({{0, 0}});
      case 'x': {
        FATHOM_ASSIGN_OR_RETURN(uint32_t v, hex(2));
        return set_of({{v, v}});
      }
      case 'u': {
        FATHOM_ASSIGN_OR_RETURN(uint32_t v, hex(4));
        if (v >= 0xD800 && v <= 0xDFFF) return fail("surrogate escapes are not supported");
        return set_of({{v, v}});
      }
      case 'b':
        if (in_class) return set_of({{'\b', '\b'}});
        return fail("word boundaries (\\b) are not supported");
      default:
        break;
    }
    if ((e >= '1' && e <= '9') || e == 'k') return fail("backreferences are not supported");
    if (e == 'p' || e == 'P') return fail("Unicode property escapes (\\p) are not supported");
    if (e == 'B') return fail("word boundaries (\\B) are not supported");
    if (std::isalnum(static_cast<unsigned char>(e))) return fail(strprintf("unknown escape '\\%c'", e));
    const uint32_t cp = static_cast<unsigned char>(e);
    return set_of({{cp, cp}});
  }

  Expected<std::string> char_class() {
    ++pos_;
    bool negate = false;
    if (pos_ < p_.size() && p_[pos_] == '^') {
      negate = true;
      ++pos_;
    }
    if (pos_ < p_.size() && p_[pos_] == ']') return fail("an empty class '[]' matches nothing");
    std::vector<CodeRange> set;
    while (pos_ < p_.size() && p_[pos_] != ']') {
      std::vector<CodeRange> first;
      if (p_[pos_] == '\\') {
        FATHOM_ASSIGN_OR_RETURN(first, escape(true));
      } else {
        FATHOM_ASSIGN_OR_RETURN(uint32_t cp, utf8_char());
        first = {{cp, cp}};
      }
      if (first.size() == 1 && first[0].first == first[0].second && pos_ + 1 < p_.size() && p_[pos_] == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        std::vector<CodeRange> last;
        if (p_[pos_] == '\\') {
          FATHOM_ASSIGN_OR_RETURN(last, escape(true));
        } else {
          FATHOM_ASSIGN_OR_RETURN(uint32_t cp, utf8_char());
          last = {{cp, cp}};
        }
        if (last.size() != 1 || last[0].first != last[0].second) return fail("a class range must end in a single character");
        if (last[0].first < first[0].first) return fail("a reversed class range");
        set.push_back({first[0].first, last[0].first});
      } else {
        set.insert(set.end(), first.begin(), first.end());
      }
    }
    if (pos_ >= p_.size()) return fail("unclosed '['");
    ++pos_;
    const std::vector<CodeRange> normalized = normalize_ranges(set, negate);
    if (normalized.empty()) return fail("the class matches nothing");
    return json_chars(normalized);
  }

  std::string_view p_;
  size_t pos_ = 0;
};

}  // namespace

Expected<std::string> json_pattern_to_gbnf(std::string_view pattern) { return PatternParser(pattern).parse(); }

}  // namespace fathom
