// AVX-512 VNNI kernels of gemm.h on repacked x16 weights (repack.h). Lanes are the 16 rows of
// a group: one vpdpbusd multiplies 4 unsigned weight bytes of every row by the same 4 signed
// token bytes (broadcast), so a 32-value block is 8 instructions for 16 rows and needs no
// horizontal sums. Up to 8 tokens share each block's unpacked weight registers. Per row and
// token the float operations are those of gemm_int_generic, in the same order.
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/gemm_x16_avx512.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

constexpr int kTokenGroup = 8;

FATHOM_AVX512 inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// acc + VPDPBUSD(w, the 4 token bytes at p broadcast). kFold: the broadcast as the instruction's
// {1to16} memory operand (GCC 12 does not fold _mm512_set1_epi32 of a load into it), saving the
// separate VPBROADCASTD per group: Q4_0 decode +6-7% on a Sapphire Rapids-class Xeon. The Q8_0
// loop of for_each_x16_block, whose weight loads the asm keeps the compiler from scheduling
// around, lost 14% with it, so only the one-token decoders below (rolled loops) take it.
template <bool kFold>
FATHOM_AVX512 inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t* p) {
  if constexpr (kFold) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t(*)[1]>(p)));
    return acc;
  } else {
    return _mm512_dpbusd_epi32(acc, w, bcast4(p));
  }
}

// acc + the block's contribution, in gemm_int_generic's order.
FATHOM_AVX512 inline __m512 block_epilogue(__m512 acc, __m512i ai, __m512 s, __m512 c, float xd, float xs) {
  acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ai), _mm512_set1_ps(xd)), s, acc);
  return _mm512_fmadd_ps(c, _mm512_set1_ps(xs), acc);
}

// One block (NG groups of 4 values) of all NT tokens: acc[t] += its contribution. kFold: the
// token bytes as VPDPBUSD's broadcast memory operand (dpbusd_bcast).
template <int NG, int NT, bool kFold>
FATHOM_AVX512 inline void block_step(const __m512i* w, __m512 s, __m512 c, const GemmActivations& x, int64_t t0,
                                     int64_t b, __m512* acc) {
  const int64_t nb = x.n / x.block;
  for (int t = 0; t < NT; ++t) {
    const int8_t* q = x.q + (t0 + t) * x.n + b * x.block;
    __m512i ai = dpbusd_bcast<kFold>(_mm512_setzero_si512(), w[0], q);
    for (int g = 1; g < NG; ++g) ai = dpbusd_bcast<kFold>(ai, w[g], q + 4 * g);
    acc[t] = block_epilogue(acc[t], ai, s, c, x.xd[(t0 + t) * nb + b], x.xs[(t0 + t) * nb + b]);
  }
}

// Decode (one token) of the nibble types Q4_0, Q4_K (nibble_dot), Q5_0, Q5_K (five_dot), IQ4_NL
// and IQ4_XS (iq4_dot) below.
// Q4_0 and Q4_K: the high nibbles stay in place
// (v & 0xF0 = 16 x nibble), so they need no shift, and their dot product is divided by 16 at the
// end (exact: every term is a multiple of 16 and |sum| < 2^19); two chains of 4 VPDPBUSD instead
// of one of 8. The same integers as for_each_x16_block's, so the same bits. Sapphire Rapids-class
// Xeon, 1.5B Q4_0: 774 MB of gate-shaped matrices on one thread 11.7-12.1 -> 14.3-14.5 GB/s;
// tg32 on one thread 13.4-13.9 -> 15.0-15.7 tok/s, on two 27.0-27.3 -> 27.7-28.6 (tg64).
//
// pf (not null): the block's share of the stream ahead, pf_bytes at pf, is requested into L2
// (prefetcht1) one line per nibble vector, between the products, rather than one burst per
// block into L1: the burst held a line fill buffer per line until its data came and a core's
// reads stopped at 13-14 GB/s. Sapphire Rapids-class Xeon, 2 threads, ~800 MB of gate-shaped
// matrices, 8 KiB ahead: q4_Kx16 26.3-26.6 -> 28.6 GB/s, Q4_0 26.7-27.3 -> 28.5; tg64 1.5B
// Q4_K_M 25.3-25.6 -> 27.9-28.0 tok/s, V2-Lite 58.9-60.2 -> 67.6-69.5, Q4_0 31.7-32.3 -> 33.3-33.7.
// (The same prefetches as one burst into L2 per block read 24.5-26.5 GB/s.)
//
// The loop over a block's 4 vectors stays rolled (#pragma GCC unroll 1; q6_decode's too): GCC
// unrolls it into 4 prefetches and 4 loads back to back, and the stream was slower. Same machine,
// 2 threads, interleaved runs: q4_Kx16 29.0-30.5 -> 31.8-32.5 GB/s (one thread 14.8 -> 16.3),
// q6_Kx16 29.0-29.8 -> 32.4-33.1, Q4_0 28.9-29.6 -> 29.5-30.1. With the 5-bit types on the same
// path (five_dot; before, for_each_x16_block's T0 burst): Q5_0 26.7-27.8 -> 31.9-32.8, q5_Kx16
// 20.6 -> 30.3-31.8. tg64, % of the bound: 1.5B Q4_K_M 82-85% -> 93%, V2-Lite 87-94% -> 98%.
constexpr int64_t kNibblePrefetchBytes = 8192;

