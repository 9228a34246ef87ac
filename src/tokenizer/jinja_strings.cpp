#include "tokenizer/jinja_strings.h"

#include <algorithm>

namespace fathom::jinja {

char32_t next_code_point(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  int extra = 0;
  char32_t cp = lead;
  if (lead >= 0xF0 && lead <= 0xF4) {
    extra = 3;
    cp = lead & 0x07;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    extra = 2;
    cp = lead & 0x0F;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    extra = 1;
    cp = lead & 0x1F;
  } else if (lead >= 0x80) {
    ++pos;
    return kRawByteBase + lead;
  }
  for (int i = 1; i <= extra; ++i) {
    if (pos + i >= text.size() || (byte(pos + i) & 0xC0) != 0x80) {
      ++pos;
      return kRawByteBase + lead;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  pos += 1 + extra;
  return cp;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp >= kRawByteBase + 0x80 && cp <= kRawByteBase + 0xFF) {
    out.push_back(static_cast<char>(cp - kRawByteBase));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) out.push_back(next_code_point(text, pos));
  return out;
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    append_utf8(cp, out);
  }
  return out;
}

size_t code_point_count(std::string_view text) {
  size_t count = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    next_code_point(text, pos);
    ++count;
  }
  return count;
}

bool is_python_space(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x1F:
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string python_strip(std::string_view text, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string cps = decode_utf8(text);
  const std::u32string strip_set = chars ? decode_utf8(*chars) : std::u32string();
  const auto strippable = [&](char32_t cp) {
    return chars ? strip_set.find(cp) != std::u32string::npos : is_python_space(cp);
  };
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && strippable(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strippable(cps[end - 1])) --end;
  }
  return encode_utf8(std::u32string_view(cps).substr(begin, end - begin));
}

namespace {

// Whitespace split: runs of whitespace separate fields and leading/trailing runs give no field.
std::vector<std::string> split_whitespace(std::string_view text, int64_t max_split, bool from_right) {
  std::u32string cps = decode_utf8(text);
  if (from_right) std::reverse(cps.begin(), cps.end());
  std::vector<std::u32string> fields;
  size_t i = 0;
  int64_t splits = 0;
  while (i < cps.size()) {
    while (i < cps.size() && is_python_space(cps[i])) ++i;
    if (i >= cps.size()) break;
    if (max_split >= 0 && splits >= max_split) {
      // The remainder keeps its inner whitespace but not the trailing run.
      size_t end = cps.size();
      while (end > i && is_python_space(cps[end - 1])) --end;
      fields.push_back(cps.substr(i, end - i));
      break;
    }
    size_t start = i;
    while (i < cps.size() && !is_python_space(cps[i])) ++i;
    fields.push_back(cps.substr(start, i - start));
    ++splits;
  }
  std::vector<std::string> out;
  for (auto& field : fields) {
    if (from_right) std::reverse(field.begin(), field.end());
    out.push_back(encode_utf8(field));
  }
  if (from_right) std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> python_split(std::string_view text, const std::optional<std::string>& separator,
                                      int64_t max_split, bool from_right) {
  if (!separator) return split_whitespace(text, max_split, from_right);
  const std::string& sep = *separator;
  std::vector<std::string> out;
  if (!from_right) {
    size_t start = 0;
    int64_t splits = 0;
    while (max_split < 0 || splits < max_split) {
      const size_t hit = text.find(sep, start);
      if (hit == std::string_view::npos) break;
      out.emplace_back(text.substr(start, hit - start));
      start = hit + sep.size();
      ++splits;
    }
    out.emplace_back(text.substr(start));
    return out;
  }
  size_t end = text.size();
  int64_t splits = 0;
  while (max_split < 0 || splits < max_split) {
    if (end < sep.size()) break;
    const size_t hit = text.rfind(sep, end - sep.size());
    if (hit == std::string_view::npos) break;
    out.emplace_back(text.substr(hit + sep.size(), end - hit - sep.size()));
    end = hit;
    ++splits;
  }
  out.emplace_back(text.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::string python_replace(std::string_view text, std::string_view old_text, std::string_view new_text,
                           int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old_text.empty()) {
    size_t pos = 0;
    while (pos <= text.size()) {
      if (count < 0 || done < count) {
        out.append(new_text);
        ++done;
      }
      if (pos == text.size()) break;
      const size_t start = pos;
      next_code_point(text, pos);
      out.append(text.substr(start, pos - start));
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t hit = text.find(old_text, start);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(start, hit - start));
    out.append(new_text);
    start = hit + old_text.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

namespace {

// Simple one-to-one case pairs. Returns the input when the code point has no mapping here.
char32_t to_upper_cp(char32_t cp) {
  if (cp >= 'a' && cp <= 'z') return cp - 32;
  if (cp < 0x80) return cp;
  if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)) return cp - 32;
  if (cp == 0xFF) return 0x178;
  if (cp == 0xB5) return 0x39C;
  if (cp >= 0x100 && cp <= 0x17F) {
    if (cp == 0x131) return 'I';
    if (cp == 0x17F) return 'S';
    const bool odd_is_lower = (cp <= 0x137) || (cp >= 0x14A && cp <= 0x177);
    if (odd_is_lower && (cp & 1) && cp != 0x149) return cp - 1;
    const bool even_is_lower = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
    if (even_is_lower && !(cp & 1)) return cp - 1;
    return cp;
  }
  if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2) return cp - 32;
  if (cp == 0x3C2) return 0x3A3;
  if (cp == 0x3AC) return 0x386;
  if (cp >= 0x3AD && cp <= 0x3AF) return cp - 37;
  if (cp == 0x3CC) return 0x38C;
  if (cp == 0x3CD || cp == 0x3CE) return cp - 63;
  if (cp >= 0x430 && cp <= 0x44F) return cp - 32;
  if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
  return cp;
}

char32_t to_lower_cp(char32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp < 0x80) return cp;
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
  if (cp == 0x178) return 0xFF;
  if (cp >= 0x100 && cp <= 0x17F) {
    if (cp == 0x130) return cp;  // maps to two code points in python; left as is
    const bool even_is_upper = (cp <= 0x137) || (cp >= 0x14A && cp <= 0x177);
    if (even_is_upper && !(cp & 1)) return cp + 1;
    const bool odd_is_upper = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
    if (odd_is_upper && (cp & 1)) return cp + 1;
    return cp;
  }
  if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
  if (cp == 0x386) return 0x3AC;
  if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
  if (cp == 0x38C) return 0x3CC;
  if (cp == 0x38E || cp == 0x38F) return cp + 63;
  if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
  return cp;
}

bool is_cased_letter(char32_t cp) { return to_upper_cp(cp) != cp || to_lower_cp(cp) != cp; }

void append_upper(char32_t cp, std::string& out) {
  if (cp == 0xDF) {
    out.append("SS");  // python: 'ß'.upper() == 'SS'
    return;
  }
  append_utf8(to_upper_cp(cp), out);
}

}  // namespace

std::string python_upper(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) append_upper(next_code_point(text, pos), out);
  return out;
}

