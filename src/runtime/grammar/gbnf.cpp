// GBNF text -> Grammar. The format is llama.cpp's (rules `name ::= ...`, `|`, groups, `* + ?
// {m,n}`, string literals, `[...]` classes, `.`, `#` comments), read a little more leniently:
// newlines are plain whitespace and a rule ends where the next `name ::=` begins, so a rule may
// continue on the next line with `| ...`. Groups and repetitions become generated rules; code
// points become UTF-8 byte sequences (see grammar.h for why).
#include <algorithm>
#include <map>
#include <unordered_map>

#include "runtime/grammar/grammar.h"
#include "runtime/grammar/grammar_build.h"

namespace fathom {

namespace grammar_internal {

int32_t GrammarBuilder::rule_id(const std::string& name) {
  auto it = by_name.find(name);
  if (it != by_name.end()) return it->second;
  const int32_t id = static_cast<int32_t>(names.size());
  names.push_back(name);
  alternatives.emplace_back();
  defined.push_back(false);
  by_name.emplace(name, id);
  return id;
}

int32_t GrammarBuilder::new_rule(const std::string& parent) {
  std::string name;
  do name = parent + "_" + std::to_string(++generated); while (by_name.count(name));
  const int32_t id = rule_id(name);
  defined[static_cast<size_t>(id)] = true;
  return id;
}

int32_t GrammarBuilder::byte_set(const ByteSet& s) {
  auto it = set_ids.find(s);
  if (it != set_ids.end()) return it->second;
  const int32_t id = static_cast<int32_t>(sets.size());
  sets.push_back(s);
  set_ids.emplace(s, id);
  return id;
}

BuildElement GrammarBuilder::single_byte(uint8_t b) {
  ByteSet s{};
  s[b >> 6] |= uint64_t{1} << (b & 63);
  return {false, byte_set(s)};
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Splits [lo, hi] (no surrogates inside) until each piece encodes to UTF-8 sequences of one
// length whose every byte position spans a contiguous range: then a piece is one sequence of
// byte ranges and the union of the pieces is exactly the code points, in valid UTF-8 only.
void utf8_ranges(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>* out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) utf8_ranges(lo, 0xD7FF, out);
    if (hi > 0xDFFF) utf8_ranges(0xE000, hi, out);
    return;
  }
  for (uint32_t max : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= max && hi > max) {
      utf8_ranges(lo, max, out);
      utf8_ranges(max + 1, hi, out);
      return;
    }
  }
  const int n = hi < 0x80 ? 1 : hi < 0x800 ? 2 : hi < 0x10000 ? 3 : 4;
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_ranges(lo, lo | m, out);
        utf8_ranges((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_ranges(lo, (hi & ~m) - 1, out);
        utf8_ranges(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  append_utf8(lo, &a);
  append_utf8(hi, &b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t i = 0; i < a.size(); ++i) seq.push_back({static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i])});
  out->push_back(std::move(seq));
}

}  // namespace

std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges, bool negate) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<CodeRange> merged;
  for (const CodeRange& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) merged.back().second = std::max(merged.back().second, r.second);
    else merged.push_back(r);
  }
  if (!negate) return merged;
  std::vector<CodeRange> complement;
  uint32_t next = 0;
  for (const CodeRange& r : merged) {
    if (r.first > next) complement.push_back({next, r.first - 1});
    next = r.second + 1;
  }
  if (next <= 0x10FFFF) complement.push_back({next, 0x10FFFF});
  return complement;
}

