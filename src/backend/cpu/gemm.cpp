#include "backend/cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>

#if defined(__F16C__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "backend/cpu/activations.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "core/status.h"
#include "quant/blocks.h"

namespace fathom::cpu {

namespace {

using namespace fathom::quant;


// fp16 -> f32 with the F16C instruction when the build targets it (exact, like fp16_to_fp32).
inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return fp16_to_fp32(h);
#endif
}

// 16 bytes of packed nibbles -> 32 values: low nibbles first, then high nibbles (q4_0 order).
inline void split_nibbles(const uint8_t* __restrict qs, uint8_t* __restrict u) {
#if defined(__SSE2__)
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(15);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u), _mm_and_si128(v, m));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(u + 16), _mm_and_si128(_mm_srli_epi16(v, 4), m));
#else
  for (int l = 0; l < 16; ++l) {
    u[l] = qs[l] & 15;
    u[l + 16] = qs[l] >> 4;
  }
#endif
}

// An iq4_nl codebook index as the unsigned weight byte of the int tile: the value + 128.
inline uint8_t iq4_biased(uint8_t index) { return static_cast<uint8_t>(static_cast<uint8_t>(kIq4nlValues[index]) ^ 0x80); }

// One row of a block format as (u, scale, corr) per block; u is written in value order.
void unpack_row(DType t, const uint8_t* __restrict row, int64_t n, uint8_t* __restrict u, float* __restrict scale,
                float* __restrict corr) {
  switch (t) {
    case DType::Q4_0: {
      const auto* b = reinterpret_cast<const block_q4_0*>(row);
      for (int64_t i = 0; i < n / 32; ++i, u += 32) {
        const float d = half_to_float(b[i].d);
        split_nibbles(b[i].qs, u);
        scale[i] = d;
        corr[i] = -8.0f * d;
      }
      return;
    }
    case DType::Q4_1: {
      const auto* b = reinterpret_cast<const block_q4_1*>(row);
      for (int64_t i = 0; i < n / 32; ++i, u += 32) {
        split_nibbles(b[i].qs, u);
        scale[i] = half_to_float(b[i].d);
        corr[i] = half_to_float(b[i].m);
      }
      return;
    }
    case DType::Q5_0:
    case DType::Q5_1: {
      const bool has_min = t == DType::Q5_1;
      const size_t bytes = has_min ? sizeof(block_q5_1) : sizeof(block_q5_0);
      for (int64_t i = 0; i < n / 32; ++i, u += 32) {
        const uint8_t* blk = row + static_cast<size_t>(i) * bytes;
        const uint16_t d16 = static_cast<uint16_t>(blk[0] | blk[1] << 8);
        const uint8_t* qh8 = blk + (has_min ? 4 : 2);
        const uint8_t* qs = qh8 + 4;
        uint32_t qh;
        std::memcpy(&qh, qh8, 4);
        split_nibbles(qs, u);
        for (int l = 0; l < 32; ++l) u[l] = static_cast<uint8_t>(u[l] | ((qh >> l) & 1) << 4);
        const float d = half_to_float(d16);
        scale[i] = d;
        corr[i] = has_min ? half_to_float(static_cast<uint16_t>(blk[2] | blk[3] << 8)) : -16.0f * d;
      }
      return;
    }
    case DType::Q8_0: {
      const auto* b = reinterpret_cast<const block_q8_0*>(row);
      for (int64_t i = 0; i < n / 32; ++i, u += 32) {
        for (int l = 0; l < 32; ++l) u[l] = static_cast<uint8_t>(static_cast<uint8_t>(b[i].qs[l]) ^ 0x80);
        const float d = half_to_float(b[i].d);
        scale[i] = d;
        corr[i] = -128.0f * d;
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const size_t bytes = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
      for (int64_t i = 0; i < n / kQK; ++i) {
        const uint8_t* blk = row + static_cast<size_t>(i) * bytes;
        uint16_t d16, dmin16;
        std::memcpy(&d16, blk, 2);
        std::memcpy(&dmin16, blk + 2, 2);
        const float d = half_to_float(d16), dmin = half_to_float(dmin16);
        const uint8_t* scales = blk + 4;
        const uint8_t* qh = five ? blk + 16 : nullptr;
        const uint8_t* qs = blk + (five ? 48 : 16);
        for (int j = 0; j < 8; ++j, u += 32) {
          uint8_t sc, m;
          unpack_scale_min_k4(j, scales, &sc, &m);
          const uint8_t* q = qs + 32 * (j / 2);
          const int shift = 4 * (j & 1);
          for (int l = 0; l < 32; ++l) {
            uint8_t v = (q[l] >> shift) & 15;
            if (qh) v = static_cast<uint8_t>(v | ((qh[l] >> j) & 1) << 4);
            u[l] = v;
          }
          scale[i * 8 + j] = d * sc;
          corr[i * 8 + j] = -dmin * m;
        }
      }
      return;
    }
    case DType::Q6_K: {
      const auto* b = reinterpret_cast<const block_q6_K*>(row);
      for (int64_t i = 0; i < n / kQK; ++i, u += kQK) {
        for (int c = 0; c < 2; ++c) {
          const uint8_t* ql = b[i].ql + 64 * c;
          const uint8_t* qh = b[i].qh + 32 * c;
          uint8_t* o = u + 128 * c;
          for (int l = 0; l < 32; ++l) {
            o[l] = static_cast<uint8_t>((ql[l] & 15) | (qh[l] & 3) << 4);
            o[l + 32] = static_cast<uint8_t>((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4);
            o[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            o[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
          }
        }
        const float d = half_to_float(b[i].d);
        for (int j = 0; j < 16; ++j) {
          scale[i * 16 + j] = d * b[i].scales[j];
          corr[i * 16 + j] = -32.0f * d * b[i].scales[j];
        }
      }
      return;
    }
    case DType::IQ4_NL: {
      const auto* b = reinterpret_cast<const block_iq4_nl*>(row);
      for (int64_t i = 0; i < n / 32; ++i, u += 32) {
        const float d = half_to_float(b[i].d);
        split_nibbles(b[i].qs, u);
        for (int l = 0; l < 32; ++l) u[l] = iq4_biased(u[l]);
        scale[i] = d;
        corr[i] = -128.0f * d;
      }
      return;
    }
    case DType::IQ4_XS: {
      const auto* b = reinterpret_cast<const block_iq4_xs*>(row);
      for (int64_t i = 0; i < n / kQK; ++i) {
        const float d = half_to_float(b[i].d);
        for (int j = 0; j < 8; ++j, u += 32) {
          split_nibbles(b[i].qs + 16 * j, u);
          for (int l = 0; l < 32; ++l) u[l] = iq4_biased(u[l]);
          scale[i * 8 + j] = d * static_cast<float>(iq4_xs_scale(b[i], j));
          corr[i * 8 + j] = -128.0f * scale[i * 8 + j];
        }
      }
      return;
    }
    case DType::TQ1_0:
    case DType::TQ2_0: {
      const size_t bytes = traits(t).type_size;
      const size_t d_offset = t == DType::TQ1_0 ? offsetof(block_tq1_0, d) : offsetof(block_tq2_0, d);
      for (int64_t i = 0; i < n / kQK; ++i, u += kQK) {
        const uint8_t* blk = row + static_cast<size_t>(i) * bytes;
        uint16_t d16;
        std::memcpy(&d16, blk + d_offset, 2);
        const float d = half_to_float(d16);
        ternary_fields(t, blk, u);
        for (int j = 0; j < 8; ++j) {
          scale[i * 8 + j] = d;
          corr[i * 8 + j] = -d;
        }
      }
      return;
    }
    default:
      FATHOM_CHECK_MSG(false, std::string("gemm: no int tile for ") + dtype_name(t));
  }
}

// Value at p of a float type.
inline float float_value(DType t, const uint8_t* p) {
  uint16_t h;
  switch (t) {
    case DType::F16: std::memcpy(&h, p, 2); return half_to_float(h);
    case DType::BF16: std::memcpy(&h, p, 2); return bf16_to_fp32(h);
    default: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
  }
}

struct TileLayout {
  size_t u_bytes, f_bytes;
  int64_t n_blocks;
};

TileLayout int_layout(DType t, int64_t n) {
  const int64_t block = gemm_block(t);
  const int64_t nb = n / block;
  return {static_cast<size_t>(kGemmRows * n), static_cast<size_t>(nb * kGemmRows) * sizeof(float), nb};
}

}  // namespace

int64_t gemm_block(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q4_K: case DType::Q5_K: case DType::IQ4_NL: case DType::IQ4_XS: case DType::TQ1_0: case DType::TQ2_0:
      return 32;
    case DType::Q6_K:
      return 16;
    default:
      return 0;
  }
}

bool gemm_takes_bf16(DType t, int64_t n, int64_t n_tokens) {
  return n_tokens >= kAmxBf16MinTokens && n % 32 == 0 && (gemm_block(t) != 0 || t == DType::F16 || t == DType::BF16);
}

size_t gemm_tile_bytes(DType t, int64_t n) {
  const TileLayout l = int_layout(t, n);
  return l.u_bytes + 2 * l.f_bytes + 64;
}

void gemm_unpack_tile(const TensorView& w, int64_t r0, int64_t n_rows, uint8_t* buffer, GemmIntTile* tile) {
  const int64_t n = w.ne[0];
  const int64_t block = gemm_block(w.dtype);
  const TileLayout l = int_layout(w.dtype, n);
  // 64-byte aligned sections: u, then scale, then corr.
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buffer) + 63) & ~uintptr_t{63});
  uint8_t* u = base;
  auto* scale = reinterpret_cast<float*>(base + l.u_bytes);
  auto* corr = scale + l.n_blocks * kGemmRows;
  const int64_t groups = block / 4;
  // Row by row: unpack in value order into a small buffer, then scatter 4-byte groups to the
  // row's lane of each (block, group) vector.
  alignas(64) uint8_t row_u[8192];
  alignas(64) float row_s[8192 / 16], row_c[8192 / 16];
  const size_t row_bytes = w.row_bytes();
  const auto* data = static_cast<const uint8_t*>(w.data);
  for (int64_t r = 0; r < kGemmRows; ++r) {
    for (int64_t c0 = 0; c0 < n; c0 += 8192) {
      // Chunks of 8192 values (a multiple of every super-block) keep the row buffer small.
      const int64_t len = std::min<int64_t>(8192, n - c0);
      const int64_t b0 = c0 / block, nbc = len / block;
      if (r < n_rows) {
        const uint8_t* src = data + static_cast<size_t>(r0 + r) * row_bytes + static_cast<size_t>(c0 / traits(w.dtype).block_size) * traits(w.dtype).type_size;
        unpack_row(w.dtype, src, len, row_u, row_s, row_c);
      } else {
        std::memset(row_u, 0, static_cast<size_t>(len));
        std::fill(row_s, row_s + nbc, 0.0f);
        std::fill(row_c, row_c + nbc, 0.0f);
      }
      for (int64_t b = 0; b < nbc; ++b) {
        uint8_t* dst = u + static_cast<size_t>((b0 + b) * groups * kGemmRows * 4) + static_cast<size_t>(r * 4);
        const uint8_t* s = row_u + b * block;
        for (int64_t g = 0; g < groups; ++g) std::memcpy(dst + g * kGemmRows * 4, s + g * 4, 4);
        scale[(b0 + b) * kGemmRows + r] = row_s[b];
        corr[(b0 + b) * kGemmRows + r] = row_c[b];
      }
    }
  }
  tile->u = u;
  tile->scale = scale;
  tile->corr = corr;
  tile->n_blocks = l.n_blocks;
  tile->block = block;
}