std::string python_lower(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) append_utf8(to_lower_cp(next_code_point(text, pos)), out);
  return out;
}

std::string python_capitalize(std::string_view text) {
  std::string out;
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    const char32_t cp = next_code_point(text, pos);
    if (first) {
      append_upper(cp, out);
    } else {
      append_utf8(to_lower_cp(cp), out);
    }
    first = false;
  }
  return out;
}

std::string python_title(std::string_view text) {
  std::string out;
  size_t pos = 0;
  bool previous_cased = false;
  while (pos < text.size()) {
    const char32_t cp = next_code_point(text, pos);
    if (previous_cased) {
      append_utf8(to_lower_cp(cp), out);
    } else {
      append_upper(cp, out);
    }
    previous_cased = is_cased_letter(cp);
  }
  return out;
}

namespace {

// Characters python's str.isprintable() rejects beyond the C0/C1 controls: separators other
// than the ASCII space and common format characters.
bool is_python_unprintable(char32_t cp) {
  if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) return true;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return true;
  if ((cp >= 0x205F && cp <= 0x2064) || cp == 0x3000 || cp == 0xFEFF) return true;
  return cp >= 0xD800 && cp <= 0xDFFF;
}

void append_hex(uint32_t value, int digits, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(value >> (4 * i)) & 0xF]);
}

}  // namespace

std::string python_string_repr(std::string_view text) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < text.size()) {
    const char32_t cp = next_code_point(text, pos);
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out.append("\\n");
    } else if (cp == '\r') {
      out.append("\\r");
    } else if (cp == '\t') {
      out.append("\\t");
    } else if (is_python_unprintable(cp)) {
      if (cp < 0x100) {
        out.append("\\x");
        append_hex(cp, 2, out);
      } else {
        out.append("\\u");
        append_hex(cp, 4, out);
      }
    } else {
      append_utf8(cp, out);
    }
  }
  out.push_back(quote);
  return out;
}

void append_json_string(std::string_view text, std::string& out) {
  out.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out.append("\\u00");
          append_hex(static_cast<unsigned char>(c), 2, out);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace fathom::jinja