// A class of code points as elements: one byte set when all are ASCII, else a rule whose
// alternatives are the UTF-8 byte-range sequences (ASCII part first, as one byte set).
Expected<BuildElement> GrammarBuilder::code_point_class(const std::vector<CodeRange>& normalized, const std::string& parent) {
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> seqs;
  for (const CodeRange& r : normalized) utf8_ranges(r.first, std::min<uint32_t>(r.second, 0x10FFFF), &seqs);
  if (seqs.empty()) return error(ErrorCode::kInvalidArgument, "a character class matches no character");
  ByteSet ascii{};
  bool has_ascii = false;
  std::vector<std::vector<BuildElement>> alts;
  for (const auto& seq : seqs) {
    if (seq.size() == 1) {
      for (unsigned b = seq[0].first; b <= seq[0].second; ++b) ascii[b >> 6] |= uint64_t{1} << (b & 63);
      has_ascii = true;
      continue;
    }
    std::vector<BuildElement> alt;
    for (const auto& [first, last] : seq) {
      ByteSet s{};
      for (unsigned b = first; b <= last; ++b) s[b >> 6] |= uint64_t{1} << (b & 63);
      alt.push_back({false, byte_set(s)});
    }
    alts.push_back(std::move(alt));
  }
  if (alts.empty()) return BuildElement{false, byte_set(ascii)};
  auto cached = class_rules.find(normalized);
  if (cached != class_rules.end()) return BuildElement{true, cached->second};
  if (has_ascii) alts.insert(alts.begin(), std::vector<BuildElement>{{false, byte_set(ascii)}});
  const int32_t id = new_rule(parent);
  for (const auto& a : alts) n_elements += static_cast<int64_t>(a.size()) + 1;
  alternatives[static_cast<size_t>(id)] = std::move(alts);
  class_rules.emplace(normalized, id);
  return BuildElement{true, id};
}

Status GrammarBuilder::check_size(const GrammarLimits& limits) const {
  if (static_cast<int64_t>(names.size()) > limits.max_rules)
    return error(ErrorCode::kOutOfRange, strprintf("the grammar has more than %d rules (GrammarLimits::max_rules)", limits.max_rules));
  if (n_elements > limits.max_elements)
    return error(ErrorCode::kOutOfRange, strprintf("the grammar has more than %lld elements after expanding repetitions (GrammarLimits::max_elements)",
                                                   static_cast<long long>(limits.max_elements)));
  return Status::ok();
}

Expected<BuildElement> GrammarBuilder::repeat(BuildElement e, int64_t min, int64_t max, const std::string& parent,
                                              std::vector<BuildElement>* out, const GrammarLimits& limits) {
  // max < 0: unbounded. Right recursion keeps the recognizer's stacks flat (tail position).
  if (min > limits.max_repetition || max > limits.max_repetition)
    return error(ErrorCode::kOutOfRange, strprintf("repetition bound above %d (GrammarLimits::max_repetition)", limits.max_repetition));
  for (int64_t i = 0; i < min; ++i) out->push_back(e);
  n_elements += min;
  if (max < 0) {
    const int32_t star = new_rule(parent);
    alternatives[static_cast<size_t>(star)] = {{e, {true, star}}, {}};
    n_elements += 4;
    out->push_back({true, star});
  } else if (max > min) {
    int32_t inner = -1;
    for (int64_t k = 0; k < max - min; ++k) {
      const int32_t opt = new_rule(parent);
      std::vector<BuildElement> first{e};
      if (inner >= 0) first.push_back({true, inner});
      alternatives[static_cast<size_t>(opt)] = {first, {}};
      n_elements += 4;
      inner = opt;
      if (k % 256 == 0) FATHOM_RETURN_IF_ERROR(check_size(limits));
    }
    out->push_back({true, inner});
  }
  FATHOM_RETURN_IF_ERROR(check_size(limits));
  return e;
}

