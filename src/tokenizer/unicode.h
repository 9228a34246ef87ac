// UTF-8 helpers and the GPT-2 byte-level alphabet shared by the tokenizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fathom::unicode {

// Length of the UTF-8 sequence a lead byte announces (1 for ASCII and for stray bytes, so that a
// caller walking "characters" always makes progress).
inline size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// Length of the well-formed UTF-8 sequence starting at text[pos] (Unicode table 3-7: no overlong
// forms, no surrogates, nothing above U+10FFFF). Returns 0 when the bytes there are not one, and
// sets *truncated when they are a valid but unfinished prefix cut off by the end of text.
size_t valid_utf8_length(std::string_view text, size_t pos, bool* truncated = nullptr);

void append_utf8(std::string& out, uint32_t code_point);

// GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so that every byte has a visible, non-space character.
uint32_t byte_to_code_point(uint8_t byte);
// Inverse of byte_to_code_point; returns -1 for code points outside the byte-level alphabet.
int byte_from_code_point(uint32_t code_point);

// Decodes the next UTF-8 character of text at *pos (advancing it); a malformed byte decodes as
// itself (0x80..0xFF) and advances by one.
uint32_t next_code_point(std::string_view text, size_t* pos);

}  // namespace fathom::unicode