// One block of 4 nibble vectors at nib against the token's values at q: split(v, g, &wl, &wh)
// gives vector g's weights for values 4g.. (wl) and 16 + 4g.. (wh); the wh chain is shifted
// right by kHighShift at the end. pf (not null): pf_bytes of the stream at pf requested into L2,
// one line before each vector's load, the rest after the loop.
template <int kHighShift, class Split>
FATHOM_AVX512 inline __m512i nibble_block_dot(const uint8_t* nib, const int8_t* q, const uint8_t* pf, int64_t pf_bytes,
                                              Split&& split) {
  __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
#pragma GCC unroll 1
  for (int g = 0; g < 4; ++g) {
    if (pf != nullptr && 64 * g < pf_bytes) _mm_prefetch(reinterpret_cast<const char*>(pf + 64 * g), _MM_HINT_T1);
    __m512i wl, wh;
    split(_mm512_loadu_si512(nib + 64 * g), g, &wl, &wh);
    lo = dpbusd_bcast<true>(lo, wl, q + 4 * g);
    hi = dpbusd_bcast<true>(hi, wh, q + 16 + 4 * g);
  }
  if (pf != nullptr)
    for (int64_t o = 256; o < pf_bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(pf + o), _MM_HINT_T1);
  return _mm512_add_epi32(lo, kHighShift > 0 ? _mm512_srai_epi32(hi, kHighShift) : hi);
}

FATHOM_AVX512 inline __m512i nibble_dot(const uint8_t* nib, const int8_t* q, const uint8_t* pf, int64_t pf_bytes) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  return nibble_block_dot<4>(nib, q, pf, pf_bytes, [&](__m512i v, int, __m512i* wl, __m512i* wh) FATHOM_AVX512 {
    *wl = _mm512_and_si512(v, low4);
    *wh = _mm512_and_si512(v, high4);
  });
}

// nibble_dot for the 5-bit types (Q5_0, Q5_K): bit g of each byte of the high-bit vector at hi
// is the 5th bit of vector g (nibbles()), added to both nibbles of a vector before its products.
FATHOM_AVX512 inline __m512i five_dot(const uint8_t* nib, const uint8_t* hi, const int8_t* q, const uint8_t* pf,
                                      int64_t pf_bytes) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
  const __m512i h = _mm512_loadu_si512(hi);
  return nibble_block_dot<0>(nib, q, pf, pf_bytes, [&](__m512i v, int g, __m512i* wl, __m512i* wh) FATHOM_AVX512 {
    const __m512i l = _mm512_and_si512(v, low4), u = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    *wl = _mm512_mask_add_epi8(l, _mm512_test_epi8_mask(h, _mm512_set1_epi8(static_cast<char>(1 << g))), l, sixteen);
    *wh = _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(h, _mm512_set1_epi8(static_cast<char>(16 << g))), u, sixteen);
  });
}