namespace {

// Left recursion (a rule reaching itself before consuming a byte) would make the recognizer's
// expansion loop forever, so it is refused here with the cycle named.
Status check_left_recursion(const GrammarBuilder& b) {
  const size_t n = b.names.size();
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const auto& alt : b.alternatives[r]) {
        bool all = true;
        for (const BuildElement& e : alt) all = all && e.is_rule && nullable[static_cast<size_t>(e.value)];
        if (all) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  std::vector<std::vector<int32_t>> first(n);  // rules reachable at the start of rule r
  for (size_t r = 0; r < n; ++r)
    for (const auto& alt : b.alternatives[r])
      for (const BuildElement& e : alt) {
        if (!e.is_rule) break;
        first[r].push_back(e.value);
        if (!nullable[static_cast<size_t>(e.value)]) break;
      }
  std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
  std::vector<int32_t> path;
  // Iterative DFS: grammars may have thousands of generated rules.
  for (size_t start = 0; start < n; ++start) {
    if (color[start]) continue;
    std::vector<std::pair<int32_t, size_t>> stack{{static_cast<int32_t>(start), 0}};
    color[start] = 1;
    while (!stack.empty()) {
      auto& [r, i] = stack.back();
      if (i < first[static_cast<size_t>(r)].size()) {
        const int32_t next = first[static_cast<size_t>(r)][i++];
        if (color[static_cast<size_t>(next)] == 1) {
          std::string cycle;
          bool on = false;
          for (const auto& [pr, pi] : stack) {
            if (pr == next) on = true;
            if (on) cycle += b.names[static_cast<size_t>(pr)] + " -> ";
          }
          cycle += b.names[static_cast<size_t>(next)];
          return error(ErrorCode::kInvalidArgument,
                       "grammar rule '" + b.names[static_cast<size_t>(next)] + "' is left-recursive or repeats something that can be empty (" + cycle + ")");
        }
        if (color[static_cast<size_t>(next)] == 0) {
          color[static_cast<size_t>(next)] = 1;
          stack.push_back({next, 0});
        }
      } else {
        color[static_cast<size_t>(r)] = 2;
        stack.pop_back();
      }
    }
  }
  return Status::ok();
}

}  // namespace

Expected<std::shared_ptr<const Grammar>> GrammarBuilder::finish(const std::string& root_name, std::string source, const GrammarLimits& limits) {
  auto root_it = by_name.find(root_name);
  if (root_it == by_name.end() || !defined[static_cast<size_t>(root_it->second)])
    return error(ErrorCode::kInvalidArgument, "the grammar has no '" + root_name + "' rule (the start rule)");
  for (size_t r = 0; r < names.size(); ++r)
    if (!defined[r]) return error(ErrorCode::kInvalidArgument, "grammar rule '" + names[r] + "' is used but never defined" + undefined_where[names[r]]);
  FATHOM_RETURN_IF_ERROR(check_size(limits));
  FATHOM_RETURN_IF_ERROR(check_left_recursion(*this));
  auto g = std::make_shared<Grammar>();
  g->root = root_it->second;
  g->rule_names = names;
  g->byte_sets = sets;
  g->rule_alternatives.resize(names.size());
  for (size_t r = 0; r < names.size(); ++r) {
    for (const auto& alt : alternatives[r]) {
      g->rule_alternatives[r].push_back(static_cast<int32_t>(g->elements.size()));
      for (const BuildElement& e : alt)
        g->elements.push_back({e.is_rule ? GrammarElement::kRule : GrammarElement::kBytes, e.value});
      g->elements.push_back({GrammarElement::kEnd, static_cast<int32_t>(r)});
    }
  }
  // Byte classes: bytes with the same membership in every byte set behave identically.
  std::map<std::vector<bool>, int32_t> class_of;
  for (int b = 0; b < 256; ++b) {
    std::vector<bool> sig(sets.size());
    for (size_t s = 0; s < sets.size(); ++s) sig[s] = byte_set_has(sets[s], static_cast<uint8_t>(b));
    auto [it, inserted] = class_of.emplace(sig, static_cast<int32_t>(class_of.size()));
    g->byte_class[static_cast<size_t>(b)] = static_cast<uint8_t>(it->second);
  }
  g->n_byte_classes = static_cast<int32_t>(class_of.size());
  g->source = std::move(source);
  return std::shared_ptr<const Grammar>(std::move(g));
}

}  // namespace grammar_internal

