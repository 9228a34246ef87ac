// AVX-512 VBMI row kernels of IQ2_XXS and IQ1_S against Q8_K activations, for the AMX table
// (every CPU with AMX has VBMI; isa.h). Decode of these types is bound by arithmetic, not by
// memory: the AVX-512 kernels (vec_dot_iq2_avx512.cpp, vec_dot_iq3_iq1_avx512.cpp) build each
// group's 8 values from a grid entry looked up or gathered as 8 bytes, plus scalar work per unit.
// Here the grids are used in their compact form, 16-bit codes of 2 bits per value:
//   - IQ2_XXS (256 entries): the 32 grid indices of a super-block become codes with four
//     two-register word permutes over the table held in registers; the 7-bit sign fields are cut
//     out with VPMULTISHIFTQB, and a two-register byte permute over a 128-entry table adds the
//     implied parity bit;
//   - IQ1_S (2048 entries): the codes are gathered, 16 groups at a time; a code (value + 1: 0, 1
//     or 2) is itself the unsigned operand, and Q8_K's bsums take the + 1 back out;
//   - VPMULTISHIFTQB moves each value's 2-bit code to the bottom of its byte, 64 values at a time.
// The integer sums of every super-block equal the reference's and the float combine is the
// reference's expression in its order, so results are bit-identical to quant::vec_dot_ref.
// Sapphire Rapids-class Xeon, 2 threads, tg32 of the issue-21 files (qwen2 1.5B shape, 8 layers),
// against the AVX-512 kernels with the same prefetch: IQ2_XXS 37 -> 46-48.6 tok/s, IQ1_S
// 42.5-43.2 -> 45.0-45.7.
#include <array>
#include <cmath>
#include <cstdint>

#include "backend/cpu/vec_dot_internal.h"
#include "quant/blocks.h"
#include "quant/iq1_grids.h"
#include "quant/iq2_grids.h"
#include "quant/iq_signs.h"

#if defined(__x86_64__) || defined(__i386__)
#include "backend/cpu/isa_targets.h"

FATHOM_AVX512_WARNINGS_OFF

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

// What both kernels do per 64-value step m (units 2m and 2m + 1, groups 8m..8m + 7).
struct alignas(64) StepConstants {
  uint8_t code_shifts[64];      // per qword: 0, 2, ..., 14 (the 8 codes of one group)
  uint16_t scale_index[4][32];  // step m: words 0..15 <- unit 2m's scale, 16..31 <- unit 2m + 1's
};

constexpr StepConstants make_step_constants() {
  StepConstants c{};
  for (int i = 0; i < 64; ++i) c.code_shifts[i] = static_cast<uint8_t>(2 * (i % 8));
  for (int m = 0; m < 4; ++m)
    for (int w = 0; w < 32; ++w) c.scale_index[m][w] = static_cast<uint16_t>(2 * m + w / 16);
  return c;
}

constexpr StepConstants kSteps = make_step_constants();

struct alignas(64) Iq2xxsConstants {
  uint16_t codes[256];        // kIq2xxsGridCodes
  uint8_t sign_bytes[128];    // 7-bit field -> the sign byte with its parity bit (iq_add_sign_parity)
  uint8_t levels[64];         // byte i: kIq2Levels[i & 3] (codes 3 never occur)
  uint8_t index_words[64];    // byte 2k: where grid index k sits in the 64 qs bytes (unit k/4, byte k%4)
  uint8_t field_shifts[64];   // per qword (unit): bit offsets of the 4 sign fields and of the scale
  uint8_t sign_gather[64];    // byte 4u + l <- byte 8u + l (the unit's sign fields, packed)
  uint8_t scale_words[64];    // byte 2u <- byte 8u + 4 (the unit's scale), u < 8
  uint16_t code_index[4][32];  // step m: word 4g <- the code of group 8m + g
};

