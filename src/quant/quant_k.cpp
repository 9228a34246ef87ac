// Reference kernels of the K-quant super-block formats (q2_K .. q6_K, q8_K).
// Without importance the rounding follows ggml's reference quantizers step for step; with
// importance (imatrix) the same searches run as weighted least squares, with weights
// importance * sqrt(sigma2 + x^2) as llama.cpp's imatrix quantizers use (not bit-identical to
// llama.cpp's imatrix path, which uses further search variants).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

namespace fathom::quant::detail {

namespace {

float sum_squares(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// Per-value weights for importance-weighted searches. sigma2 keeps values with tiny importance
// from being ignored entirely.
void importance_weights(const float* x, const float* importance, float sigma2, int n, float* weights) {
  for (int i = 0; i < n; ++i) weights[i] = importance[i] * std::sqrt(sigma2 + x[i] * x[i]);
}

// Packs 256 2-bit values as q2_K/q3_K store them: value 128c + 32s + l goes to bits 2s of
// qs[32c + l].
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Unpacks 256 2-bit values (inverse of pack_2bit).
void unpack_2bit(const uint8_t* qs, int* q) {
  for (int c = 0; c < 2; ++c)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) q[128 * c + 32 * s + l] = (qs[32 * c + l] >> (2 * s)) & 3;
}

// Packs 8 6-bit scales and mins into q4_K/q5_K's 12 bytes (inverse of unpack_scale_min_k4).
void pack_scale_min_k4(const int* ls, const int* lm, uint8_t* scales) {
  std::memset(scales, 0, kKScaleBytes);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = static_cast<uint8_t>(ls[j]);
      scales[j + 4] = static_cast<uint8_t>(lm[j]);
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// Shared by q4_K and q5_K: per 32-value sub-block asymmetric scale search, then 6-bit scales and
// mins relative to the block maxima, then the final quants re-rounded against the stored
// (quantized) scales. Writes d/dmin/scales and L[256] in [0, nmax].
void quantize_k4_style(const float* x, const float* importance, int nmax, float rmin, int nstep, uint16_t* d_out,
                       uint16_t* dmin_out, uint8_t* scales_out, uint8_t* L) {
  float weights[32], mins[8], scales[8];
  uint8_t Laux[32];
  const float sigma2 = importance ? 2 * sum_squares(x, kQK) / kQK : 0;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    if (importance) {
      importance_weights(xs, importance + 32 * j, sigma2, 32, weights);
    } else {
      // Unweighted ggml: error weighted by the block's rms plus |x|, favouring large values.
      const float av_x = std::sqrt(sum_squares(xs, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    }
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  int ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min(63, nearest_int(inv_scale * scales[j]));
    lm[j] = std::min(63, nearest_int(inv_min * mins[j]));
  }
  pack_scale_min_k4(ls, lm, scales_out);
  *d_out = fp32_to_fp16(max_scale / 63.f);
  *dmin_out = fp32_to_fp16(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    unpack_scale_min_k4(j, scales_out, &sc, &m);
    const float d = fp16_to_fp32(*d_out) * sc;
    if (!d) continue;
    const float dm = fp16_to_fp32(*dmin_out) * m;
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

}  // namespace

// ---- dequantize ----

void dequantize_q2_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q2_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    int q[256];
    unpack_2bit(b[i].qs, q);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * (b[i].scales[j] & 0xF), ml = dmin * (b[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q[16 * j + l]) - ml;
    }
  }
}

void dequantize_q3_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q3_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    int q[256];
    unpack_2bit(b[i].qs, q);
    for (int k = 0; k < kQK; ++k) q[k] -= (b[i].hmask[k % 32] >> (k / 32)) & 1 ? 0 : 4;
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(q3_K_scale(j, b[i].scales));
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q[16 * j + l]);
    }
  }
}

void dequantize_q4_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q4_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = b[i].qs + 32 * c;
      uint8_t sc1, m1, sc2, m2;
      unpack_scale_min_k4(2 * c, b[i].scales, &sc1, &m1);
      unpack_scale_min_k4(2 * c + 1, b[i].scales, &sc2, &m2);
      const float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
      for (int l = 0; l < 32; ++l) dst[64 * c + l] = d1 * static_cast<float>(q[l] & 0xF) - mm1;
      for (int l = 0; l < 32; ++l) dst[64 * c + 32 + l] = d2 * static_cast<float>(q[l] >> 4) - mm2;
    }
  }
}

