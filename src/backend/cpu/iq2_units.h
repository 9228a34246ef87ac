// The 32-value units of IQ2_XXS, IQ2_XS and IQ2_S super-blocks, decoded into what the vector
// kernels multiply (vec_dot_iq2_avx2.cpp, vec_dot_iq2_avx512.cpp): four grid entries, four sign
// bytes and two scales. The layouts are described with the reference twin, quant/quant_iq2.cpp.
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/blocks.h"
#include "quant/iq2_grids.h"
#include "quant/iq_signs.h"

namespace fathom::cpu::detail {

struct Iq2Unit {
  uint64_t grid[4];   // magnitudes of groups 0..3, value j of a group in byte j
  uint32_t signs;     // byte l: sign mask of group l (bit j set: value 8l + j is negative)
  uint16_t scale[2];  // 2s + 1 for values 0..15 and 16..31
};

inline uint32_t load_le32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline Iq2Unit iq2_unit(const quant::block_iq2_xxs& b, int u) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(b.qs) + 8 * u;
  const uint32_t packed = load_le32(bytes + 4);  // 4 x 7 sign bits, then the 4-bit scale
  Iq2Unit out;
  for (int l = 0; l < 4; ++l) out.grid[l] = quant::kIq2xxsGrid[bytes[l]];
  // Four 7-bit patterns at bits 0, 7, 14, 21 -> bytes 0..3.
  out.signs = quant::iq_sign_bytes(packed);
  out.scale[0] = out.scale[1] = static_cast<uint16_t>(2 * (packed >> 28) + 1);
  return out;
}

inline Iq2Unit iq2_unit(const quant::block_iq2_xs& b, int u) {
  const uint16_t* qs = b.qs + 4 * u;
  Iq2Unit out;
  uint32_t sevens = 0;
  for (int l = 0; l < 4; ++l) {
    out.grid[l] = quant::kIq2xsGrid[qs[l] & 511];
    sevens |= static_cast<uint32_t>(qs[l] >> 9) << (8 * l);
  }
  out.signs = static_cast<uint32_t>(quant::iq_add_sign_parity(sevens));
  out.scale[0] = static_cast<uint16_t>(2 * (b.scales[u] & 0xF) + 1);
  out.scale[1] = static_cast<uint16_t>(2 * (b.scales[u] >> 4) + 1);
  return out;
}

inline Iq2Unit iq2_unit(const quant::block_iq2_s& b, int u) {
  const uint8_t* qs = b.qs + 4 * u;
  const unsigned qh = b.qh[u];
  Iq2Unit out;
  for (int l = 0; l < 4; ++l) out.grid[l] = quant::kIq2sGrid[qs[l] | ((qh >> (2 * l)) & 3) << 8];
  out.signs = load_le32(b.qs + 32 + 4 * u);
  out.scale[0] = static_cast<uint16_t>(2 * (b.scales[u] & 0xF) + 1);
  out.scale[1] = static_cast<uint16_t>(2 * (b.scales[u] >> 4) + 1);
  return out;
}

}  // namespace fathom::cpu::detail
