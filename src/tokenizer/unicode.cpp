#include "tokenizer/unicode.h"

#include <array>

namespace fathom::unicode {

size_t valid_utf8_length(std::string_view text, size_t pos, bool* truncated) {
  if (truncated) *truncated = false;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return 1;
  size_t n = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    if (lead == 0xE0) lo = 0xA0;  // overlong
    if (lead == 0xED) hi = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    if (lead == 0xF0) lo = 0x90;  // overlong
    if (lead == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; ++i) {
    if (pos + i >= text.size()) {
      if (truncated) *truncated = true;
      return 0;
    }
    const uint8_t b = byte(pos + i);
    const uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return 0;
  }
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

constexpr bool is_printable_byte(uint32_t b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

// Both directions of the byte-level alphabet, built at compile time.
struct ByteLevelTables {
  std::array<uint16_t, 256> byte_to_cp{};  // [byte] code point
  std::array<int16_t, 0x144> cp_to_byte{};  // [code point < U+0144] byte, or -1
};

constexpr ByteLevelTables make_byte_level_tables() {
  ByteLevelTables t;
  for (auto& b : t.cp_to_byte) b = -1;
  uint32_t n = 0;  // the n-th non-printable byte maps to U+0100 + n
  for (uint32_t b = 0; b < 256; ++b) {
    const uint32_t cp = is_printable_byte(b) ? b : 0x100 + n++;
    t.byte_to_cp[b] = static_cast<uint16_t>(cp);
    t.cp_to_byte[cp] = static_cast<int16_t>(b);
  }
  return t;
}

constexpr ByteLevelTables kByteLevel = make_byte_level_tables();

}  // namespace

uint32_t byte_to_code_point(uint8_t byte) { return kByteLevel.byte_to_cp[byte]; }

int byte_from_code_point(uint32_t cp) { return cp < kByteLevel.cp_to_byte.size() ? kByteLevel.cp_to_byte[cp] : -1; }

uint32_t next_code_point(std::string_view text, size_t* pos) {
  const size_t n = valid_utf8_length(text, *pos);
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(text[*pos + i])); };
  uint32_t cp;
  switch (n) {
    case 1: cp = b(0); break;
    case 2: cp = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F); break;
    case 3: cp = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F); break;
    case 4: cp = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F); break;
    default: cp = b(0); *pos += 1; return cp;
  }
  *pos += n;
  return cp;
}

}  // namespace fathom::unicode
