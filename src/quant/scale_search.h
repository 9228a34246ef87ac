// Scale searches shared by the reference quantizers (internal to src/quant).
// They reproduce the rounding decisions of ggml's reference quantizers (make_qx_quants,
// make_q3_quants, make_qkx2_quants), so a row we quantize matches the ecosystem's bytes.
#pragma once

#include <cmath>
#include <cstdint>

namespace fathom::quant::detail {

// Groups whose largest magnitude is below this are stored as all-zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round half to even, as ggml's nearest_int (|x| < 2^22, the only range quantizers produce).
inline int nearest_int(float x) { return static_cast<int>(std::nearbyint(x)); }

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Symmetric scale for n values with quants in [-nmax, nmax-1], stored in L as q + nmax.
// rmse_type 0: plain rounding with the largest-magnitude value at -nmax; 1: least-squares
// refinement over 19 candidate scales weighted by x^2 (or by `weights` when non-null).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* weights);

// Symmetric 3-bit style search: start from -nmax at the largest value, then greedily move single
// quants while the weighted projection error drops. Weights are x^2 when `weights` is null.
// L holds q + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, const float* weights);

// Asymmetric search x ~ scale * L - min, L in [0, nmax]: tries nstep+1 scales from
// (nmax + rmin) to (nmax + rmin + nstep * rdelta) over the range, solving the weighted least-
// squares scale and offset for each rounding. Returns scale, writes the (positive) min.
// use_mad picks weighted absolute error over squared error as the score.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

}  // namespace fathom::quant::detail