// nibble_dot for the codebook nibbles of IQ4_NL and IQ4_XS: each nibble looked up (iq4_lookup's
// table, value + 128) before its product. Sapphire Rapids-class Xeon, 2 threads, 0.74-0.77 GB of
// gate-shaped matrices, 3 interleaved runs against for_each_x16_block's path: IQ4_NL 21.6-23.4
// -> 28.2-31.4 GB/s, IQ4_XS 19.8-21.5 -> 28.4-30.5.
FATHOM_AVX512 inline __m512i iq4_dot(const uint8_t* nib, const int8_t* q, const uint8_t* pf, int64_t pf_bytes) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m128i values = _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIq4nlValues));
  const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(values, _mm_set1_epi8(static_cast<char>(0x80))));
  return nibble_block_dot<0>(nib, q, pf, pf_bytes, [&](__m512i v, int, __m512i* wl, __m512i* wh) FATHOM_AVX512 {
    *wl = _mm512_shuffle_epi8(table, _mm512_and_si512(v, low4));
    *wh = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
  });
}

FATHOM_AVX512 void nibble_decode(DType type, const uint8_t* grp, const GemmActivations& x, int64_t t0, __mmask16 rows,
                                 float* y, int64_t pf) {
  constexpr int64_t R = kGemmRows;
  const int64_t nb = x.n / 32;
  const int8_t* q = x.q + t0 * x.n;
  const float* xd = x.xd + t0 * nb;
  const float* xs = x.xs + t0 * nb;
  __m512 acc = _mm512_setzero_ps();
  if (type == DType::Q4_0 || type == DType::Q5_0 || type == DType::IQ4_NL) {
    const bool five = type == DType::Q5_0, iq4 = type == DType::IQ4_NL;
    const int64_t bb = 2 * R + 4 * 64 + (five ? 64 : 0);
    const __m512 k = _mm512_set1_ps(five ? -16.0f : iq4 ? -128.0f : -8.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* src = grp + b * bb;
      const __m512 s = halves(src);
      const uint8_t* ahead = pf > 0 ? src + pf : nullptr;
      const __m512i ai = five  ? five_dot(src + 2 * R, src + 2 * R + 4 * 64, q + 32 * b, ahead, bb)
                         : iq4 ? iq4_dot(src + 2 * R, q + 32 * b, ahead, bb)
                               : nibble_dot(src + 2 * R, q + 32 * b, ahead, bb);
      acc = block_epilogue(acc, ai, s, _mm512_mul_ps(k, s), xd[b], xs[b]);
    }
  } else if (type == DType::IQ4_XS) {  // the layout of for_each_x16_block's IQ4_XS
    constexpr int64_t bb = 2 * R + 8 * R + 8 * 4 * 64;
    for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
      const uint8_t* src = grp + i * bb;
      const __m512 d = halves(src);
      const uint8_t* sc = src + 2 * R;
      const uint8_t* qs = sc + 8 * R;
      for (int j = 0; j < 8; ++j) {
        const __m512 scf = int8_scales(sc + 16 * j);
        const __m512 s = _mm512_mul_ps(d, scf);
        const int64_t b = i * 8 + j;
        const uint8_t* ahead = pf > 0 ? src + pf + j * (bb / 8) : nullptr;
        acc = block_epilogue(acc, iq4_dot(qs + 256 * j, q + 32 * b, ahead, bb / 8), s,
                             _mm512_mul_ps(_mm512_set1_ps(-128.0f), s), xd[b], xs[b]);
      }
    }
  } else {  // Q4_K, Q5_K: the layout of for_each_x16_block, the prefetch one sub-block's share at a time
    const bool five = type == DType::Q5_K;
    const int64_t bb = 4 * R + 16 * R + 8 * 4 * 64 + (five ? 8 * 64 : 0);
    for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
      const uint8_t* src = grp + i * bb;
      const KQuantSuper k = k_quant_super(src);
      for (int j = 0; j < 8; ++j) {
        __m512 s, c;
        k_quant_sub_block(k, j, &s, &c);
        const int64_t b = i * 8 + j;
        const uint8_t* ahead = pf > 0 ? src + pf + j * (bb / 8) : nullptr;  // sub-block j's share
        const __m512i ai = five ? five_dot(k.qs + 256 * j, k.qs + 8 * 256 + 64 * j, q + 32 * b, ahead, bb / 8)
                                : nibble_dot(k.qs + 256 * j, q + 32 * b, ahead, bb / 8);
        acc = block_epilogue(acc, ai, s, c, xd[b], xs[b]);
      }
    }
  }
  _mm512_mask_storeu_ps(y, rows, acc);
}