void dequantize_q5_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q5_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = b[i].qs + 32 * c;
      uint8_t sc1, m1, sc2, m2;
      unpack_scale_min_k4(2 * c, b[i].scales, &sc1, &m1);
      unpack_scale_min_k4(2 * c + 1, b[i].scales, &sc2, &m2);
      const float d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
      for (int l = 0; l < 32; ++l) {
        const int lo = (q[l] & 0xF) | (((b[i].qh[l] >> (2 * c)) & 1) << 4);
        const int hi = (q[l] >> 4) | (((b[i].qh[l] >> (2 * c + 1)) & 1) << 4);
        dst[64 * c + l] = d1 * static_cast<float>(lo) - mm1;
        dst[64 * c + 32 + l] = d2 * static_cast<float>(hi) - mm2;
      }
    }
  }
}

namespace {
// The 256 6-bit quants of a q6_K block, unsigned (0..63).
void unpack_q6_K(const block_q6_K& b, int* q) {
  for (int c = 0; c < 2; ++c) {
    const uint8_t* ql = b.ql + 64 * c;
    const uint8_t* qh = b.qh + 32 * c;
    for (int l = 0; l < 32; ++l) {
      q[128 * c + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
      q[128 * c + 32 + l] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
      q[128 * c + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
      q[128 * c + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
    }
  }
}

// The 256 quants of a q4_K (qh null) or q5_K block, unsigned.
void unpack_q45_K(const uint8_t* qs, const uint8_t* qh, int* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = qs[32 * c + l] & 0xF;
      q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
      if (qh) {
        q[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
        q[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
    }
}
}  // namespace

void dequantize_q6_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q6_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    int q[256];
    unpack_q6_K(b[i], q);
    for (int k = 0; k < kQK; ++k) dst[k] = d * b[i].scales[k / 16] * static_cast<float>(q[k] - 32);
  }
}

void dequantize_q8_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q8_K*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK)
    for (int k = 0; k < kQK; ++k) dst[k] = b[i].d * b[i].qs[k];
}

// ---- quantize ----

void quantize_q2_K(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q2_K*>(dst);
  const float q4scale = 15.f;
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float* qw = importance ? importance + i * kQK : nullptr;
    uint8_t L[kQK], Laux[16];
    float weights[16], mins[16], scales[16];
    const float sigma2 = qw ? sum_squares(x, kQK) / kQK : 0;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      const float* xs = x + 16 * j;
      if (qw) {
        importance_weights(xs, qw + 16 * j, sigma2, 16, weights);
      } else {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(xs[l]);
      }
      // Unweighted ggml scores 2-bit candidates by absolute error; least squares with importance.
      scales[j] = make_qkx2_quants(16, 3, xs, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, qw == nullptr);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = fp32_to_fp16(max_scale / q4scale);
    } else {
      std::memset(y[i].scales, 0, 16);
      y[i].d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < 16; ++j) y[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
      y[i].dmin = fp32_to_fp16(max_min / q4scale);
    } else {
      y[i].dmin = fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xF);
      if (!d) continue;
      const float dm = fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
    pack_2bit(L, y[i].qs);
  }
}

void quantize_q3_K(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q3_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float* qw = importance ? importance + i * kQK : nullptr;
    int8_t L[kQK];
    float scales[16], weights[16];
    const float sigma2 = qw ? 2 * sum_squares(x, kQK) / kQK : 0;
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      if (qw) importance_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weights);
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, qw ? weights : nullptr);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, 12);
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l = clamp_int(nearest_int(iscale * scales[j]), -32, 31) + 32;
        if (j < 8) {
          y[i].scales[j] = static_cast<uint8_t>(l & 0xF);
        } else {
          y[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
        }
        y[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      y[i].d = fp32_to_fp16(1 / iscale);
    } else {
      y[i].d = fp32_to_fp16(0.f);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * static_cast<float>(q3_K_scale(j, y[i].scales));
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    // Bit 2 of each quant goes to hmask (value k: bit k/32 of hmask[k%32]); qs keeps 2 bits.
    uint8_t low[kQK];
    std::memset(y[i].hmask, 0, 32);
    for (int k = 0; k < kQK; ++k) {
      int l = L[k];
      if (l > 3) {
        y[i].hmask[k % 32] |= static_cast<uint8_t>(1 << (k / 32));
        l -= 4;
      }
      low[k] = static_cast<uint8_t>(l);
    }
    pack_2bit(low, y[i].qs);
  }
}

