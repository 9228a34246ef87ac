// The few AMX tile operations the AMX kernels use (gemm_amx.cpp), behind one interface with two
// implementations: AmxTiles issues the instructions (Sapphire Rapids and later, after the
// process got the tile permission, isa.h); EmulatedTiles computes in C++ what Intel's ISA
// reference (SDM vol. 2, LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TDPBSUD, TILERELEASE)
// defines them to do. The kernels are templates over the implementation, so the same layout,
// blocking and epilogue code is tested on any AVX-512 CPU through the emulation.
//
// The architecture, palette 1: 8 tile registers tmm0..7 of up to 16 rows x 64 bytes; each
// tile's rows and bytes per row (colsb) come from the 64-byte configuration. A load reads
// `rows` rows of `colsb` bytes, `stride` bytes apart, and zeroes the rest of the register; a
// store writes them back. TDPBSUD C, A, B (A signed bytes, B unsigned bytes, C int32):
//   for m < C.rows, k < A.colsb / 4, n < C.colsb / 4:
//     C[m].dword[n] += sum_{i<4} sext(A[m].byte[4k + i]) * zext(B[k].byte[4n + i])
// with wrap-around int32 arithmetic, and requires A.colsb == 4 * B.rows, C.colsb == B.colsb,
// C.rows == A.rows and three distinct registers (#UD otherwise). So B holds K/4 rows of N
// columns of 4 consecutive K values: exactly the x16 layout's vector of 4 values of 16 rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "core/status.h"

#if defined(__x86_64__)
#include "backend/cpu/isa_targets.h"  // FATHOM_AMX
#endif

namespace fathom::cpu::detail {

constexpr int kTileRegisters = 8;   // tmm0..tmm7 (palette 1)
constexpr int kTileMaxRows = 16;
constexpr int kTileMaxColsb = 64;   // bytes per row

// The operand of LDTILECFG (palette 1); tiles 8..15 and the reserved bytes must stay zero.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;         // row to restart a faulted load/store at; 0
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};       // bytes per row of tile i
  uint8_t rows[16] = {};         // rows of tile i
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

#if defined(__x86_64__)

// Tile numbers are part of the instruction encoding (the intrinsics are assembler templates),
// so each operation expands a compile-time register number into its own instruction.
#define FATHOM_TILE_CASES(T, OP)      \
  if constexpr (T == 0) OP(0);        \
  else if constexpr (T == 1) OP(1);   \
  else if constexpr (T == 2) OP(2);   \
  else if constexpr (T == 3) OP(3);   \
  else if constexpr (T == 4) OP(4);   \
  else if constexpr (T == 5) OP(5);   \
  else if constexpr (T == 6) OP(6);   \
  else OP(7)

// GCC 12's intrinsics are asm statements that do not tell the compiler which memory they read
// or write (_tile_loadconfig names only the first 8 bytes of the configuration, _tile_loadd none
// of the tile, _tile_stored no output): without a barrier the compiler may leave the
// configuration half-written when LDTILECFG reads it (seen: SIGILL on the first TILELOADD), sink
// the stores of a B tile past its load, or read a stored tile before TILESTORED wrote it. Each
// operation is therefore fenced by a compiler-only memory barrier (no instruction is emitted).
#define FATHOM_COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")

