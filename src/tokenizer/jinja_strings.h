// Python str semantics over UTF-8 bytes. Python strings index, slice, count and strip by code
// point and treat Unicode whitespace (U+3000, U+00A0, ...) as whitespace, so byte-level
// std::string operations would render differently for non-ASCII chat content.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fathom::jinja {

// Decodes one code point at `pos`, advancing it. A byte that is not valid UTF-8 decodes to
// kRawByteBase + byte (python's "surrogateescape" idea) and append_utf8 writes it back as that
// byte, so malformed input survives slicing and stripping unchanged instead of failing.
constexpr char32_t kRawByteBase = 0xDC00;
char32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(char32_t code_point, std::string& out);
std::u32string decode_utf8(std::string_view text);
std::string encode_utf8(std::u32string_view text);
size_t code_point_count(std::string_view text);

// str.isspace() for one code point.
bool is_python_space(char32_t code_point);

// str.strip/lstrip/rstrip; `chars` = none strips whitespace.
std::string python_strip(std::string_view text, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit; `separator` = none splits on whitespace runs. max_split < 0: unlimited.
std::vector<std::string> python_split(std::string_view text, const std::optional<std::string>& separator,
                                      int64_t max_split, bool from_right);
// str.replace; count < 0 replaces all. An empty `old` inserts between code points, as python does.
std::string python_replace(std::string_view text, std::string_view old_text, std::string_view new_text,
                           int64_t count);
// str.upper / str.lower / str.title / str.capitalize. Case mapping covers ASCII, Latin-1,
// Latin Extended-A, basic Greek and basic Cyrillic letters; other scripts are left unchanged
// (python maps more, e.g. Armenian or full-width Latin).
std::string python_upper(std::string_view text);
std::string python_lower(std::string_view text);
std::string python_capitalize(std::string_view text);
std::string python_title(std::string_view text);

// repr() of a str: quotes chosen like python, non-printable characters escaped.
std::string python_string_repr(std::string_view text);
// json.dumps of a str with ensure_ascii=False.
void append_json_string(std::string_view text, std::string& out);

}  // namespace fathom::jinja