// Decode (one token) of Q8_0: the block's 8 vectors in a rolled loop, each with one line of the
// stream ahead requested into L2, as nibble_dot does, the broadcast folded into VPDPBUSD. Same
// integers and float order as for_each_x16_block's, so the same bits. Sapphire Rapids-class Xeon,
// 2 threads, 1.46 GB of gate-shaped Q8_0, 3 interleaved runs: 29.05-29.17 GB/s -> 31.43-31.63
// (unfolded broadcast 30.26-32.42); 1.5B Q8_0 tg64 90-95% -> 97-105% of the bound.
FATHOM_AVX512 void q8_decode(const uint8_t* grp, const GemmActivations& x, int64_t t0, __mmask16 rows, float* y,
                             int64_t pf) {
  constexpr int64_t R = kGemmRows, bb = 2 * R + 8 * 64;
  const int64_t nb = x.n / 32;
  const int8_t* q = x.q + t0 * x.n;
  const float* xd = x.xd + t0 * nb;
  const float* xs = x.xs + t0 * nb;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* src = grp + b * bb;
    const uint8_t* ahead = src + pf;
    const int8_t* qb = q + 32 * b;
    __m512i ai = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int g = 0; g < 8; ++g) {
      if (pf > 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * g), _MM_HINT_T1);
      ai = dpbusd_bcast<true>(ai, _mm512_loadu_si512(src + 2 * R + 64 * g), qb + 4 * g);
    }
    if (pf > 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 8 * 64), _MM_HINT_T1);
    const __m512 s = halves(src);
    acc = block_epilogue(acc, ai, s, _mm512_mul_ps(_mm512_set1_ps(-128.0f), s), xd[b], xs[b]);
  }
  _mm512_mask_storeu_ps(y, rows, acc);
}

// Decode (one token) of Q6_K: q6_pair's decoding of each pair of sub-blocks, with the pair's
// share of the stream ahead requested into L2 one line per weight vector, as nibble_decode does,
// instead of for_each_x16_block's burst into L1 (T0) per sub-block. Same integers and float
// order, so the same bits. Sapphire Rapids-class Xeon, 2 threads, 1.1 GB of gate-shaped q6_Kx16:
// 19.5-20.1 -> 28.0-28.6 GB/s; 1.5B Q4_K_M tg64 (its 191 MB output matrix is Q6_K) 25.9-27.5
// -> 28.3-28.5 tok/s.
FATHOM_AVX512 void q6_decode(const uint8_t* grp, const GemmActivations& x, int64_t t0, __mmask16 rows, float* y,
                             int64_t pf) {
  constexpr int64_t R = kGemmRows;
  constexpr int64_t bb = 2 * R + 16 * R + 8 * kQ6PairBytes, share = bb / 8;
  const int64_t nb = x.n / 16;
  const int8_t* q = x.q + t0 * x.n;
  const float* xd = x.xd + t0 * nb;
  const float* xs = x.xs + t0 * nb;
  const __m512i low4 = _mm512_set1_epi8(15), bits45 = _mm512_set1_epi8(0x30);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < x.n / quant::kQK; ++i) {
    const uint8_t* src = grp + i * bb;
    const __m512 d = halves(src);
    const __m512 d32 = _mm512_mul_ps(_mm512_set1_ps(-32.0f), d);
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 2 * R);
    const uint8_t* qv = src + 2 * R + 16 * R;
    for (int p = 0; p < 8; ++p) {
      const uint8_t* pair = qv + kQ6PairBytes * p;
      const uint8_t* ahead = src + pf + p * share;
      __m512i w[8];
#pragma GCC unroll 1
      for (int g = 0; g < 4; ++g) {
        if (pf > 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * g), _MM_HINT_T1);
        const __m512i v = _mm512_loadu_si512(pair + 64 * g);
        w[g] = _mm512_and_si512(v, low4);
        w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
      for (int h = 0; h < 2; ++h) {
        if (pf > 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 256 + 64 * h), _MM_HINT_T1);
        const __m512i v = _mm512_loadu_si512(pair + 4 * 64 + 64 * h);
        w[4 * h] = _mm512_ternarylogic_epi32(w[4 * h], _mm512_slli_epi16(v, 4), bits45, 0xF8);
        w[4 * h + 1] = _mm512_ternarylogic_epi32(w[4 * h + 1], _mm512_slli_epi16(v, 2), bits45, 0xF8);
        w[4 * h + 2] = _mm512_ternarylogic_epi32(w[4 * h + 2], v, bits45, 0xF8);
        w[4 * h + 3] = _mm512_ternarylogic_epi32(w[4 * h + 3], _mm512_srli_epi16(v, 2), bits45, 0xF8);
      }
      if (pf > 0) _mm_prefetch(reinterpret_cast<const char*>(ahead + 384), _MM_HINT_T1);
      for (int h = 0; h < 2; ++h) {
        const int64_t b = i * 16 + 2 * p + h;
        const __m512 scf = int8_scales(reinterpret_cast<const uint8_t*>(sc) + 16 * (2 * p + h));
        __m512i ai = dpbusd_bcast<true>(_mm512_setzero_si512(), w[4 * h], q + 16 * b);
        for (int g = 1; g < 4; ++g) ai = dpbusd_bcast<true>(ai, w[4 * h + g], q + 16 * b + 4 * g);
        acc = block_epilogue(acc, ai, _mm512_mul_ps(d, scf), _mm512_mul_ps(d32, scf), xd[b], xs[b]);
      }
    }
  }
  _mm512_mask_storeu_ps(y, rows, acc);
}