struct AmxTiles {
  FATHOM_AMX void configure(const TileConfig& config) {
    FATHOM_COMPILER_BARRIER();
    _tile_loadconfig(&config);
    FATHOM_COMPILER_BARRIER();
  }
  template <int T>
  FATHOM_AMX void load(const void* base, int64_t stride) {
    FATHOM_COMPILER_BARRIER();
#define FATHOM_TILE_LOAD(i) _tile_loadd(i, base, stride)
    FATHOM_TILE_CASES(T, FATHOM_TILE_LOAD);
#undef FATHOM_TILE_LOAD
  }
  // load() with TILELOADDT1's hint that the data is not reused soon: a streamed operand then
  // leaves the reused one in L1.
  template <int T>
  FATHOM_AMX void stream_load(const void* base, int64_t stride) {
    FATHOM_COMPILER_BARRIER();
#define FATHOM_TILE_STREAM_LOAD(i) _tile_stream_loadd(i, base, stride)
    FATHOM_TILE_CASES(T, FATHOM_TILE_STREAM_LOAD);
#undef FATHOM_TILE_STREAM_LOAD
  }
  template <int T>
  FATHOM_AMX void store(void* base, int64_t stride) {
#define FATHOM_TILE_STORE(i) _tile_stored(i, base, stride)
    FATHOM_TILE_CASES(T, FATHOM_TILE_STORE);
#undef FATHOM_TILE_STORE
    FATHOM_COMPILER_BARRIER();
  }
  template <int T>
  FATHOM_AMX void zero() {
#define FATHOM_TILE_ZERO(i) _tile_zero(i)
    FATHOM_TILE_CASES(T, FATHOM_TILE_ZERO);
#undef FATHOM_TILE_ZERO
  }
  // C += A . B, signed A bytes, unsigned B bytes (the register pairs the kernels use).
  template <int C, int A, int B>
  FATHOM_AMX void dpbsud() {
    // tmm0/1 the sums of two blocks in flight, tmm2/3 their tokens, tmm4/5 their weights.
    static_assert(C < 2 && A == 2 + C && B == 4 + C, "add the register triple here");
    if constexpr (C == 0) _tile_dpbsud(0, 2, 4);
    else _tile_dpbsud(1, 3, 5);
  }
  // C += A . B, bf16 pairs, f32 sums (the BF16 path's register triples: tmm0..3 the sums of 2
  // token tiles x 2 groups, tmm4/5 the token tiles, tmm6/7 the groups).
  template <int C, int A, int B>
  FATHOM_AMX void dpbf16ps() {
    static_assert(C < 4 && A == 4 + C / 2 && B == 6 + C % 2, "add the register triple here");
    if constexpr (C == 0) _tile_dpbf16ps(0, 4, 6);
    else if constexpr (C == 1) _tile_dpbf16ps(1, 4, 7);
    else if constexpr (C == 2) _tile_dpbf16ps(2, 5, 6);
    else _tile_dpbf16ps(3, 5, 7);
  }
  FATHOM_AMX void release() { _tile_release(); }
};

#undef FATHOM_TILE_CASES
#undef FATHOM_COMPILER_BARRIER

#endif