void gemm_quantize_activations(const float* x, int64_t n_tokens, int64_t n, int64_t block, int8_t* q, float* xd,
                               float* xs) {
  const int64_t nb = n / block;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * n + b * block;
      int8_t* o = q + t * n + b * block;
      float amax = 0.0f;
      for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      int32_t sum = 0;
      for (int64_t i = 0; i < block; ++i) {
        const int32_t qi = static_cast<int32_t>(std::nearbyint(v[i] * id));
        o[i] = static_cast<int8_t>(qi);
        sum += qi;
      }
      xd[t * nb + b] = d;
      xs[t * nb + b] = d * static_cast<float>(sum);
    }
  }
}

// Nibble vectors of one 32-value x16 block (4 x 64 B) and its optional 5th-bit vector -> the 8
// tile vectors of u (64 B each, `stride` apart): vector g holds values 4g.. (low nibbles of
// nibble vector g), vector g + 4 values 16 + 4g.. (high nibbles).
void split_x16_nibbles(const uint8_t* nib, const uint8_t* hi, uint8_t* u, int64_t stride) {
  for (int64_t g = 0; g < 4; ++g)
    for (int64_t i = 0; i < 64; ++i) {
      u[g * stride + i] = nib[64 * g + i] & 15;
      u[(g + 4) * stride + i] = nib[64 * g + i] >> 4;
    }
  if (hi == nullptr) return;
  for (int64_t g = 0; g < 8; ++g)
    for (int64_t i = 0; i < 64; ++i) u[g * stride + i] = static_cast<uint8_t>(u[g * stride + i] | ((hi[i] >> g) & 1) << 4);
}