namespace {

using grammar_internal::BuildElement;
using grammar_internal::CodeRange;
using grammar_internal::GrammarBuilder;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

class GbnfParser {
 public:
  GbnfParser(std::string_view text, const GrammarLimits& limits) : text_(text), limits_(limits) {}

  Expected<std::shared_ptr<const Grammar>> parse() {
    if (text_.size() > limits_.max_text_bytes)
      return error(ErrorCode::kOutOfRange, strprintf("the grammar text has %zu bytes; the limit is %zu (GrammarLimits::max_text_bytes)",
                                                     text_.size(), limits_.max_text_bytes));
    skip_space();
    if (pos_ >= text_.size()) return error(ErrorCode::kInvalidArgument, "the grammar is empty");
    while (pos_ < text_.size()) FATHOM_RETURN_IF_ERROR(parse_rule());
    return b_.finish("root", std::string(text_), limits_);
  }

 private:
  Status fail(const std::string& what) const { return fail_at(pos_, what); }
  Status fail_at(size_t at, const std::string& what) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return error(ErrorCode::kInvalidArgument, strprintf("grammar line %d column %d: %s", line, col, what.c_str()));
  }
  std::string where(size_t at) const {
    int line = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) line += text_[i] == '\n';
    return strprintf(" (line %d)", line);
  }

  void skip_space() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  size_t name_end(size_t at) const {
    while (at < text_.size() && is_name_char(text_[at])) ++at;
    return at;
  }

  // Whether `name ::=` starts at pos_: the end of the current rule.
  bool at_rule_start() const {
    const size_t end = name_end(pos_);
    if (end == pos_) return false;
    size_t at = end;
    while (at < text_.size() && (text_[at] == ' ' || text_[at] == '\t')) ++at;
    return text_.compare(at, 3, "::=") == 0;
  }

  Status parse_rule() {
    const size_t start = pos_;
    const size_t end = name_end(pos_);
    if (end == pos_) return fail("expected a rule name (letters, digits, '-' or '_')");
    const std::string name(text_.substr(pos_, end - pos_));
    pos_ = end;
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
    if (text_.compare(pos_, 3, "::=") != 0) return fail("expected '::=' after rule name '" + name + "'");
    pos_ += 3;
    const int32_t id = b_.rule_id(name);
    if (b_.defined[static_cast<size_t>(id)]) return fail_at(start, "rule '" + name + "' is defined twice");
    b_.defined[static_cast<size_t>(id)] = true;
    FATHOM_ASSIGN_OR_RETURN(auto alts, parse_alternatives(name, 0));
    b_.alternatives[static_cast<size_t>(id)] = std::move(alts);
    return b_.check_size(limits_);
  }

  Expected<std::vector<std::vector<BuildElement>>> parse_alternatives(const std::string& rule, int depth) {
    std::vector<std::vector<BuildElement>> alts;
    for (;;) {
      FATHOM_ASSIGN_OR_RETURN(auto seq, parse_sequence(rule, depth));
      b_.n_elements += static_cast<int64_t>(seq.size()) + 1;
      alts.push_back(std::move(seq));
      skip_space();
      if (pos_ < text_.size() && text_[pos_] == '|') {
        ++pos_;
        continue;
      }
      return alts;
    }
  }

  Expected<std::vector<BuildElement>> parse_sequence(const std::string& rule, int depth) {
    std::vector<BuildElement> seq;
    for (;;) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] == '|' || text_[pos_] == ')' || at_rule_start()) return seq;
      const size_t atom_start = seq.size();
      const char c = text_[pos_];
      if (c == '"') {
        FATHOM_RETURN_IF_ERROR(parse_literal(&seq));
      } else if (c == '[') {
        FATHOM_ASSIGN_OR_RETURN(BuildElement e, parse_class(rule));
        seq.push_back(e);
      } else if (c == '.') {
        ++pos_;
        FATHOM_ASSIGN_OR_RETURN(BuildElement e, b_.code_point_class(grammar_internal::normalize_ranges({}, true), rule));
        seq.push_back(e);
      } else if (c == '(') {
        const size_t open = pos_++;
        if (depth + 1 > limits_.max_nesting)
          return fail(strprintf("groups nested deeper than %d (GrammarLimits::max_nesting)", limits_.max_nesting));
        FATHOM_ASSIGN_OR_RETURN(auto alts, parse_alternatives(rule, depth + 1));
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] != ')') return fail_at(open, "unclosed '('");
        ++pos_;
        const int32_t id = b_.new_rule(rule);
        b_.alternatives[static_cast<size_t>(id)] = std::move(alts);
        seq.push_back({true, id});
      } else if (is_name_char(c)) {
        const size_t end = name_end(pos_);
        const std::string name(text_.substr(pos_, end - pos_));
        const int32_t id = b_.rule_id(name);
        if (!b_.undefined_where.count(name)) b_.undefined_where[name] = where(pos_);
        pos_ = end;
        seq.push_back({true, id});
      } else if (c == '<') {
        return fail("token references like <...> are not supported; write the text as a string literal");
      } else {
        return fail(strprintf("unexpected character '%c'", c));
      }
      FATHOM_RETURN_IF_ERROR(parse_postfix(rule, atom_start, &seq));
    }
  }

  Status parse_postfix(const std::string& rule, size_t atom_start, std::vector<BuildElement>* seq) {
    if (pos_ >= text_.size()) return Status::ok();
    const char c = text_[pos_];
    int64_t min = 0, max = -1;
    if (c == '*') {
      ++pos_;
    } else if (c == '+') {
      ++pos_;
      min = 1;
    } else if (c == '?') {
      ++pos_;
      max = 1;
    } else if (c == '{') {
      const size_t open = pos_++;
      FATHOM_ASSIGN_OR_RETURN(min, parse_count());
      skip_space();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        skip_space();
        if (pos_ < text_.size() && text_[pos_] != '}') {
          FATHOM_ASSIGN_OR_RETURN(max, parse_count());
        }
      } else {
        max = min;
      }
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '}') return fail_at(open, "unclosed '{' repetition (expected {m}, {m,} or {m,n})");
      ++pos_;
      if (max >= 0 && max < min) return fail_at(open, strprintf("repetition {%lld,%lld}: the maximum is below the minimum", (long long)min, (long long)max));
    } else {
      return Status::ok();
    }
    if (seq->size() == atom_start) return fail("a repetition operator needs something before it");
    // A multi-byte literal repeats as a whole: wrap it in a rule first.
    BuildElement atom = (*seq)[atom_start];
    if (seq->size() - atom_start > 1) {
      const int32_t id = b_.new_rule(rule);
      b_.alternatives[static_cast<size_t>(id)] = {std::vector<BuildElement>(seq->begin() + static_cast<std::ptrdiff_t>(atom_start), seq->end())};
      atom = {true, id};
    }
    seq->resize(atom_start);
    FATHOM_ASSIGN_OR_RETURN(BuildElement unused, b_.repeat(atom, min, max, rule, seq, limits_));
    (void)unused;
    skip_space();
    if (pos_ < text_.size() && (text_[pos_] == '*' || text_[pos_] == '+' || text_[pos_] == '?' || text_[pos_] == '{'))
      return fail("two repetition operators in a row; group the first in parentheses");
    return Status::ok();
  }

  Expected<int64_t> parse_count() {
    skip_space();
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      v = v * 10 + (text_[pos_++] - '0');
      if (v > limits_.max_repetition)
        return fail_at(start, strprintf("repetition bound above %d (GrammarLimits::max_repetition)", limits_.max_repetition));
    }
    if (pos_ == start) return fail("expected a number in the repetition");
    return v;
  }

  // One code point from the source at pos_, escapes decoded.
  Expected<uint32_t> parse_char(bool in_class) {
    if (pos_ >= text_.size()) return fail("unexpected end of grammar");
    const unsigned char c = static_cast<unsigned char>(text_[pos_]);
    if (c == '\\') {
      if (pos_ + 1 >= text_.size()) return fail("unfinished escape");
      const char e = text_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n': return uint32_t{'\n'};
        case 'r': return uint32_t{'\r'};
        case 't': return uint32_t{'\t'};
        case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'': case '.':
          return static_cast<uint32_t>(e);
        case 'x': return parse_hex(2);
        case 'u': return parse_hex(4);
        case 'U': return parse_hex(8);
        default: pos_ -= 2; return fail(strprintf("unknown escape '\\%c'", e));
      }
    }
    if (c < 0x80) {
      ++pos_;
      return uint32_t{c};
    }
    const int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || pos_ + static_cast<size_t>(n) > text_.size()) return fail("invalid UTF-8 in the grammar text");
    uint32_t cp = c & (0x7F >> n);
    for (int i = 1; i < n; ++i) {
      const unsigned char cc = static_cast<unsigned char>(text_[pos_ + static_cast<size_t>(i)]);
      if ((cc & 0xC0) != 0x80) return fail("invalid UTF-8 in the grammar text");
      cp = (cp << 6) | (cc & 0x3F);
    }
    pos_ += static_cast<size_t>(n);
    (void)in_class;
    return cp;
  }

  Expected<uint32_t> parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= text_.size()) return fail("unfinished hex escape");
      const char h = text_[pos_];
      int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) return fail(strprintf("expected %d hex digits in the escape", digits));
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return fail("escape is not a Unicode scalar value");
    return v;
  }

  Status parse_literal(std::vector<BuildElement>* seq) {
    const size_t open = pos_++;
    std::string bytes;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\n') return fail_at(open, "unclosed string literal");
      FATHOM_ASSIGN_OR_RETURN(uint32_t cp, parse_char(false));
      grammar_internal::append_utf8(cp, &bytes);
    }
    if (pos_ >= text_.size()) return fail_at(open, "unclosed string literal");
    ++pos_;
    for (char ch : bytes) seq->push_back(b_.single_byte(static_cast<uint8_t>(ch)));
    b_.n_elements += static_cast<int64_t>(bytes.size());
    return Status::ok();
  }

  Expected<BuildElement> parse_class(const std::string& rule) {
    const size_t open = pos_++;
    bool negate = false;
    if (pos_ < text_.size() && text_[pos_] == '^') {
      negate = true;
      ++pos_;
    }
    std::vector<CodeRange> ranges;
    while (pos_ < text_.size() && text_[pos_] != ']') {
      FATHOM_ASSIGN_OR_RETURN(uint32_t lo, parse_char(true));
      uint32_t hi = lo;
      if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
        ++pos_;
        FATHOM_ASSIGN_OR_RETURN(hi, parse_char(true));
        if (hi < lo) return fail(strprintf("character range U+%04X-U+%04X is reversed", lo, hi));
      }
      ranges.push_back({lo, hi});
    }
    if (pos_ >= text_.size()) return fail_at(open, "unclosed character class '['");
    ++pos_;
    auto e = b_.code_point_class(grammar_internal::normalize_ranges(std::move(ranges), negate), rule);
    if (!e) return fail_at(open, e.status().message());
    return e;
  }

  std::string_view text_;
  const GrammarLimits& limits_;
  size_t pos_ = 0;
  GrammarBuilder b_;
};

}  // namespace

Expected<std::shared_ptr<const Grammar>> grammar_from_gbnf(std::string_view text, const GrammarLimits& limits) {
  return GbnfParser(text, limits).parse();
}

}  // namespace fathom
