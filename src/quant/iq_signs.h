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

}  // namespace fathom::quant
