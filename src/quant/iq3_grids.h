// Codebooks of the 3-bit i-quants (IQ3_XXS, IQ3_S): each entry is four non-negative magnitudes,
// one per byte (value j in byte j, little-endian), which a block scale and sign bits turn into
// weights. They are part of the GGUF format: a file's grid indices mean these exact entries.
#pragma once

#include <array>
#include <cstdint>

namespace fathom::quant {

// IQ3_XXS: 256 entries, magnitudes from {4, 12, 20, 28, 36, 44, 52, 62}.
extern const std::array<uint32_t, 256> kIq3XxsGrid;
// IQ3_S: 512 entries, magnitudes from {1, 3, 5, ..., 15}.
extern const std::array<uint32_t, 512> kIq3SGrid;

}  // namespace fathom::quant