void x16_group_to_tile(DType type, const uint8_t* group, int64_t n, uint8_t* buffer, GemmIntTile* tile) {
  constexpr int64_t R = kGemmRows;
  const int64_t block = gemm_block(type);
  const TileLayout l = int_layout(type, n);
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buffer) + 63) & ~uintptr_t{63});
  uint8_t* u = base;
  auto* scale = reinterpret_cast<float*>(base + l.u_bytes);
  auto* corr = scale + l.n_blocks * R;
  auto half = [](const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return half_to_float(h);
  };
  // Tile vector (b, g) of u: 64 bytes, row r at 4r.
  auto uvec = [&](int64_t b, int64_t g) { return u + (b * (block / 4) + g) * R * 4; };
  switch (type) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0: {
      const bool q8 = type == DType::Q8_0, five = type == DType::Q5_0;
      const size_t bb = q8 ? 2 * R + 8 * 64 : 2 * R + 4 * 64 + (five ? 64 : 0);
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* src = group + static_cast<size_t>(b) * bb;
        for (int64_t r = 0; r < R; ++r) {
          const float d = half(src + 2 * r);
          scale[b * R + r] = d;
          corr[b * R + r] = (q8 ? -128.0f : five ? -16.0f : -8.0f) * d;
        }
        if (q8) {
          for (int64_t g = 0; g < 8; ++g) std::memcpy(uvec(b, g), src + 2 * R + 64 * g, 64);
        } else {
          split_x16_nibbles(src + 2 * R, five ? src + 2 * R + 4 * 64 : nullptr, uvec(b, 0), R * 4);
        }
      }
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const size_t bb = 4 * R + 16 * R + 8 * 4 * 64 + (five ? 8 * 64 : 0);
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = group + static_cast<size_t>(i) * bb;
        const uint8_t* sc = src + 4 * R;
        const uint8_t* mn = sc + 8 * R;
        const uint8_t* qs = mn + 8 * R;
        const uint8_t* hi = qs + 8 * 4 * 64;
        for (int64_t j = 0; j < 8; ++j) {
          const int64_t b = i * 8 + j;
          for (int64_t r = 0; r < R; ++r) {
            scale[b * R + r] = half(src + 2 * r) * sc[j * R + r];
            corr[b * R + r] = -half(src + 2 * R + 2 * r) * mn[j * R + r];
          }
          split_x16_nibbles(qs + 256 * j, five ? hi + 64 * j : nullptr, uvec(b, 0), R * 4);
        }
      }
      break;
    }
    case DType::IQ4_NL: {
      const size_t bb = 2 * R + 4 * 64;
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* src = group + static_cast<size_t>(b) * bb;
        for (int64_t r = 0; r < R; ++r) {
          scale[b * R + r] = half(src + 2 * r);
          corr[b * R + r] = -128.0f * scale[b * R + r];
        }
        split_x16_nibbles(src + 2 * R, nullptr, uvec(b, 0), R * 4);
        for (int64_t i = 0; i < 8 * R * 4; ++i) uvec(b, 0)[i] = iq4_biased(uvec(b, 0)[i]);
      }
      break;
    }
    case DType::IQ4_XS: {
      const size_t bb = 2 * R + 8 * R + 8 * 4 * 64;
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = group + static_cast<size_t>(i) * bb;
        const auto* sc = reinterpret_cast<const int8_t*>(src + 2 * R);
        for (int64_t j = 0; j < 8; ++j) {
          const int64_t b = i * 8 + j;
          for (int64_t r = 0; r < R; ++r) {
            scale[b * R + r] = half(src + 2 * r) * static_cast<float>(sc[j * R + r]);
            corr[b * R + r] = -128.0f * scale[b * R + r];
          }
          split_x16_nibbles(src + 2 * R + 8 * R + 256 * j, nullptr, uvec(b, 0), R * 4);
          for (int64_t k = 0; k < 8 * R * 4; ++k) uvec(b, 0)[k] = iq4_biased(uvec(b, 0)[k]);
        }
      }
      break;
    }
    case DType::TQ1_0:
    case DType::TQ2_0: {
      const size_t bb = 2 * R + 8 * 2 * 64;
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = group + static_cast<size_t>(i) * bb;
        for (int64_t j = 0; j < 8; ++j) {
          const int64_t b = i * 8 + j;
          for (int64_t r = 0; r < R; ++r) {
            scale[b * R + r] = half(src + 2 * r);
            corr[b * R + r] = -scale[b * R + r];
          }
          // Vector h holds groups 4h..4h+3 of the sub-block, 2 bits each.
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t l = 0; l < 4; ++l)
              for (int64_t k = 0; k < R * 4; ++k) uvec(b, 4 * h + l)[k] = (src[2 * R + 128 * j + 64 * h + k] >> (2 * l)) & 3;
        }
      }
      break;
    }
    case DType::Q6_K: {
      const size_t bb = 2 * R + 16 * R + 8 * kQ6PairBytes;
      for (int64_t i = 0; i < n / quant::kQK; ++i) {
        const uint8_t* src = group + static_cast<size_t>(i) * bb;
        const auto* sc = reinterpret_cast<const int8_t*>(src + 2 * R);
        const uint8_t* qv = src + 2 * R + 16 * R;
        for (int64_t j = 0; j < 16; ++j) {
          const int64_t b = i * 16 + j;
          for (int64_t r = 0; r < R; ++r) {
            const float d = half(src + 2 * r);
            scale[b * R + r] = d * sc[j * R + r];
            corr[b * R + r] = -32.0f * d * sc[j * R + r];
          }
        }
        for (int64_t p = 0; p < 8; ++p) {
          // Sub-blocks 2p and 2p + 1 are consecutive in u: 8 vectors, the nibbles' low then high.
          const uint8_t* pair = qv + kQ6PairBytes * p;
          uint8_t* u2 = uvec(i * 16 + 2 * p, 0);
          split_x16_nibbles(pair, nullptr, u2, R * 4);
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t l = 0; l < 4; ++l)
              for (int64_t k = 0; k < R * 4; ++k)
                u2[(4 * h + l) * R * 4 + k] = static_cast<uint8_t>(u2[(4 * h + l) * R * 4 + k] | ((pair[256 + 64 * h + k] >> (2 * l)) & 3) << 4);
        }
      }
      break;
    }
    default:
      FATHOM_CHECK_MSG(false, std::string("gemm: no x16 layout for ") + dtype_name(type));
  }
  tile->u = u;
  tile->scale = scale;
  tile->corr = corr;
  tile->n_blocks = l.n_blocks;
  tile->block = block;
}

