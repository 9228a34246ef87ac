// Codebook and constants of the 1-bit i-quants (IQ1_S, IQ1_M): 2048 entries of eight ternary
// values (-1, 0, +1), one int8 per byte (value j in byte j, little-endian), shifted by a shared
// +-delta and scaled per block. Part of the GGUF format: a file's 11-bit grid indices mean these
// exact entries.
#pragma once

#include <array>
#include <cstdint>

namespace fathom::quant {

extern const std::array<uint64_t, 2048> kIq1SGrid;
// The same entries in the compact form they are written in: value j + 1 (0..2) in bits 2j, 2j+1,
// for kernels that expand them in vector registers.
extern const std::array<uint16_t, 2048> kIq1SGridCodes;

// The shift added to every grid value (its sign is stored per 32 values in IQ1_S, per 8 in IQ1_M).
constexpr float kIq1SDelta = 0.125f;
constexpr float kIq1MDelta = 0.125f;

// IQ1_M's fp16 super-block scale: the top nibbles of its four 16-bit scale words, word 0's lowest.
constexpr uint16_t iq1_m_scale_bits(const uint16_t words[4]) {
  return static_cast<uint16_t>((words[0] >> 12) | ((words[1] >> 8) & 0x00F0) | ((words[2] >> 4) & 0x0F00) |
                               (words[3] & 0xF000));
}

}  // namespace fathom::quant
