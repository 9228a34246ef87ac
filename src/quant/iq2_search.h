// Grid search of the IQ2 quantizers (internal to src/quant): the codebook entry that best
// reproduces one group of 8 values at a given scale, under per-value weights.
//
// A group is quantized as scale * grid[e][j] * sign[j]. For a fixed entry the best signs are the
// signs of the data; the 7-sign-bit formats (IQ2_XXS, IQ2_XS) also need an even count of
// negatives, so when the data has an odd count one sign is flipped, the one whose flip costs
// least: 4 * w[j] * |x[j]| * scale * grid[e][j]. With
//   A = sum w |x| g  -  2 * min_j w[j] |x[j]| g[j]   (the second term only when a flip is needed)
//   B = sum w g^2
// the weighted error is  sum w x^2 - 2 * scale * A + scale^2 * B,  and A, B do not depend on the
// scale, so the quantizer can also fit the scale of a set of groups by least squares (A / B).
//
// Two searches find the entry minimising scale^2 B - 2 scale A: the exhaustive one (the
// reference twin, every entry) and the fast one, which rounds |x| / scale to the lattice
// {8, 25, 43}^8 the grids are made of and tries only the entries a table lists as nearest to
// that lattice point (built once, on first use).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace fathom::quant::detail {

// One group of 8 values as the searches see it.
struct Iq2Group {
  float magnitude[8];  // |x|
  float weight[8];     // importance of each value's squared error, >= 0
  bool flip_one;       // the format stores 7 sign bits and the data has an odd count of negatives
};

// An entry chosen for a group, with the sums that give its error at any scale.
struct Iq2Choice {
  int index = 0;         // grid entry
  int flipped = -1;      // value whose sign is flipped against the data's, -1 for none
  float sum_wxg = 0;     // A above
  float sum_wg2 = 0;     // B above
  // Weighted error minus sum w x^2 at `scale`.
  float cost(float scale) const { return scale * (scale * sum_wg2 - 2 * sum_wxg); }
};

// Number of entries in the grid of an IQ2 type (256, 512, 1024).
int iq2_grid_size(DType t);

// A, B and the flipped value of entry `index` for group g.
Iq2Choice iq2_evaluate(DType t, const Iq2Group& g, int index);

// The entry of least cost at `scale` (> 0) over the whole grid; ties go to the lower index.
Iq2Choice iq2_search_exhaustive(DType t, const Iq2Group& g, float scale);

// The entry of least cost at `scale` (> 0) among the nearest entries of the lattice point of
// |x| / scale.
Iq2Choice iq2_search_fast(DType t, const Iq2Group& g, float scale);

}  // namespace fathom::quant::detail