void gemm_float_reference(const TensorView& w, const float* x, int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t n = w.ne[0];
  const size_t vb = w.dtype == DType::F32 ? 4 : 2;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < w.n_rows(); ++r) {
      const uint8_t* row = w.row(r);
      float a[2] = {0.0f, 0.0f};
      for (int64_t i = 0; i < n; ++i) a[i & 1] = std::fma(float_value(w.dtype, row + static_cast<size_t>(i) * vb), x[t * n + i], a[i & 1]);
      y[t * y_stride + r] = a[0] + a[1];
    }
}

namespace detail {

void gemm_int_generic(const GemmIntTile& tile, const GemmActivations& x, int64_t n_rows, float* y, int64_t y_stride) {
  const int64_t groups = tile.block / 4;
  const int64_t nb = tile.n_blocks;
  for (int64_t t = 0; t < x.n_tokens; ++t) {
    float acc[kGemmRows] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* q = x.q + t * x.n + b * tile.block;
      const uint8_t* u = tile.u + b * groups * kGemmRows * 4;
      const float d = x.xd[t * nb + b], s = x.xs[t * nb + b];
      for (int64_t r = 0; r < kGemmRows; ++r) {
        int32_t sum = 0;
        for (int64_t g = 0; g < groups; ++g)
          for (int k = 0; k < 4; ++k) sum += u[(g * kGemmRows + r) * 4 + k] * q[g * 4 + k];
        const float f = static_cast<float>(sum) * d;
        acc[r] = std::fma(f, tile.scale[b * kGemmRows + r], acc[r]);
        acc[r] = std::fma(tile.corr[b * kGemmRows + r], s, acc[r]);
      }
    }
    for (int64_t r = 0; r < n_rows; ++r) y[t * y_stride + r] = acc[r];
  }
}