Iq2xxsConstants make_constants() {
  Iq2xxsConstants c{};
  for (int e = 0; e < 256; ++e) c.codes[e] = kIq2xxsGridCodes[e];
  for (int s = 0; s < 128; ++s) c.sign_bytes[s] = static_cast<uint8_t>(iq_add_sign_parity(static_cast<uint64_t>(s)));
  for (int i = 0; i < 64; ++i) {
    c.levels[i] = i % 4 < 3 ? kIq2Levels[i % 4] : 0;
    c.index_words[i] = i % 2 == 0 ? static_cast<uint8_t>(8 * (i / 2 / 4) + i / 2 % 4) : 0;
    constexpr uint8_t kFieldShifts[8] = {32, 39, 46, 53, 60, 0, 0, 0};
    c.field_shifts[i] = kFieldShifts[i % 8];
    c.sign_gather[i] = i < 32 ? static_cast<uint8_t>(8 * (i / 4) + i % 4) : 0;
    c.scale_words[i] = i < 16 && i % 2 == 0 ? static_cast<uint8_t>(8 * (i / 2) + 4) : 0;
  }
  for (int m = 0; m < 4; ++m)
    for (int w = 0; w < 32; ++w) c.code_index[m][w] = static_cast<uint16_t>(8 * m + w / 4);
  return c;
}

// Dynamic initialisation: kIq2xxsGridCodes (constinit) is in place before it runs.
const Iq2xxsConstants kIq2xxs = make_constants();

FATHOM_AVX512_VBMI inline __m512i load(const void* p) { return _mm512_load_si512(p); }

// The sums of the 8 int32 lanes of a and of b (two horizontal sums for the price of one).
FATHOM_AVX512_VBMI inline void sum_pair(__m256i a, __m256i b, int32_t* sa, int32_t* sb) {
  __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  both = _mm512_add_epi32(both, _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(2, 3, 0, 1)));
  both = _mm512_add_epi32(both, _mm512_shuffle_epi32(both, _MM_PERM_BADC));
  both = _mm512_add_epi32(both, _mm512_shuffle_epi32(both, _MM_PERM_CDAB));
  *sa = _mm512_cvtsi512_si32(both);
  *sb = _mm_cvtsi128_si32(_mm512_extracti32x4_epi32(both, 2));
}

// The 16 lanes of v folded to 8 (same sum).
FATHOM_AVX512_VBMI inline __m256i fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

