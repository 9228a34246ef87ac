// Codebooks of the 2-bit i-quants (normative format data; see iq2_grids.cpp). Entry e holds 8
// unsigned magnitudes, value j in byte j (little-endian), as ggml's tables do, so a vector kernel
// can load an entry as one 64-bit word. Signs and scales are stored separately in the blocks.
#pragma once

#include <array>
#include <cstdint>

namespace fathom::quant {

// The magnitudes every entry of all three grids is made of.
inline constexpr std::array<uint8_t, 3> kIq2Levels = {8, 25, 43};

extern const std::array<uint64_t, 256> kIq2xxsGrid;   // IQ2_XXS: 8-bit indices
extern const std::array<uint64_t, 512> kIq2xsGrid;    // IQ2_XS: 9-bit indices
extern const std::array<uint64_t, 1024> kIq2sGrid;    // IQ2_S: 10-bit indices

// The IQ2_XXS entries in the compact form they are written in: 2 bits per magnitude (value j in
// bits 2j, 2j+1, an index into kIq2Levels; 3 never occurs), for kernels that expand them in
// vector registers.
extern const std::array<uint16_t, 256> kIq2xxsGridCodes;

}  // namespace fathom::quant