void gemm_x16_generic(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                      int64_t y_stride) {
  if (gemm_block(type) == 0) {
    // Float group: rows side by side; same canonical order as gemm_float_reference.
    const size_t vb = type == DType::F32 ? 4 : 2;
    for (int64_t t = 0; t < x.n_tokens; ++t)
      for (int64_t r = 0; r < n_rows; ++r) {
        float a[2] = {0.0f, 0.0f};
        for (int64_t i = 0; i < x.n; ++i) {
          const uint8_t* p = group + (static_cast<size_t>(i) * kGemmRows + static_cast<size_t>(r)) * vb;
          a[i & 1] = std::fma(float_value(type, p), x.f[t * x.n + i], a[i & 1]);
        }
        y[t * y_stride + r] = a[0] + a[1];
      }
    return;
  }
  std::vector<uint8_t> buf(gemm_tile_bytes(type, x.n) + 64);
  GemmIntTile tile;
  x16_group_to_tile(type, group, x.n, buf.data(), &tile);
  gemm_int_generic(tile, x, n_rows, y, y_stride);
}

}  // namespace detail

namespace {

// Tokens per slice of the activations' conversion (quantization or bf16 tiles): ~16K values.
int64_t tokens_per_slice(int64_t n) { return std::max<int64_t>(1, 16384 / n); }

// Runs run_groups(i0, i1) over all of [0, total) 16-row groups on the pool (see below); max_tokens:
// the most tokens of a product among them.
template <class RunGroups>
void run_group_shares(ThreadPool& pool, int64_t total, int64_t max_tokens, RunGroups&& run_groups) {
  if (pool.n_threads() == 1) return run_groups(0, total);
  // Each thread owns one contiguous share of the groups and takes it front to back in chunks, so
  // it streams one run of weights per call; a thread done with its share then takes pairs of
  // groups from the front of the others'. Handing out chunks from one shared counter instead
  // interleaves the threads every few groups, and each chunk a thread starts reads its first
  // kDecodePrefetchBytes without a prefetch ahead: Sapphire Rapids-class Xeon, 2 threads, 1.5B
  // Q4_0 tg64 29.7-29.8 -> 30.85-30.9 tok/s (885 KiB matrices in a microbenchmark: 23.3-23.7 ->
  // 25.6-26.3 GB/s), other files within noise, pp512 unchanged. Chunks hold an even number of
  // groups where they can (the AMX kernels pair groups).
  const int n_threads = pool.n_threads();
  const bool shrink = max_tokens < kAmxMinTokens;  // see owner_chunk
  // Chunks of up to 16 groups, an eighth of a share in decode steps; prefill takes whole group
  // batches of the AMX kernels (16) as soon as a share holds 2 of them: they reuse each token
  // tile across the batch (the 1.5B shape's q/k/v, 128 groups, had chunks of 8). Sapphire
  // Rapids-class Xeon, 2 threads, 6 interleaved runs: pp512 Q8_0 median 653 -> 677 tok/s.
  int64_t chunk = std::clamp<int64_t>(total / ((shrink ? 8 : 2) * n_threads), 1, 16);
  if (chunk > 1) chunk &= ~int64_t{1};
  struct alignas(64) Share {  // one cache line per counter: the owner's fetch_add stays local
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  std::vector<Share> shares(static_cast<size_t>(n_threads));
  const int64_t per = (total + n_threads - 1) / n_threads;
  auto even = [&](int64_t i) { return std::min(total, (i + 1) & ~int64_t{1}); };  // share bounds: even
  for (int t = 0; t < n_threads; ++t) {
    shares[static_cast<size_t>(t)].next.store(even(t * per), std::memory_order_relaxed);
    shares[static_cast<size_t>(t)].end = t + 1 == n_threads ? total : even((t + 1) * per);
  }
  // Decode steps (fewer tokens than the tile kernels take): the owner's chunks shrink to a
  // quarter of what is left of its share (even, at least 2), so the thread that finishes first
  // waits on a small chunk of the other's, not a whole one: the time between the two threads'
  // ends, summed over 1.5B Q4_0 tg64 (2 threads, 113 calls per token), 0.63-0.80 -> 0.33-0.43 ms
  // per token. Prefill keeps whole chunks: shrinking them there cost 4-14% of pp512.
  auto owner_chunk = [&](const Share& s) {
    if (!shrink) return chunk;
    const int64_t left = s.end - s.next.load(std::memory_order_relaxed);
    return std::max<int64_t>(2, std::min(chunk, left / 4) & ~int64_t{1});
  };
  pool.run_on_all([&](int thread) {
    for (int k = 0; k < n_threads; ++k) {
      Share& s = shares[static_cast<size_t>((thread + k) % n_threads)];
      for (;;) {
        const int64_t c = k == 0 ? owner_chunk(s) : 2;
        const int64_t i0 = s.next.fetch_add(c);
        if (i0 >= s.end) break;
        run_groups(i0, std::min(s.end, i0 + c));
      }
    }
  });
}

}  // namespace

void gemm(ThreadPool& pool, const Kernels& kernels, const RepackedMatrix& w, const float* x, int64_t n_tokens,
          float* y, GemmScratch& scratch) {
  const GemmJob job{&w, x, n_tokens, y};
  gemm_many(pool, kernels, &job, 1, &scratch);
}

void gemm_many(ThreadPool& pool, const Kernels& kernels, const GemmJob* jobs, size_t n_jobs, GemmScratch* scratch) {
  // 1. Activations: every int job's tokens quantized, in slices of ~16K values over the pool.
  struct Slice {
    size_t job;
    int64_t t0, t1;
  };
  std::vector<Slice> slices;
  std::vector<GemmActivations> acts(n_jobs);
  int64_t quant_values = 0;
  for (size_t j = 0; j < n_jobs; ++j) {
    const GemmJob& job = jobs[j];
    const int64_t n = job.w->n, block = gemm_block(job.w->type);
    GemmActivations& a = acts[j];
    a.n_tokens = job.n_tokens;
    a.n = n;
    a.f = job.x;
    GemmScratch& sc = scratch[j];
    const int64_t per = tokens_per_slice(n);
    if (kernels.gemm_bf16_tokens != nullptr && gemm_takes_bf16(job.w->type, n, job.n_tokens)) {
      // The BF16 tile path: the tokens rounded to bf16 in tiles, no integer form; jobs on the
      // same tokens (q/k/v, gate/up) share one copy.
      a.block = block;
      bool shared = false;
      for (size_t i = 0; i < j && !shared; ++i)
        if (acts[i].bt != nullptr && jobs[i].x == job.x && jobs[i].up == job.up && acts[i].n == n &&
            acts[i].n_tokens == job.n_tokens) {
          a.bt = acts[i].bt;
          shared = true;
        }
      if (shared) continue;
      a.bt = sc.bt.get(static_cast<size_t>((job.n_tokens + kGemmTokenTile - 1) / kGemmTokenTile * kGemmTokenTile * n));
      for (int64_t t = 0; t < job.n_tokens; t += per) slices.push_back({j, t, std::min(job.n_tokens, t + per)});
      quant_values += job.n_tokens * n;
      continue;
    }
    FATHOM_CHECK_MSG(job.up == nullptr || block != 0, "gemm_many: a fused SwiGLU input needs quantized weights");
    if (block == 0) continue;
    const int64_t nb = n / block;
    // Jobs on the same tokens with the same block size (q/k/v, gate/up) share one quantized copy.
    bool shared = false;
    for (size_t i = 0; i < j && !shared; ++i)
      if (acts[i].q != nullptr && jobs[i].x == job.x && jobs[i].up == job.up && acts[i].n == n && acts[i].block == block &&
          acts[i].n_tokens == job.n_tokens) {
        a = acts[i];
        shared = true;
      }
    if (shared) continue;
    sc.q.resize(static_cast<size_t>(job.n_tokens * n));
    sc.xd.resize(static_cast<size_t>(job.n_tokens * nb));
    sc.xs.resize(static_cast<size_t>(job.n_tokens * nb));
    a.q = sc.q.data();
    a.xd = sc.xd.data();
    a.xs = sc.xs.data();
    a.block = block;
    if (kernels.gemm_token_tiles && job.n_tokens >= kAmxMinTokens) {
      const int64_t tiled = (job.n_tokens + kGemmTokenTile - 1) / kGemmTokenTile * kGemmTokenTile;
      a.qt = sc.qt.get(static_cast<size_t>(tiled * n));
      sc.xdt.resize(static_cast<size_t>(tiled * nb));
      sc.xst.resize(static_cast<size_t>(tiled * nb));
      a.xdt = sc.xdt.data();
      a.xst = sc.xst.data();
    }
    for (int64_t t = 0; t < job.n_tokens; t += per) slices.push_back({j, t, std::min(job.n_tokens, t + per)});
    quant_values += job.n_tokens * n;
  }
  const GemmQuantizeFn quantize = kernels.quantize_gemm;
  const SwigluFn swiglu = swiglu_kernel(vector_isa(kernels.isa));
  auto run_slice = [&](const Slice& sl) {
    const GemmJob& job = jobs[sl.job];
    GemmScratch& sc = scratch[sl.job];
    const int64_t n = job.w->n;
    const float* x = job.x + sl.t0 * n;  // the slice's rows
    if (job.up != nullptr) {
      // The fused SwiGLU (GemmJob::up): the slice's input made in a per-thread buffer that
      // stays in cache for the conversion below.
      static thread_local std::vector<float> fused;
      fused.resize(static_cast<size_t>((sl.t1 - sl.t0) * n));
      swiglu(x, job.up + sl.t0 * n, (sl.t1 - sl.t0) * n, fused.data());
      x = fused.data();
    }
    if (acts[sl.job].bt != nullptr) return kernels.gemm_bf16_tokens(x, job.n_tokens, n, sl.t0, sl.t1, sc.bt.data());
    const int64_t block = gemm_block(job.w->type), nb = n / block;
    quantize(x, sl.t1 - sl.t0, n, block, sc.q.data() + sl.t0 * n, sc.xd.data() + sl.t0 * nb, sc.xs.data() + sl.t0 * nb);
    if (acts[sl.job].qt == nullptr) return;
    // The tiled copy of these tokens; the slice with the last token also zeroes the padding.
    const int64_t t_end = sl.t1 == job.n_tokens ? (job.n_tokens + kGemmTokenTile - 1) / kGemmTokenTile * kGemmTokenTile
                                                : sl.t1;
    for (int64_t t = sl.t0; t < t_end; ++t) {
      const int64_t k = t / kGemmTokenTile, i = t % kGemmTokenTile;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t at = (k * nb + b) * kGemmTokenTile + i;
        int8_t* dst = sc.qt.data() + at * block;
        if (t < job.n_tokens) {
          std::memcpy(dst, sc.q.data() + t * n + b * block, static_cast<size_t>(block));
          sc.xdt[static_cast<size_t>(at)] = sc.xd[static_cast<size_t>(t * nb + b)];
          sc.xst[static_cast<size_t>(at)] = sc.xs[static_cast<size_t>(t * nb + b)];
        } else {
          std::memset(dst, 0, static_cast<size_t>(block));
          sc.xdt[static_cast<size_t>(at)] = sc.xst[static_cast<size_t>(at)] = 0.0f;
        }
      }
    }
  };
  if (quant_values <= 32768) {
    for (const Slice& sl : slices) run_slice(sl);  // decode: cheaper than a wake-up
  } else {
    pool.parallel_for(static_cast<int64_t>(slices.size()), 1, [&](int, int64_t s0, int64_t s1) {
      for (int64_t i = s0; i < s1; ++i) run_slice(slices[static_cast<size_t>(i)]);
    });
  }
  // 2. All 16-row groups of all jobs, handed out dynamically (jobs differ in tokens and size).
  std::vector<int64_t> first(n_jobs + 1, 0);
  int64_t macs = 0;
  for (size_t j = 0; j < n_jobs; ++j) {
    first[j + 1] = first[j] + jobs[j].w->n_groups;
    macs += jobs[j].w->n_rows * jobs[j].w->n * jobs[j].n_tokens;
  }
  const int64_t total = first[n_jobs];
  const GemmX16Fn kernel = kernels.gemm_x16;
  const GemmX16RangeFn range = kernels.gemm_x16_range;
  // Groups [i0, i1) of all jobs: one range call per job they touch, else one call per group.
  auto run_groups = [&](int64_t i0, int64_t i1) {
    while (i0 < i1) {
      const size_t j = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), i0) - first.begin() - 1);
      const GemmJob& job = jobs[j];
      const int64_t g0 = i0 - first[j], g1 = std::min(i1, first[j + 1]) - first[j];
      if (range != nullptr) {
        const int64_t rows = std::min(job.w->n_rows, g1 * kGemmRows) - g0 * kGemmRows;
        range(job.w->type, job.w->group(g0), job.w->group_bytes, g1 - g0, acts[j], rows, job.y + g0 * kGemmRows,
              job.w->n_rows);
      } else {
        for (int64_t g = g0; g < g1; ++g) {
          const int64_t rows = std::min(kGemmRows, job.w->n_rows - g * kGemmRows);
          kernel(job.w->type, job.w->group(g), acts[j], rows, job.y + g * kGemmRows, job.w->n_rows);
        }
      }
      i0 = first[j] + g1;
    }
  };
  if (macs < 65536) return run_groups(0, total);
  int64_t max_tokens = 0;
  for (size_t j = 0; j < n_jobs; ++j) max_tokens = std::max(max_tokens, jobs[j].n_tokens);
  run_group_shares(pool, total, max_tokens, run_groups);
}