FATHOM_AVX512_VBMI void iq2_xxs_rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q,
                                     float* out) {
  const Iq2xxsConstants& c = kIq2xxs;
  __m512i table[8];
  for (int t = 0; t < 8; ++t) table[t] = load(c.codes + 32 * t);
  const __m512i signs_lo = load(c.sign_bytes), signs_hi = load(c.sign_bytes + 64);
  const __m512i levels = load(c.levels), index_words = load(c.index_words), field_shifts = load(c.field_shifts);
  const __m512i sign_gather = load(c.sign_gather), scale_words = load(c.scale_words), code_shifts = load(kSteps.code_shifts);
  const __m512i bit6 = _mm512_set1_epi16(64), bit7 = _mm512_set1_epi16(128);
  const __m512i nibble = _mm512_set1_epi16(15), one = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  const auto* y = static_cast<const block_q8_K*>(x_q);
  const int64_t nb = n / kQK;
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto* x = reinterpret_cast<const block_iq2_xxs*>(w + static_cast<size_t>(r) * row_bytes);
    float sum = 0;
    // Super-block i's integer sum, in 16 lanes.
    auto block_sum = [&](int64_t i) FATHOM_AVX512_VBMI {
      // The stream kRowPrefetchBytes ahead, as dot_rows does per row (per super-block here:
      // 44-45 -> 47-48.6 tok/s on the IQ2_XXS file).
      prefetch_weights(reinterpret_cast<const uint8_t*>(x + i) + kRowPrefetchBytes, sizeof(block_iq2_xxs));
      const __m512i qs = _mm512_loadu_si512(x[i].qs);  // unit u in qword u: 4 grid indices, then the sign/scale word
      // The 32 grid indices as words, looked up in the 256-entry code table (4 x 64 entries).
      const __m512i index = _mm512_maskz_permutexvar_epi8(0x5555555555555555ull, index_words, qs);
      const __m512i c0 = _mm512_permutex2var_epi16(table[0], index, table[1]);
      const __m512i c1 = _mm512_permutex2var_epi16(table[2], index, table[3]);
      const __m512i c2 = _mm512_permutex2var_epi16(table[4], index, table[5]);
      const __m512i c3 = _mm512_permutex2var_epi16(table[6], index, table[7]);
      const __mmask32 b6 = _mm512_test_epi16_mask(index, bit6), b7 = _mm512_test_epi16_mask(index, bit7);
      const __m512i codes =
          _mm512_mask_mov_epi16(_mm512_mask_mov_epi16(c0, b6, c1), b7, _mm512_mask_mov_epi16(c2, b6, c3));
      // Sign fields (bits 0..6 of bytes 0..3 per unit) and scales (low nibble of byte 4).
      const __m512i fields = _mm512_multishift_epi64_epi8(field_shifts, qs);
      const __m512i signs = _mm512_permutex2var_epi8(signs_lo, _mm512_permutexvar_epi8(sign_gather, fields), signs_hi);
      alignas(32) uint64_t sign_masks[4];  // step m: bit v set when value 64 m + v is negative
      _mm256_store_si256(reinterpret_cast<__m256i*>(sign_masks), _mm512_castsi512_si256(signs));
      const __m512i scale = _mm512_and_si512(_mm512_maskz_permutexvar_epi8(0x5555555555555555ull, scale_words, fields), nibble);
      const __m512i scale2 = _mm512_or_si512(_mm512_slli_epi16(scale, 1), one);  // 2s + 1 of unit u in word u
      __m512i isum = zero;
      for (int m = 0; m < 4; ++m) {
        const __m512i group_codes = _mm512_permutexvar_epi16(load(c.code_index[m]), codes);
        const __m512i magnitudes = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(code_shifts, group_codes), levels);
        const __m512i yq = _mm512_loadu_si512(y[i].qs + 64 * m);
        const __m512i y_signed = _mm512_mask_sub_epi8(yq, _load_mask64(reinterpret_cast<__mmask64*>(sign_masks + m)), zero, yq);
        const __m512i scales = _mm512_permutexvar_epi16(load(kSteps.scale_index[m]), scale2);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(magnitudes, y_signed), scales);
      }
      return isum;
    };
    auto add = [&](int64_t i, int32_t isum) { sum = std::fma(_cvtsh_ss(x[i].d) * y[i].d, static_cast<float>(isum), sum); };
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {  // two super-blocks share the horizontal sum; added in order
      int32_t s0, s1;
      sum_pair(fold(block_sum(i)), fold(block_sum(i + 1)), &s0, &s1);
      add(i, s0);
      add(i + 1, s1);
    }
    if (i < nb) add(i, _mm512_reduce_add_epi32(block_sum(i)));
    out[r] = 0.125f * sum;
  }
}

// IQ1_S: 11-bit grid indices (2048 entries), so the codes are gathered, 16 groups at a time, from
// a table of their 16-bit codes (value + 1 in 2 bits: 0, 1 or 2). The codes themselves are the
// unsigned operand: sum (v + 1) y = sum v y + sum y, and Q8_K's bsums give sum y per 32-value
// unit, which the delta term needs too.
struct alignas(64) Iq1sConstants {
  uint32_t codes[2048];        // kIq1SGridCodes, one per dword (the gather's element)
  uint32_t unit_of_group[2][16];  // half h: dword k <- unit 4h + k / 4 (of the 8 qh words)
  uint32_t high_shift[16];        // dword k: 3 (k % 4), where group k's 3 high index bits sit in qh
};

Iq1sConstants make_iq1s_constants() {
  Iq1sConstants c{};
  for (int e = 0; e < 2048; ++e) c.codes[e] = kIq1SGridCodes[e];
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 16; ++k) c.unit_of_group[h][k] = static_cast<uint32_t>(4 * h + k / 4);
  for (int k = 0; k < 16; ++k) c.high_shift[k] = static_cast<uint32_t>(3 * (k % 4));
  return c;
}

