// The AMX path's pieces that need no AMX hardware: the emulated tile instructions against their
// definition in Intel's ISA reference, the choice of the CPU path from CPUID/XCR0 facts, the
// Linux permission and FATHOM_CPU_ISA (every fallback and error), and the CLI's handling of a
// forced path. The emulated kernels themselves are tested in gemm_test.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "../cli_util.h"
#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/vec_dot.h"

namespace fathom::cpu {
namespace {

using detail::EmulatedTiles;
using detail::TileConfig;

// TDPBSUD on a matrix product written out independently: C[m][n] += sum_k A[m][k] * B[k][n]
// with A signed (row m: K bytes), B unsigned stored as the ISA wants it (row k/4, byte 4n + k%4).
TEST(AmxTiles, DotProductFollowsTheIsaDefinition) {
  std::mt19937 rng(5);
  for (const auto& [m_rows, k_bytes, n_cols] : {std::tuple{16, 64, 16}, std::tuple{5, 32, 16}, std::tuple{3, 16, 7}}) {
    TileConfig cfg;
    cfg.rows[0] = static_cast<uint8_t>(m_rows), cfg.colsb[0] = static_cast<uint16_t>(4 * n_cols);  // C
    cfg.rows[2] = static_cast<uint8_t>(m_rows), cfg.colsb[2] = static_cast<uint16_t>(k_bytes);     // A
    cfg.rows[4] = static_cast<uint8_t>(k_bytes / 4), cfg.colsb[4] = static_cast<uint16_t>(4 * n_cols);  // B
    std::vector<int8_t> a(static_cast<size_t>(m_rows * 100));  // stride 100
    std::vector<uint8_t> b(static_cast<size_t>(k_bytes / 4 * 80));  // stride 80
    for (int8_t& v : a) v = static_cast<int8_t>(rng());
    for (uint8_t& v : b) v = static_cast<uint8_t>(rng());
    a[0] = -128, b[0] = 255;  // the extremes: sign extension of A, zero extension of B
    std::vector<int32_t> c0(static_cast<size_t>(m_rows * n_cols)), c(static_cast<size_t>(m_rows * 16), 77);
    for (int32_t& v : c0) v = static_cast<int32_t>(rng() % 2001) - 1000;
    c0[0] = INT32_MAX;  // the sum wraps around
    EmulatedTiles tiles;
    tiles.configure(cfg);
    tiles.load<0>(c0.data(), 4 * n_cols);
    tiles.load<2>(a.data(), 100);
    tiles.load<4>(b.data(), 80);
    tiles.dpbsud<0, 2, 4>();
    tiles.store<0>(c.data(), 64);
    for (int m = 0; m < m_rows; ++m)
      for (int n = 0; n < 16; ++n) {
        if (n >= n_cols) {
          EXPECT_EQ(c[static_cast<size_t>(m * 16 + n)], 77) << "store wrote past colsb";
          continue;
        }
        int64_t want = c0[static_cast<size_t>(m * n_cols + n)];
        for (int k = 0; k < k_bytes; ++k) want += int64_t{a[static_cast<size_t>(m * 100 + k)]} * b[static_cast<size_t>(k / 4 * 80 + 4 * n + k % 4)];
        EXPECT_EQ(c[static_cast<size_t>(m * 16 + n)], static_cast<int32_t>(static_cast<uint32_t>(want))) << m << " " << n;
      }
  }
}

// Stores write exactly the configured rows x colsb; LDTILECFG and TILEZERO clear a tile.
TEST(AmxTiles, StoresWriteTheShapeAndConfigurationZeroes) {
  TileConfig cfg;
  cfg.rows[1] = 2, cfg.colsb[1] = 8;
  EmulatedTiles tiles;
  tiles.configure(cfg);
  const std::vector<uint8_t> src(64 * 16, 0xab);
  auto stored = [&](uint8_t inside) {
    std::vector<uint8_t> out(64 * 16, 0x11);
    tiles.store<1>(out.data(), 64);
    for (int r = 0; r < 16; ++r)
      for (int c = 0; c < 64; ++c) ASSERT_EQ(out[static_cast<size_t>(r * 64 + c)], r < 2 && c < 8 ? inside : 0x11) << r << " " << c;
  };
  stored(0);
  tiles.load<1>(src.data(), 64);
  stored(0xab);
  tiles.zero<1>();
  stored(0);
}

void unchained_product(const TileConfig& cfg) {
  EmulatedTiles tiles;
  tiles.configure(cfg);
  tiles.dpbsud<0, 2, 4>();
}

void unconfigured_register(const TileConfig& cfg) {
  EmulatedTiles tiles;
  tiles.configure(cfg);
  tiles.zero<5>();
}

TEST(AmxTilesDeathTest, ShapesThatDoNotChainAreRejected) {
  TileConfig cfg;
  cfg.rows[0] = 4, cfg.colsb[0] = 64;
  cfg.rows[2] = 4, cfg.colsb[2] = 32;
  cfg.rows[4] = 4, cfg.colsb[4] = 64;  // A.colsb 32 needs B.rows 8
  EXPECT_DEATH(unchained_product(cfg), "A.colsb != 4 \\* B.rows");
  EXPECT_DEATH(unconfigured_register(cfg), "configuration leaves out");
}

IsaFeatures avx512_cpu() {
  IsaFeatures f;
  f.avx2 = f.avx512 = true;
  return f;
}

IsaFeatures amx_cpu() {
  IsaFeatures f = avx512_cpu();
  f.amx_tile = f.amx_int8 = f.amx_bf16 = f.avx512_bf16 = f.avx512_vbmi = f.os_tile_state = true;
  return f;
}

Status granted() { return Status::ok(); }
Status refused() { return error(ErrorCode::kUnavailable, "the kernel refused the AMX tile state (test)"); }
Status must_not_ask() {
  ADD_FAILURE() << "the tile permission was requested for a path that does not use tiles";
  return Status::ok();
}

TEST(IsaChoice, WidestPathWithReasonsForWhatIsMissing) {
  Expected<IsaChoice> c = choose_isa(IsaFeatures{}, "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kGeneric);
  EXPECT_NE(c->why.find("AVX-512"), std::string::npos) << c->why;

  c = choose_isa(avx512_cpu(), "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx512);
  EXPECT_NE(c->why.find("CPUID reports no AMX"), std::string::npos) << c->why;

  IsaFeatures no_os = amx_cpu();
  no_os.os_tile_state = false;
  c = choose_isa(no_os, "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx512);
  EXPECT_NE(c->why.find("XCR0"), std::string::npos) << c->why;

  IsaFeatures no_bf16 = amx_cpu();  // tiles without the BF16 half: the BF16 path cannot run
  no_bf16.avx512_bf16 = false;
  c = choose_isa(no_bf16, "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx512);
  EXPECT_NE(c->why.find("AVX512_BF16"), std::string::npos) << c->why;

  IsaFeatures no_vbmi = amx_cpu();  // the AMX table's IQ2_XXS and IQ1_S rows use VBMI byte permutes
  no_vbmi.avx512_vbmi = false;
  c = choose_isa(no_vbmi, "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx512);
  EXPECT_NE(c->why.find("AVX512_VBMI"), std::string::npos) << c->why;

  IsaFeatures no_avx512 = amx_cpu();
  no_avx512.avx512 = false;
  c = choose_isa(no_avx512, "", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx2);

  c = choose_isa(amx_cpu(), "", refused);  // the kernel says no: AVX-512, with its reason
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx512);
  EXPECT_NE(c->why.find("refused"), std::string::npos) << c->why;

  c = choose_isa(amx_cpu(), "", granted);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAmx);
  EXPECT_EQ(c->why, "");
}

TEST(IsaChoice, ForcedPathsAreHonouredOrRefused) {
  Expected<IsaChoice> c = choose_isa(amx_cpu(), "avx2", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAvx2);
  EXPECT_NE(c->why.find("FATHOM_CPU_ISA=avx2"), std::string::npos);
  c = choose_isa(amx_cpu(), "amx", granted);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kAmx);
  c = choose_isa(avx512_cpu(), "generic", must_not_ask);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->isa, Isa::kGeneric);

  c = choose_isa(avx512_cpu(), "amx", must_not_ask);  // no AMX: an error, never a quiet downgrade
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(c.status().message().find("FATHOM_CPU_ISA=amx"), std::string::npos) << c.status().message();
  c = choose_isa(amx_cpu(), "amx", refused);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("refused"), std::string::npos) << c.status().message();
  IsaFeatures avx2_only;
  avx2_only.avx2 = true;
  c = choose_isa(avx2_only, "avx512", must_not_ask);
  ASSERT_FALSE(c);
  EXPECT_NE(c.status().message().find("at most avx2"), std::string::npos) << c.status().message();
  c = choose_isa(amx_cpu(), "sse4", must_not_ask);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("generic, avx2, avx512, amx"), std::string::npos) << c.status().message();
}

// This machine: the chosen path agrees with CPUID, and without AMX the AVX-512 table (which
// every other kernel test exercises) is the one in use.
TEST(IsaChoice, ThisMachineFallsBackCleanly) {
  const IsaFeatures f = detect_isa_features();
  const IsaChoice& hw = hardware_isa();
  if (!(f.avx512 && f.amx_tile && f.amx_int8 && f.os_tile_state)) {
    EXPECT_NE(hw.isa, Isa::kAmx);
    EXPECT_FALSE(isa_supported(Isa::kAmx));
    EXPECT_NE(hw.why, "");
    if (f.avx512) {
      EXPECT_EQ(best_isa(), Isa::kAvx512);
    }
  }
  EXPECT_EQ(vector_isa(Isa::kAmx), Isa::kAvx512);
  EXPECT_EQ(kernels_for(best_isa()).isa, best_isa());
}

// The CLI refuses a forced path the CPU lacks and a name it does not know before any command
// runs (exit 2, a message naming the variable), and `fathom devices` reports a forced path.
TEST(IsaChoice, CliHonoursFathomCpuIsa) {
  auto fathom = [](const std::string& isa, const std::string& args) {
    return test::run_command("FATHOM_CPU_ISA=" + isa + " " + std::string(FATHOM_BIN_PATH) + " " + args + " 2>&1");
  };
  if (!isa_supported(Isa::kAmx)) {
    const test::CmdResult r = fathom("amx", "devices --help");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("FATHOM_CPU_ISA=amx, but"), std::string::npos) << r.output;
  }
  test::CmdResult r = fathom("avx9", "devices --help");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("is not one of"), std::string::npos) << r.output;
  r = fathom("generic", "devices --no-bench");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("kernels   generic (forced by FATHOM_CPU_ISA=generic)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("generic kernels on"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fathom::cpu