namespace {

// x ([n_tokens, n]) as bf16 token tiles at bt (GemmActivations::bt), in slices of tokens over
// the pool, as gemm_many makes them.
void bf16_token_tiles(ThreadPool& pool, const Kernels& kernels, const float* x, int64_t n_tokens, int64_t n,
                      uint16_t* bt) {
  const int64_t per = tokens_per_slice(n), n_slices = (n_tokens + per - 1) / per;
  pool.parallel_for(n_slices, 1, [&](int, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t t0 = s * per, t1 = std::min(n_tokens, t0 + per);
      kernels.gemm_bf16_tokens(x + t0 * n, n_tokens, n, t0, t1, bt);
    }
  });
}

}  // namespace

bool gemm_swiglu_fuses(const Kernels& kernels, const RepackedMatrix& gate, const RepackedMatrix& up,
                       const RepackedMatrix& down, int64_t n_tokens) {
  return kernels.gemm_swiglu_range != nullptr && kernels.gemm_bf16_tokens != nullptr &&
         kernels.gemm_x16_range != nullptr && gate.n == up.n && gate.n_rows == up.n_rows && down.n == gate.n_rows &&
         gate.n_rows % 32 == 0 && gemm_takes_bf16(gate.type, gate.n, n_tokens) &&
         gemm_takes_bf16(up.type, up.n, n_tokens) && gemm_takes_bf16(down.type, down.n, n_tokens);
}

