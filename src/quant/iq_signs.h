// The sign rule shared by the i-quants that store 7 of every 8 sign bits: the 8th is chosen so
// that each group of 8 has an even number of negative values, so it is not stored.
#pragma once

#include <bit>
#include <cstdint>

namespace fathom::quant {

// Sign mask of a group of 8 values (bit j set: value j is negative) from its stored 7 bits.
inline uint8_t iq_sign_byte(uint8_t seven_bits) {
  const unsigned low = seven_bits & 0x7Fu;
  return static_cast<uint8_t>(low | (static_cast<unsigned>(std::popcount(low)) & 1u) << 7);
}

}  // namespace fathom::quant