const Iq1sConstants kIq1s = make_iq1s_constants();

FATHOM_AVX512_VBMI void iq1_s_rows(int64_t n, const uint8_t* w, size_t row_bytes, int64_t n_rows, const void* x_q,
                                   float* out) {
  const Iq1sConstants& c = kIq1s;
  const __m512i unit_lo = load(c.unit_of_group[0]), unit_hi = load(c.unit_of_group[1]);
  const __m512i high_shift = load(c.high_shift), code_shifts = load(kSteps.code_shifts);
  const __m512i three = _mm512_set1_epi8(3), seven = _mm512_set1_epi32(7);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const auto* y = static_cast<const block_q8_K*>(x_q);
  const int64_t nb = n / kQK;
  for (int64_t r = 0; r < n_rows; ++r) {
    const auto* x = reinterpret_cast<const block_iq1_s*>(w + static_cast<size_t>(r) * row_bytes);
    float sum = 0;
    for (int64_t i = 0; i < nb; ++i) {
      prefetch_weights(reinterpret_cast<const uint8_t*>(x + i) + kRowPrefetchBytes, sizeof(block_iq1_s));
      // qh word u (unit u of 32 values): 4 x 3 high index bits, the 3-bit scale, the delta sign.
      const __m256i qh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qh)));
      const __m512i qh512 = _mm512_castsi256_si512(qh);
      __m512i codes[2];
      for (int h = 0; h < 2; ++h) {
        const __m512i low = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs + 16 * h)));
        const __m512i high = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_permutexvar_epi32(h == 0 ? unit_lo : unit_hi, qh512), high_shift), seven);
        codes[h] = _mm512_i32gather_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 8)), c.codes, 4);
      }
      // 2 ls + 1 per unit as words 0..7, and ls * (sum of the unit's activations) as dwords.
      const __m256i ls = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh, 12), _mm256_set1_epi32(7)), 1),
                                         _mm256_set1_epi32(1));
      const __m512i ls_words = _mm512_castsi128_si512(_mm256_cvtepi32_epi16(ls));
      const __m256i unit_y = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums)), ones16);
      const __m256i ls_y = _mm256_mullo_epi32(ls, unit_y);
      const __mmask8 minus = _mm256_test_epi32_mask(qh, _mm256_set1_epi32(0x8000));
      __m512i isum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), ls_y));  // the "+ sum y" of the codes
      for (int m = 0; m < 4; ++m) {
        const __m256i half = m % 2 == 0 ? _mm512_castsi512_si256(codes[m / 2]) : _mm512_extracti64x4_epi64(codes[m / 2], 1);
        const __m512i group_codes = _mm512_cvtepu32_epi64(half);  // qword g: the code of group 8m + g
        const __m512i values = _mm512_and_si512(_mm512_multishift_epi64_epi8(code_shifts, group_codes), three);
        const __m512i yq = _mm512_loadu_si512(y[i].qs + 64 * m);
        const __m512i scales = _mm512_permutexvar_epi16(load(kSteps.scale_index[m]), ls_words);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(values, yq), scales);
      }
      // Both horizontal sums at once (+3-7% tok/s on the IQ1_S file).
      const __m256i delta = _mm256_mask_sub_epi32(ls_y, minus, _mm256_setzero_si256(), ls_y);
      int32_t grid_sum, delta_sum;
      sum_pair(fold(isum), delta, &grid_sum, &delta_sum);
      const float sums = static_cast<float>(grid_sum) + kIq1SDelta * static_cast<float>(delta_sum);
      sum = std::fma(_cvtsh_ss(x[i].d) * y[i].d, sums, sum);
    }
    out[r] = sum;
  }
}

}  // namespace

void install_iq_vbmi(Kernels& k) {
  set_dot(k, DType::IQ2_XXS, iq2_xxs_rows, true);
  set_dot(k, DType::IQ1_S, iq1_s_rows, true);
}

}  // namespace fathom::cpu::detail

#else  // not x86

namespace fathom::cpu::detail {
void install_iq_vbmi(Kernels&) {}
}  // namespace fathom::cpu::detail

#endif