void gemm_swiglu(ThreadPool& pool, const Kernels& kernels, const RepackedMatrix& gate, const RepackedMatrix& up,
                 const RepackedMatrix& down, const float* x, int64_t n_tokens, float* y, GemmScratch* scratch) {
  FATHOM_CHECK_MSG(gemm_swiglu_fuses(kernels, gate, up, down, n_tokens), "gemm_swiglu: the products do not fuse");
  const int64_t n = gate.n, n_ff = gate.n_rows;
  const int64_t tiled = (n_tokens + kGemmTokenTile - 1) / kGemmTokenTile * kGemmTokenTile;
  // 1. The tokens as bf16 tiles.
  GemmActivations a;
  a.n_tokens = n_tokens;
  a.n = n;
  a.f = x;
  a.block = gemm_block(gate.type);
  uint16_t* bt = scratch[0].bt.get(static_cast<size_t>(tiled * n));
  a.bt = bt;
  bf16_token_tiles(pool, kernels, x, n_tokens, n, bt);
  // 2. The gate/up row groups: h = swiglu(gate, up) as the down product's token tiles.
  uint16_t* h = scratch[1].bt.get(static_cast<size_t>(tiled * n_ff));
  auto gate_up = [&](int64_t g0, int64_t g1) {
    kernels.gemm_swiglu_range(gate.type, gate.group(g0), gate.group_bytes, up.type, up.group(g0), up.group_bytes, g0,
                              g1 - g0, a, h, n_ff);
  };
  run_group_shares(pool, gate.n_groups, n_tokens, gate_up);
  // 3. The down product on those tiles.
  GemmActivations d;
  d.n_tokens = n_tokens;
  d.n = n_ff;
  d.block = gemm_block(down.type);
  d.bt = h;
  auto down_groups = [&](int64_t g0, int64_t g1) {
    const int64_t rows = std::min(down.n_rows, g1 * kGemmRows) - g0 * kGemmRows;
    kernels.gemm_x16_range(down.type, down.group(g0), down.group_bytes, g1 - g0, d, rows, y + g0 * kGemmRows,
                           down.n_rows);
  };
  run_group_shares(pool, down.n_groups, n_tokens, down_groups);
}

}  // namespace fathom::cpu