// flatten: without it GCC leaves part of the per-block decoding of for_each_x16_block out of
// line in some instantiations (K-quant prefill measured 10-14% slower).
template <int NT, bool kFold>
__attribute__((flatten)) FATHOM_AVX512 void tokens(DType type, const uint8_t* grp, const GemmActivations& x, int64_t t0, __mmask16 rows, float* y,
                          int64_t y_stride) {
  if constexpr (NT == 1) {  // the one-token decoders, where the type has one
    const int64_t ahead = t0 == 0 ? kNibblePrefetchBytes : 0;
    float* y1 = y + t0 * y_stride;
    switch (type) {
      case DType::Q4_0:
      case DType::Q4_K:
      case DType::Q5_0:
      case DType::Q5_K:
      case DType::IQ4_NL:
      case DType::IQ4_XS: return nibble_decode(type, grp, x, t0, rows, y1, ahead);
      case DType::Q8_0: return q8_decode(grp, x, t0, rows, y1, ahead);
      case DType::Q6_K: return q6_decode(grp, x, t0, rows, y1, ahead);
      default: break;
    }
  }
  const int64_t pf = t0 == 0 ? kDecodePrefetchBytes : 0;  // the first pass over a group streams it in
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for_each_x16_block(type, grp, x.n, pf, [&](const __m512i* w, auto ng, __m512 s, __m512 c, int64_t b) FATHOM_AVX512 {
    block_step<decltype(ng)::value, NT, kFold>(w, s, c, x, t0, b, acc);
  });
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * y_stride, rows, acc[t]);
}

// 16 values of a float group (rows side by side) as f32.
FATHOM_AVX512 inline __m512 float_row(DType type, const uint8_t* p) {
  switch (type) {
    case DType::F16: return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    case DType::BF16:
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
    default: return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
  }
}

// Float weights: two FMA chains per token (even and odd values), summed at the end, as the
// canonical order in gemm.h defines.
template <DType T, int NT>
FATHOM_AVX512 void float_tokens(const uint8_t* grp, const GemmActivations& x, int64_t t0, __mmask16 rows, float* y,
                                int64_t y_stride) {
  constexpr int64_t vb = T == DType::F32 ? 64 : 32;  // bytes of one value of 16 rows
  __m512 a0[NT], a1[NT];
  for (int t = 0; t < NT; ++t) a0[t] = a1[t] = _mm512_setzero_ps();
  const float* xf = x.f + t0 * x.n;
  for (int64_t i = 0; i < x.n; i += 2) {
    const __m512 w0 = float_row(T, grp + i * vb), w1 = float_row(T, grp + (i + 1) * vb);
    for (int t = 0; t < NT; ++t) {
      a0[t] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xf[t * x.n + i]), a0[t]);
      a1[t] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xf[t * x.n + i + 1]), a1[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * y_stride, rows, _mm512_add_ps(a0[t], a1[t]));
}