void quantize_q4_K(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q4_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    quantize_k4_style(x, importance ? importance + i * kQK : nullptr, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void quantize_q5_K(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q5_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    quantize_k4_style(x, importance ? importance + i * kQK : nullptr, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
    std::memset(y[i].qh, 0, 32);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
        if (lo > 15) {
          lo -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(1 << (2 * c));
        }
        if (hi > 15) {
          hi -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(2 << (2 * c));
        }
        y[i].qs[32 * c + l] = static_cast<uint8_t>(lo | (hi << 4));
      }
  }
}

void quantize_q6_K(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q6_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float* qw = importance ? importance + i * kQK : nullptr;
    int8_t L[kQK];
    float scales[16], weights[16];
    const float sigma2 = qw ? sum_squares(x, kQK) / kQK : 0;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      if (qw) importance_weights(x + 16 * ib, qw + 16 * ib, sigma2, 16, weights);
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? weights : nullptr);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(block_q6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    for (int c = 0; c < 2; ++c) {
      uint8_t* ql = y[i].ql + 64 * c;
      uint8_t* qh = y[i].qh + 32 * c;
      const int8_t* Lc = L + 128 * c;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lc[l] & 0xF) | ((Lc[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lc[l + 32] & 0xF) | ((Lc[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lc[l] >> 4) | ((Lc[l + 32] >> 4) << 2) | ((Lc[l + 64] >> 4) << 4) | ((Lc[l + 96] >> 4) << 6));
      }
    }
  }
}

void quantize_q8_K(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_K*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float max = 0, amax = 0;
    for (int j = 0; j < kQK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (!amax) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, sizeof(y[i].qs));
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    // The largest-magnitude value maps to exactly -127 (so d is negative when it is positive).
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// ---- dot products with q8_K activations ----
// Each block: integer sums per sub-block times integer sub-block scales, then one float scale.

float dot_q2_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q2_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[256];
    unpack_2bit(x[i].qs, q);
    int isum = 0, imin = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * j + l] * y[i].qs[16 * j + l];
      isum += (x[i].scales[j] & 0xF) * s;
      imin += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum) - y[i].d * fp16_to_fp32(x[i].dmin) * static_cast<float>(imin);
  }
  return sum;
}

float dot_q3_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q3_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[256];
    unpack_2bit(x[i].qs, q);
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) {
        const int k = 16 * j + l;
        s += (q[k] - ((x[i].hmask[k % 32] >> (k / 32)) & 1 ? 0 : 4)) * y[i].qs[k];
      }
      isum += q3_K_scale(j, x[i].scales) * s;
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum);
  }
  return sum;
}

namespace {
// q4_K and q5_K share the dot: 8 scales and mins on 32-value sub-blocks.
float dot_k45(const uint8_t* qs, const uint8_t* qh, uint16_t d, uint16_t dmin, const uint8_t* scales, const block_q8_K& y) {
  int q[256];
  unpack_q45_K(qs, qh, q);
  int isum = 0, imin = 0;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    unpack_scale_min_k4(j, scales, &sc, &m);
    int s = 0;
    for (int l = 0; l < 32; ++l) s += q[32 * j + l] * y.qs[32 * j + l];
    isum += sc * s;
    imin += m * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
  }
  return y.d * fp16_to_fp32(d) * static_cast<float>(isum) - y.d * fp16_to_fp32(dmin) * static_cast<float>(imin);
}
}  // namespace

float dot_q4_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) sum += dot_k45(x[i].qs, nullptr, x[i].d, x[i].dmin, x[i].scales, y[i]);
  return sum;
}

float dot_q5_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) sum += dot_k45(x[i].qs, x[i].qh, x[i].d, x[i].dmin, x[i].scales, y[i]);
  return sum;
}

float dot_q6_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[256];
    unpack_q6_K(x[i], q);
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += (q[16 * j + l] - 32) * y[i].qs[16 * j + l];
      isum += x[i].scales[j] * s;
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q8_K_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int isum = 0;
    for (int k = 0; k < kQK; ++k) isum += x[i].qs[k] * y[i].qs[k];
    sum += x[i].d * y[i].d * static_cast<float>(isum);
  }
  return sum;
}

}  // namespace fathom::quant::detail