// The same operations on an in-memory register file. A use the hardware rejects with #UD or
// #GP (bad configuration, shapes that do not chain, a register not configured) is a broken
// invariant here.
class EmulatedTiles {
 public:
  void configure(const TileConfig& config) {
    FATHOM_CHECK_MSG(config.palette == 1 && config.start_row == 0, "LDTILECFG: palette 1, start_row 0");
    for (uint8_t r : config.reserved) FATHOM_CHECK_MSG(r == 0, "LDTILECFG: reserved bytes must be zero");
    for (int t = 0; t < 16; ++t) {
      const bool used = t < kTileRegisters;
      FATHOM_CHECK_MSG(config.rows[t] <= (used ? kTileMaxRows : 0) && config.colsb[t] <= (used ? kTileMaxColsb : 0),
                       "LDTILECFG: a tile larger than palette 1 allows");
      FATHOM_CHECK_MSG((config.rows[t] == 0) == (config.colsb[t] == 0), "LDTILECFG: rows and colsb both set or both 0");
    }
    config_ = config;
    configured_ = true;
    std::memset(tmm_, 0, sizeof(tmm_));  // LDTILECFG zeroes every tile
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    uint8_t* t = tile(T);
    std::memset(t, 0, kTileMaxRows * kTileMaxColsb);
    for (int r = 0; r < config_.rows[T]; ++r)
      std::memcpy(t + r * kTileMaxColsb, static_cast<const uint8_t*>(base) + r * stride, config_.colsb[T]);
  }
  template <int T>
  void stream_load(const void* base, int64_t stride) {
    load<T>(base, stride);
  }
  template <int T>
  void store(void* base, int64_t stride) {
    const uint8_t* t = tile(T);
    for (int r = 0; r < config_.rows[T]; ++r)
      std::memcpy(static_cast<uint8_t*>(base) + r * stride, t + r * kTileMaxColsb, config_.colsb[T]);
  }
  template <int T>
  void zero() {
    std::memset(tile(T), 0, kTileMaxRows * kTileMaxColsb);
  }
  template <int C, int A, int B>
  void dpbsud() {
    static_assert(C != A && C != B && A != B, "TDPBSUD: three distinct registers");
    uint8_t* c = tile(C);
    const uint8_t* a = tile(A);
    const uint8_t* b = tile(B);
    const int m_rows = config_.rows[C], n_cols = config_.colsb[C] / 4, k_cols = config_.colsb[A] / 4;
    check_chain(C, A, B, "TDPBSUD");
    for (int m = 0; m < m_rows; ++m)
      for (int n = 0; n < n_cols; ++n) {
        uint32_t acc;
        std::memcpy(&acc, c + m * kTileMaxColsb + 4 * n, 4);
        for (int k = 0; k < k_cols; ++k)
          for (int i = 0; i < 4; ++i) {
            const int32_t sa = static_cast<int8_t>(a[m * kTileMaxColsb + 4 * k + i]);
            const int32_t ub = b[k * kTileMaxColsb + 4 * n + i];
            acc += static_cast<uint32_t>(sa * ub);  // products fit; the sum wraps like the hardware's
          }
        std::memcpy(c + m * kTileMaxColsb + 4 * n, &acc, 4);
      }
    clear_past_shape(C);
  }
  // TDPBF16PS C, A, B (SDM): for m < C.rows, k < A.colsb / 4, n < C.colsb / 4:
  //   C[m].fp32[n] += fp32(A[m].bf16[2k]) * fp32(B[k].bf16[2n]);
  //   C[m].fp32[n] += fp32(A[m].bf16[2k + 1]) * fp32(B[k].bf16[2n + 1])
  // with denormal inputs and results flushed to zero and round to nearest even; the products of
  // two bf16 values are exact in f32, so each step is one rounding. (The hardware's summation
  // order is not specified beyond this; tests compare it with a bound.)
  template <int C, int A, int B>
  void dpbf16ps() {
    static_assert(C != A && C != B && A != B, "TDPBF16PS: three distinct registers");
    uint8_t* c = tile(C);
    const uint8_t* a = tile(A);
    const uint8_t* b = tile(B);
    const int m_rows = config_.rows[C], n_cols = config_.colsb[C] / 4, k_cols = config_.colsb[A] / 4;
    check_chain(C, A, B, "TDPBF16PS");
    auto bf16 = [](const uint8_t* p) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      const uint32_t bits = (h & 0x7f80u) == 0 ? (static_cast<uint32_t>(h) & 0x8000u) << 16 : static_cast<uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    };
    auto ftz = [](float f) { return std::fabs(f) < std::numeric_limits<float>::min() ? std::copysign(0.0f, f) : f; };
    for (int m = 0; m < m_rows; ++m)
      for (int n = 0; n < n_cols; ++n) {
        float acc;
        std::memcpy(&acc, c + m * kTileMaxColsb + 4 * n, 4);
        acc = ftz(acc);
        for (int k = 0; k < k_cols; ++k)
          for (int i = 0; i < 2; ++i) {
            const float pa = bf16(a + m * kTileMaxColsb + 4 * k + 2 * i);
            const float pb = bf16(b + k * kTileMaxColsb + 4 * n + 2 * i);
            acc = ftz(acc + pa * pb);
          }
        std::memcpy(c + m * kTileMaxColsb + 4 * n, &acc, 4);
      }
    clear_past_shape(C);
  }
  void release() { configured_ = false; }

 private:
  // The shapes a dot product C += A . B needs (the hardware raises #UD otherwise).
  void check_chain(int c, int a, int b, const char* op) const {
    FATHOM_CHECK_MSG(config_.colsb[a] == 4 * config_.rows[b], std::string(op) + ": A.colsb != 4 * B.rows");
    FATHOM_CHECK_MSG(config_.colsb[c] == config_.colsb[b], std::string(op) + ": C.colsb != B.colsb");
    FATHOM_CHECK_MSG(config_.rows[c] == config_.rows[a], std::string(op) + ": C.rows != A.rows");
  }
  // write_row_and_zero, zero_upper_rows: after a dot product the bytes past C's shape are clear.
  void clear_past_shape(int t) {
    uint8_t* c = tmm_[t];
    for (int m = 0; m < kTileMaxRows; ++m) {
      const int keep = m < config_.rows[t] ? config_.colsb[t] : 0;
      std::memset(c + m * kTileMaxColsb + keep, 0, static_cast<size_t>(kTileMaxColsb - keep));
    }
  }

  uint8_t* tile(int t) {
    FATHOM_CHECK_MSG(configured_ && config_.rows[t] != 0, "tile instruction on a register the configuration leaves out");
    return tmm_[t];
  }

  TileConfig config_;
  bool configured_ = false;                                       // LDTILECFG done, no TILERELEASE since
  alignas(64) uint8_t tmm_[kTileRegisters][kTileMaxRows * kTileMaxColsb];  // tmm0..7, row r at 64 r
};

}  // namespace fathom::cpu::detail