template <DType T>
FATHOM_AVX512 void float_group(const uint8_t* grp, const GemmActivations& x, __mmask16 rows, float* y, int64_t y_stride) {
  constexpr int kGroup = 6;  // 12 accumulators
  int64_t t = 0;
  for (; t + kGroup <= x.n_tokens; t += kGroup) float_tokens<T, kGroup>(grp, x, t, rows, y, y_stride);
  switch (x.n_tokens - t) {
    case 5: float_tokens<T, 5>(grp, x, t, rows, y, y_stride); break;
    case 4: float_tokens<T, 4>(grp, x, t, rows, y, y_stride); break;
    case 3: float_tokens<T, 3>(grp, x, t, rows, y, y_stride); break;
    case 2: float_tokens<T, 2>(grp, x, t, rows, y, y_stride); break;
    case 1: float_tokens<T, 1>(grp, x, t, rows, y, y_stride); break;
    default: break;
  }
}

// Bit-exact with gemm_quantize_activations: same max, same division, round to nearest even.
FATHOM_AVX512 void quantize_gemm_avx512(const float* x, int64_t n_tokens, int64_t n, int64_t block, int8_t* q,
                                        float* xd, float* xs) {
  const int64_t nb = n / block;
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * n + b * block;
      int8_t* o = q + t * n + b * block;
      const __m512 v0 = _mm512_loadu_ps(v);
      const __m512 v1 = block == 32 ? _mm512_loadu_ps(v + 16) : _mm512_setzero_ps();
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
      const float d = amax / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      const __m512 idv = _mm512_set1_ps(id);
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
      __m512i sum = q0;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm512_cvtepi32_epi8(q0));
      if (block == 32) {
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), _mm512_cvtepi32_epi8(q1));
        sum = _mm512_add_epi32(sum, q1);
      }
      xd[t * nb + b] = d;
      xs[t * nb + b] = d * static_cast<float>(_mm512_reduce_add_epi32(sum));
    }
  }
}

// All tokens of x against one group, kTokenGroup at a time.
template <bool kFold>
FATHOM_AVX512 void token_groups(DType type, const uint8_t* group, const GemmActivations& x, __mmask16 rows, float* y,
                                int64_t y_stride) {
  int64_t t = 0;
  for (; t + kTokenGroup <= x.n_tokens; t += kTokenGroup) tokens<kTokenGroup, kFold>(type, group, x, t, rows, y, y_stride);
  switch (x.n_tokens - t) {
    case 7: tokens<7, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 6: tokens<6, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 5: tokens<5, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 4: tokens<4, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 3: tokens<3, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 2: tokens<2, kFold>(type, group, x, t, rows, y, y_stride); break;
    case 1: tokens<1, kFold>(type, group, x, t, rows, y, y_stride); break;
    default: break;
  }
}

}  // namespace

FATHOM_AVX512 void gemm_x16_avx512(DType type, const uint8_t* group, const GemmActivations& x, int64_t n_rows, float* y,
                                   int64_t y_stride) {
  const __mmask16 rows = static_cast<__mmask16>((1u << n_rows) - 1);
  switch (type) {
    case DType::F16: return float_group<DType::F16>(group, x, rows, y, y_stride);
    case DType::BF16: return float_group<DType::BF16>(group, x, rows, y, y_stride);
    case DType::F32: return float_group<DType::F32>(group, x, rows, y, y_stride);
    default: break;
  }
  // A decode step of 2-8 sequences passes over each group once, streaming it: there the folded
  // broadcast was faster (Sapphire Rapids-class Xeon, 2 threads, ~0.8-1.5 GB of gate-shaped
  // matrices, 8 tokens: q4_Kx16 9.7-10.6 -> 12.2-12.8 GB/s, Q4_0 15.4-15.6 -> 16.8-17.6, Q8_0
  // 19.7-20.4 -> 20.6-21.3; 4 tokens +3-13%; 2 tokens within noise; q6_Kx16 within noise). In
  // prefill (many passes over a cached group) it was slower (AVX-512 table, 128 tokens, 1536 x
  // 8960: Q4_K 6.45 -> 7.7-8.0 ms), so more tokens keep the separate broadcast, and so does one
  // token on the types without a one-token decoder (for_each_x16_block's Q8_0 loop lost 14% with it).
  if (x.n_tokens >= 2 && x.n_tokens <= kTokenGroup) return token_groups<true>(type, group, x, rows, y, y_stride);
  token_groups<false>(type, group, x, rows, y, y_stride);
}

void install_gemm_avx512(Kernels& k) {
  k.gemm_x16 = gemm_x16_avx512;
  k.quantize_gemm = quantize_gemm_avx512;
  k.gemm_is_simd = true;
}

}  // namespace fathom::cpu::detail

#else

namespace fathom::cpu::detail {
void install_gemm_avx512(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
