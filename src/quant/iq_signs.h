// Sign patterns of the i-quants that store seven sign bits per eight values: the eighth sign is
// implied, chosen so that the number of negative values is even (the quantizer flips the
// least important value's sign to make it so). Bit j set = value j negative.
#pragma once

#include <cstdint>

namespace fathom::quant {

constexpr uint8_t iq_sign_byte(uint8_t seven_bits) {
  const uint8_t s = seven_bits & 0x7F;
  return static_cast<uint8_t>(s | ((__builtin_popcount(s) & 1) << 7));
}

// Sign bytes from 7-bit patterns held one per byte (bit 7 clear; up to eight bytes): each byte
// gets its parity as bit 7, iq_sign_byte on every byte at once. The parity of a byte lands in
// its bit 0 (the shifts move bits only into higher bits of the byte below, never into bit 0).
constexpr uint64_t iq_add_sign_parity(uint64_t sevens) {
  uint64_t p = sevens ^ (sevens >> 4);
  p ^= p >> 2;
  p ^= p >> 1;
  return sevens | ((p & 0x0101010101010101ull) << 7);
}

// The four sign bytes of an IQ3_XXS/IQ2_XXS sign word (7-bit patterns in bits 7l..7l+6, value
// 8l + j negative when bit j of byte l is set): iq_sign_byte of each field, computed on the word
// at once.
constexpr uint32_t iq_sign_bytes(uint32_t word) {
  const uint32_t m = (word & 0x7Fu) | ((word << 1) & 0x7F00u) | ((word << 2) & 0x7F0000u) | ((word << 3) & 0x7F000000u);
  return static_cast<uint32_t>(iq_add_sign_parity(m));
}

}  // namespace fathom::quant
