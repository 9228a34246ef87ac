// AVX2 kernels of gemm.h on repacked x16 weights (repack.h), for CPUs without AVX-512 VNNI.
// The 16 rows of a group are two 8-lane halves, done one after the other. Without VNNI, 4-byte
// groups are multiplied with vpmaddubsw (u8 x s8, pairs summed into i16) and vpmaddwd against
// ones (pairs of i16 into i32). Pair sums stay below the i16 limit for u <= 63 (every type but
// q8_0 and the iq4 types); their u (q + 128, codebook value + 128) is split into 16 * high
// nibble + low nibble and the two products are combined in i32. Integer sums are exact and the
// float operations per row and token are those of gemm_int_generic in the same order, so results
// are bit-identical to it.
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"
#include "quant/blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

namespace fathom::cpu::detail {

namespace {

constexpr int kTokenGroup = 4;
constexpr int64_t R = kGemmRows;

FATHOM_AVX2 inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

FATHOM_AVX2 inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 8 fp16 values (half h of a 16-row vector) as f32.
FATHOM_AVX2 inline __m256 halves8(const uint8_t* p, int h) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
}

FATHOM_AVX2 inline __m256 bytes8_to_float(const uint8_t* p, bool is_signed) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

// The u vectors of one 32-value block (8 groups), half h (8 rows x 4 bytes each).
struct Block {
  __m256i w[8];
  int ng = 8;
  bool wide = false;  // u may exceed 127 (q8_0)
};

FATHOM_AVX2 inline void nibbles(const uint8_t* nib, const uint8_t* hi, int h, Block* b) {
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int g = 0; g < 4; ++g) {
    const __m256i v = load256(nib + 64 * g + 32 * h);
    b->w[g] = _mm256_and_si256(v, low4);
    b->w[g + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  }
  if (hi == nullptr) return;
  const __m256i bits = load256(hi + 32 * h);
  const __m256i sixteen = _mm256_set1_epi8(16);
  for (int g = 0; g < 8; ++g) {
    const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << g));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, bit), bit);
    b->w[g] = _mm256_or_si256(b->w[g], _mm256_and_si256(set, sixteen));
  }
}

// The 8 u vectors (0..63) of one q6_Kx16 pair of sub-blocks (repack.h), half h: w[0..3] sub-block
// 2p, w[4..7] sub-block 2p + 1.
FATHOM_AVX2 inline void q6_pair(const uint8_t* pair, int h, Block* b) {
  nibbles(pair, nullptr, h, b);
  const __m256i three = _mm256_set1_epi8(3);
  for (int v = 0; v < 2; ++v) {
    const __m256i bits = load256(pair + 4 * 64 + 64 * v + 32 * h);
    for (int l = 0; l < 4; ++l)
      b->w[4 * v + l] = _mm256_or_si256(b->w[4 * v + l], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * l), three), 4));
  }
}

// Codebook indices -> the unsigned weight bytes of iq4_nl/iq4_xs (value + 128, up to 241: wide).
FATHOM_AVX2 inline void iq4_lookup(Block* b) {
  const __m128i values = _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIq4nlValues));
  const __m256i table = _mm256_broadcastsi128_si256(_mm_xor_si128(values, _mm_set1_epi8(static_cast<char>(0x80))));
  for (int g = 0; g < 8; ++g) b->w[g] = _mm256_shuffle_epi8(table, b->w[g]);
}

// Exact i32 dot of the block's 8 rows (half) with one token's block q.
FATHOM_AVX2 inline __m256i block_dot(const Block& b, const int8_t* q) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i ai = _mm256_setzero_si256();
  if (!b.wide) {
    for (int g = 0; g < b.ng; ++g)
      ai = _mm256_add_epi32(ai, _mm256_madd_epi16(_mm256_maddubs_epi16(b.w[g], bcast4(q + 4 * g)), ones));
    return ai;
  }
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int g = 0; g < b.ng; ++g) {
    const __m256i x = bcast4(q + 4 * g);
    const __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(b.w[g], low4), x), ones);
    const __m256i hi =
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(b.w[g], 4), low4), x), ones);
    ai = _mm256_add_epi32(ai, _mm256_add_epi32(lo, _mm256_slli_epi32(hi, 4)));
  }
  return ai;
}

template <int NT>
FATHOM_AVX2 inline void block_step(const Block& blk, __m256 s, __m256 c, const GemmActivations& x, int64_t t0, int64_t b,
                                   __m256* acc) {
  const int64_t nb = x.n / x.block;
  for (int t = 0; t < NT; ++t) {
    const __m256i ai = block_dot(blk, x.q + (t0 + t) * x.n + b * x.block);
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(ai), _mm256_set1_ps(x.xd[(t0 + t) * nb + b]));
    acc[t] = _mm256_fmadd_ps(f, s, acc[t]);
    acc[t] = _mm256_fmadd_ps(c, _mm256_set1_ps(x.xs[(t0 + t) * nb + b]), acc[t]);
  }
}

FATHOM_AVX2 inline __m256i row_mask(int64_t n_rows) {
  alignas(32) static const int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n_rows)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp)));
}

template <int NT>
FATHOM_AVX2 void int_tokens(DType type, const uint8_t* grp, const GemmActivations& x, int64_t t0, int64_t n_rows,
                            float* y, int64_t y_stride) {
  for (int h = 0; h < 2; ++h) {
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    const int64_t pf = t0 == 0 && h == 0 ? kDecodePrefetchBytes : 0;  // later passes reread the group from cache
    Block blk;
    switch (type) {
      case DType::Q4_0:
      case DType::Q5_0: {
        const bool five = type == DType::Q5_0;
        const int64_t bb = 2 * R + 4 * 64 + (five ? 64 : 0);
        const __m256 k = _mm256_set1_ps(five ? -16.0f : -8.0f);
        for (int64_t b = 0; b < x.n / 32; ++b) {
          const uint8_t* src = grp + b * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 s = halves8(src, h);
          nibbles(src + 2 * R, five ? src + 2 * R + 4 * 64 : nullptr, h, &blk);
          block_step<NT>(blk, s, _mm256_mul_ps(k, s), x, t0, b, acc);
        }
        break;
      }
      case DType::Q8_0: {
        blk.wide = true;
        for (int64_t b = 0; b < x.n / 32; ++b) {
          const uint8_t* src = grp + b * (2 * R + 8 * 64);
          const __m256 s = halves8(src, h);
          for (int g = 0; g < 8; ++g) blk.w[g] = load256(src + 2 * R + 64 * g + 32 * h);
          block_step<NT>(blk, s, _mm256_mul_ps(_mm256_set1_ps(-128.0f), s), x, t0, b, acc);
        }
        break;
      }
      case DType::Q4_K:
      case DType::Q5_K: {
        const bool five = type == DType::Q5_K;
        const int64_t bb = 4 * R + 16 * R + 8 * 4 * 64 + (five ? 8 * 64 : 0);
        for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
          const uint8_t* src = grp + i * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 d = halves8(src, h);
          const __m256 neg_dmin = _mm256_sub_ps(_mm256_setzero_ps(), halves8(src + 2 * R, h));
          const uint8_t* sc = src + 4 * R;
          const uint8_t* mn = sc + 8 * R;
          const uint8_t* qs = mn + 8 * R;
          const uint8_t* hi = qs + 8 * 4 * 64;
          for (int j = 0; j < 8; ++j) {
            const __m256 s = _mm256_mul_ps(d, bytes8_to_float(sc + 16 * j + 8 * h, false));
            const __m256 c = _mm256_mul_ps(neg_dmin, bytes8_to_float(mn + 16 * j + 8 * h, false));
            nibbles(qs + 256 * j, five ? hi + 64 * j : nullptr, h, &blk);
            block_step<NT>(blk, s, c, x, t0, i * 8 + j, acc);
          }
        }
        break;
      }
      case DType::IQ4_NL: {
        blk.wide = true;
        const int64_t bb = 2 * R + 4 * 64;
        for (int64_t b = 0; b < x.n / 32; ++b) {
          const uint8_t* src = grp + b * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 s = halves8(src, h);
          nibbles(src + 2 * R, nullptr, h, &blk);
          iq4_lookup(&blk);
          block_step<NT>(blk, s, _mm256_mul_ps(_mm256_set1_ps(-128.0f), s), x, t0, b, acc);
        }
        break;
      }
      case DType::IQ4_XS: {
        blk.wide = true;
        const int64_t bb = 2 * R + 8 * R + 8 * 4 * 64;
        for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
          const uint8_t* src = grp + i * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 d = halves8(src, h);
          const uint8_t* sc = src + 2 * R;
          const uint8_t* qs = sc + 8 * R;
          for (int j = 0; j < 8; ++j) {
            const __m256 s = _mm256_mul_ps(d, bytes8_to_float(sc + 16 * j + 8 * h, true));
            nibbles(qs + 256 * j, nullptr, h, &blk);
            iq4_lookup(&blk);
            block_step<NT>(blk, s, _mm256_mul_ps(_mm256_set1_ps(-128.0f), s), x, t0, i * 8 + j, acc);
          }
        }
        break;
      }
      case DType::TQ1_0:
      case DType::TQ2_0: {
        const int64_t bb = 2 * R + 8 * 2 * 64;
        const __m256i three = _mm256_set1_epi8(3);
        for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
          const uint8_t* src = grp + i * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 s = halves8(src, h);
          const __m256 c = _mm256_mul_ps(_mm256_set1_ps(-1.0f), s);
          for (int j = 0; j < 8; ++j) {
            for (int v = 0; v < 2; ++v) {
              const __m256i bits = load256(src + 2 * R + 128 * j + 64 * v + 32 * h);
              for (int l = 0; l < 4; ++l) blk.w[4 * v + l] = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * l), three);
            }
            block_step<NT>(blk, s, c, x, t0, i * 8 + j, acc);
          }
        }
        break;
      }
      case DType::Q6_K: {
        blk.ng = 4;
        Block pair;
        const int64_t bb = 2 * R + 16 * R + 8 * kQ6PairBytes;
        for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
          const uint8_t* src = grp + i * bb;
          if (pf > 0) prefetch_weights(src + pf, bb);
          const __m256 d = halves8(src, h);
          const __m256 d32 = _mm256_mul_ps(_mm256_set1_ps(-32.0f), d);
          const uint8_t* sc = src + 2 * R;
          const uint8_t* qv = sc + 16 * R;
          for (int j = 0; j < 16; ++j) {
            const __m256 scf = bytes8_to_float(sc + 16 * j + 8 * h, true);
            if (j % 2 == 0) q6_pair(qv + kQ6PairBytes * (j / 2), h, &pair);
            for (int g = 0; g < 4; ++g) blk.w[g] = pair.w[4 * (j % 2) + g];
            block_step<NT>(blk, _mm256_mul_ps(d, scf), _mm256_mul_ps(d32, scf), x, t0, i * 16 + j, acc);
          }
        }
        break;
      }
      default:
        break;
    }
    const __m256i mask = row_mask(n_rows - 8 * h);
    for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(y + (t0 + t) * y_stride + 8 * h, mask, acc[t]);
  }
}

FATHOM_AVX2 inline __m256 float_row8(DType type, const uint8_t* p, int h) {
  switch (type) {
    case DType::F16: return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
    case DType::BF16:
      return _mm256_castsi256_ps(
          _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h))), 16));
    default: return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8 * h);
  }
}

template <int NT>
FATHOM_AVX2 void float_tokens(DType type, const uint8_t* grp, const GemmActivations& x, int64_t t0, int64_t n_rows,
                              float* y, int64_t y_stride) {
  const int64_t vb = type == DType::F32 ? 64 : 32;
  const float* xf = x.f + t0 * x.n;
  for (int h = 0; h < 2; ++h) {
    __m256 a0[NT], a1[NT];
    for (int t = 0; t < NT; ++t) a0[t] = a1[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < x.n; i += 2) {
      const __m256 w0 = float_row8(type, grp + i * vb, h), w1 = float_row8(type, grp + (i + 1) * vb, h);
      for (int t = 0; t < NT; ++t) {
        a0[t] = _mm256_fmadd_ps(w0, _mm256_set1_ps(xf[t * x.n + i]), a0[t]);
        a1[t] = _mm256_fmadd_ps(w1, _mm256_set1_ps(xf[t * x.n + i + 1]), a1[t]);
      }
    }
    const __m256i mask = row_mask(n_rows - 8 * h);
    for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(y + (t0 + t) * y_stride + 8 * h, mask, _mm256_add_ps(a0[t], a1[t]));
  }
}

template <int NT>
FATHOM_AVX2 void tokens(DType type, const uint8_t* grp, const GemmActivations& x, int64_t t0, int64_t n_rows, float* y,
                        int64_t y_stride) {
  if (gemm_block(type) == 0) return float_tokens<NT>(type, grp, x, t0, n_rows, y, y_stride);
  int_tokens<NT>(type, grp, x, t0, n_rows, y, y_stride);
}

FATHOM_AVX2 void gemm_x16_avx2(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                               int64_t y_stride) {
  int64_t t = 0;
  for (; t + kTokenGroup <= x.n_tokens; t += kTokenGroup) tokens<kTokenGroup>(type, group, x, t, n_rows, y, y_stride);
  switch (x.n_tokens - t) {
    case 3: tokens<3>(type, group, x, t, n_rows, y, y_stride); break;
    case 2: tokens<2>(type, group, x, t, n_rows, y, y_stride); break;
    case 1: tokens<1>(type, group, x, t, n_rows, y, y_stride); break;
    default: break;
  }
}

// Bit-exact with gemm_quantize_activations (same max, division and rounding).
FATHOM_AVX2 void quantize_gemm_avx2(const float* x, int64_t n_tokens, int64_t n, int64_t block, int8_t* q, float* xd,
                                    float* xs) {
  const int64_t nb = n / block;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * n + b * block;
      int8_t* o = q + t * n + b * block;
      __m256 m = _mm256_setzero_ps();
      for (int64_t i = 0; i < block; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(v + i)));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float d = _mm_cvtss_f32(m4) / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      const __m256 idv = _mm256_set1_ps(id);
      __m256i sum = _mm256_setzero_si256();
      for (int64_t i = 0; i < block; i += 8) {
        const __m256i qi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + i), idv));
        sum = _mm256_add_epi32(sum, qi);
        alignas(32) int32_t tmp[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), qi);
        for (int k = 0; k < 8; ++k) o[i + k] = static_cast<int8_t>(tmp[k]);
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      xd[t * nb + b] = d;
      xs[t * nb + b] = d * static_cast<float>(_mm_cvtsi128_si32(s4));
    }
}

}  // namespace

void install_gemm_avx2(Kernels& k) {
  k.gemm_x16 = gemm_x16_avx2;
  k.quantize_gemm = quantize_gemm_avx2;
  k.gemm_is_simd = true;
}

}  // namespace fathom::cpu::detail

#else

namespace fathom::cpu::detail {
void install_gemm_avx2(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
