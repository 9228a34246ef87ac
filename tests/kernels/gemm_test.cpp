// The repacked-weight matmul (backend/cpu/gemm.h, repack.h): every ISA's kernel bit-exact with
// the scalar reference tile product, the activation quantizers bit-exact with theirs, results
// against float dot products of the dequantized weights, and batch invariance through matmul.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "backend/cpu/activations.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/vec_dot.h"
#include "quant/quant.h"

namespace fathom::cpu {
namespace {

struct Matrix {
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // dequantized [n_out, n]
  TensorView view;
};

Matrix make_matrix(DType t, int64_t n_out, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  Matrix m;
  const size_t row = row_size(t, n);
  m.bytes.resize(row * static_cast<size_t>(n_out));
  m.deq.resize(static_cast<size_t>(n_out * n));
  std::vector<float> src(static_cast<size_t>(n));
  for (int64_t r = 0; r < n_out; ++r) {
    for (float& v : src) v = dist(rng);
    quant::quantize_row_ref(t, src.data(), m.bytes.data() + row * static_cast<size_t>(r), n);
    quant::dequantize_row(t, m.bytes.data() + row * static_cast<size_t>(r), m.deq.data() + r * n, n);
  }
  m.view.dtype = t;
  m.view.ne = {n, n_out, 1, 1};
  m.view.n_dims = 2;
  m.view.data = m.bytes.data();
  return m;
}

std::vector<float> tokens(int64_t n_tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n_tokens * n));
  for (float& v : x) v = dist(rng);
  return x;
}

const DType kRepacked[] = {DType::Q4_0,  DType::Q5_0,   DType::Q8_0,  DType::Q4_K,  DType::Q5_K,
                           DType::Q6_K,  DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0,
                           DType::F16,   DType::BF16,   DType::F32};

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512, Isa::kAmx})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

// y from the scalar reference: GGUF rows -> reference tile -> gemm_int_generic.
std::vector<float> reference_product(const Matrix& m, const std::vector<float>& x, int64_t n_tok) {
  const int64_t n = m.view.ne[0], n_out = m.view.ne[1], block = gemm_block(m.view.dtype);
  if (block == 0) {
    std::vector<float> y(static_cast<size_t>(n_tok * n_out));
    gemm_float_reference(m.view, x.data(), n_tok, y.data(), n_out);
    return y;
  }
  const int64_t nb = n / block;
  std::vector<int8_t> q(static_cast<size_t>(n_tok * n));
  std::vector<float> xd(static_cast<size_t>(n_tok * nb)), xs(xd.size());
  gemm_quantize_activations(x.data(), n_tok, n, block, q.data(), xd.data(), xs.data());
  const GemmActivations act{q.data(), xd.data(), xs.data(), n_tok, n, block};
  std::vector<float> y(static_cast<size_t>(n_tok * n_out));
  std::vector<uint8_t> buf(gemm_tile_bytes(m.view.dtype, n) + 64);
  for (int64_t r0 = 0; r0 < n_out; r0 += kGemmRows) {
    GemmIntTile tile;
    const int64_t rows = std::min(kGemmRows, n_out - r0);
    gemm_unpack_tile(m.view, r0, rows, buf.data(), &tile);
    detail::gemm_int_generic(tile, act, rows, y.data() + r0, n_out);
  }
  return y;
}

TEST(Gemm, BlockSizes) {
  EXPECT_EQ(gemm_block(DType::Q6_K), 16);
  EXPECT_EQ(gemm_block(DType::Q4_K), 32);
  EXPECT_EQ(gemm_block(DType::Q4_0), 32);
  EXPECT_EQ(gemm_block(DType::F16), 0);
  for (DType t : kRepacked) EXPECT_TRUE(repackable(t)) << dtype_name(t);
  EXPECT_FALSE(repackable(DType::Q5_1));
  EXPECT_TRUE(repackable(DType::F16));
}

// Every ISA's kernel on repacked weights gives exactly the reference's floats, for row counts
// that leave a partial group and token counts that leave partial token groups.
TEST(Gemm, EveryIsaIsBitExactWithReference) {
  ThreadPool pool(2);
  const int64_t n = 512, n_out = 37;
  for (DType t : kRepacked) {
    const Matrix m = make_matrix(t, n_out, n, 7);
    const RepackedMatrix packed = repack(m.view, &pool);
    ASSERT_NE(packed.data, nullptr);
    for (int64_t n_tok : {1, 3, 8, 13, 17}) {
      const std::vector<float> x = tokens(n_tok, n, 11);
      const std::vector<float> want = reference_product(m, x, n_tok);
      for (Isa isa : available_isas()) {
        std::vector<float> got(want.size(), -2.f);
        GemmScratch scratch;
        gemm(pool, kernels_for(isa), packed, x.data(), n_tok, got.data(), scratch);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << dtype_name(t) << " " << isa_name(isa) << " tokens " << n_tok << " index " << i;
      }
    }
  }
}

// The AMX kernels with the tile instructions emulated (amx_tiles.h): the same layout, blocking
// and epilogue as on Sapphire Rapids, bit-exact with the reference for every repacked type, row
// counts leaving partial groups, K of 1, 3 and 17 blocks (odd counts end the two-block pipeline
// early), and token counts below the AMX threshold (the AVX-512 kernels), at it (one tile), a
// tile plus a remainder tile, and up to the BF16 threshold.
TEST(Gemm, EmulatedAmxIsBitExactWithReference) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "the AMX kernels' epilogue is AVX-512";
  ThreadPool pool(2);
  const Kernels& amx = amx_emulated_kernels();
  struct Shape {
    int64_t n, n_out;
  };
  for (DType t : kRepacked) {
    const int64_t super = gemm_block(t) == 0 || traits(t).block_size == 32 ? 32 : 256;
    for (const Shape shape : {Shape{super, 5}, Shape{3 * super, 37}, Shape{super == 32 ? 544 : 512, 16}}) {
      const Matrix m = make_matrix(t, shape.n_out, shape.n, 31);
      const RepackedMatrix packed = repack(m.view, &pool);
      ASSERT_NE(packed.data, nullptr);
      for (int64_t n_tok : {1, 7, 15, 16, 17, 20, 31, 33, 48, 63}) {  // the integer tiles: kAmxMinTokens .. kAmxBf16MinTokens - 1
        ASSERT_LT(n_tok, kAmxBf16MinTokens);
        const std::vector<float> x = tokens(n_tok, shape.n, 12);
        const std::vector<float> want = reference_product(m, x, n_tok);
        std::vector<float> got(want.size(), -2.f);
        GemmScratch scratch;
        gemm(pool, amx, packed, x.data(), n_tok, got.data(), scratch);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << dtype_name(t) << " n " << shape.n << " rows " << shape.n_out << " tokens " << n_tok
                                     << " index " << i;
      }
    }
  }
}

// The float product of m's dequantized row r and token tk of x, and sum_i |w_i x_i| in mag.
double float_product(const Matrix& m, const std::vector<float>& x, int64_t tk, int64_t r, double& mag) {
  const int64_t n = m.view.ne[0];
  double sum = 0;
  mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double p = static_cast<double>(m.deq[static_cast<size_t>(r * n + i)]) * x[static_cast<size_t>(tk * n + i)];
    sum += p;
    mag += std::fabs(p);
  }
  return sum;
}

// The BF16 paths' checks: y [n_tok, rows] within 2^-7 * sum_i |w_i x_i| + 1e-6 of the float
// product of m's dequantized rows, and y64 (the first kAmxBf16MinTokens tokens alone) equal to
// y's first rows. Returns sum_i |w_i x_i| per output.
std::vector<double> expect_bf16_bound(const Matrix& m, const std::vector<float>& x, int64_t n_tok, const std::vector<float>& y,
                                      const std::vector<float>& y64, const std::string& what) {
  const int64_t n_out = m.view.ne[1];
  std::vector<double> mags(static_cast<size_t>(n_tok * n_out));
  for (int64_t tk = 0; tk < n_tok; ++tk)
    for (int64_t r = 0; r < n_out; ++r) {
      double mag = 0;
      const double want = float_product(m, x, tk, r, mag);
      const size_t at = static_cast<size_t>(tk * n_out + r);
      mags[at] = mag;
      EXPECT_NEAR(y[at], want, mag / 128 + 1e-6) << what << " token " << tk << " row " << r;
      if (tk < kAmxBf16MinTokens) {
        EXPECT_EQ(y64[at], y[at]) << what << " token " << tk << " row " << r;
      }
      if (::testing::Test::HasFailure()) return mags;
    }
  return mags;
}

// The BF16 tile path (kAmxBf16MinTokens or more tokens on the AMX table): weights (scale * u +
// corr, or f16/bf16) and tokens rounded to bf16, products summed in f32 by TDPBF16PS. It is not
// bit-exact with the integer reference; the bound: every output is within
// 2^-7 * sum_i |w_i x_i| + 1e-6 of the float product of the dequantized weights (two bf16
// roundings, relative error <= 2^-9 each, and f32 sums). Also: the real tile instructions agree
// with the emulated TDPBF16PS (amx_tiles.h, the SDM's order) to 2^-16 * sum_i |w_i x_i| (the
// hardware sums in another order: on a Sapphire Rapids-class Xeon the two differ in the last
// bits), and a token's result does not depend on the rest of its batch (kAmxBf16MinTokens tokens
// alone = the first kAmxBf16MinTokens of kAmxBf16MinTokens + 13, bit for bit). Q8_0, Q4_K and F16
// also run on one thread, so one range call takes all the groups: 300 rows of 1536 values (3
// slices of 512, group batches of 16 + 3), 150 rows of 1280 values (a last slice of 256, one
// batch of 10) and 300 rows of 2560 values (10 chunks of 256, batches of 16 + 3).
TEST(Gemm, AmxBf16PathIsWithinBoundAndMatchesEmulation) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "the AMX kernels' epilogue is AVX-512";
  ThreadPool two(2), one(1);
  std::vector<const Kernels*> tables = {&amx_emulated_kernels()};
  if (isa_supported(Isa::kAmx)) tables.push_back(&kernels_for(Isa::kAmx));
  struct Case {
    DType t;
    int64_t n, n_out;
  };
  std::vector<Case> cases;
  for (DType t : kRepacked)
    if (t != DType::F32) cases.push_back({t, 512, 37});  // f32 weights keep the AVX-512 kernel
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::F16}) {
    cases.push_back({t, 1536, 300});
    cases.push_back({t, 1280, 150});
    cases.push_back({t, 2560, 300});
  }
  for (const auto& [t, n, n_out] : cases) {
    const bool big = n_out > 37;
    ThreadPool& pool = big ? one : two;
    ASSERT_TRUE(gemm_takes_bf16(t, n, kAmxBf16MinTokens)) << dtype_name(t);
    const Matrix m = make_matrix(t, n_out, n, 41);
    const RepackedMatrix packed = repack(m.view, &pool);
    ASSERT_NE(packed.data, nullptr);
    const int64_t n_tok = kAmxBf16MinTokens + 13;
    const std::vector<float> x = tokens(n_tok, n, 42);
    std::vector<std::vector<float>> results;
    std::vector<double> mags(static_cast<size_t>(n_tok * n_out));
    for (const Kernels* k : tables) {
      std::vector<float> y(static_cast<size_t>(n_tok * n_out), -2.f), y64(static_cast<size_t>(kAmxBf16MinTokens * n_out), -3.f);
      GemmScratch scratch;
      gemm(pool, *k, packed, x.data(), n_tok, y.data(), scratch);
      gemm(pool, *k, packed, x.data(), kAmxBf16MinTokens, y64.data(), scratch);
      mags = expect_bf16_bound(m, x, n_tok, y, y64,
                               std::string(dtype_name(t)) + " " + std::to_string(n_out) + "x" + std::to_string(n) +
                                   (k == tables[0] ? " emulated" : " amx"));
      results.push_back(std::move(y));
    }
    if (results.size() == 2) {
      for (size_t i = 0; i < results[0].size(); ++i)
        ASSERT_NEAR(results[1][i], results[0][i], std::ldexp(mags[i], -16)) << dtype_name(t) << ": real AMX vs emulated, index " << i;
    }
  }
}

// The fused SwiGLU FFN (gemm_swiglu: the activation in the gate/up epilogue, written as the down
// product's bf16 token tiles) gives the bits of the unfused form on the same table: gemm(gate),
// gemm(up), then the down product with the activation in its token conversion (GemmJob::up).
// 77 tokens (a padded last tile), on 2 threads and on 1 (one range call over all row groups);
// 512-value rows (one slice) with n_ff = 1536 (the down's 3 slices) and 2560-value rows (the
// chunked loop) with n_ff = 96 (3 row-group pairs, an odd count); mixed types as in Q4_K_M files.
TEST(Gemm, AmxSwigluFusionMatchesTheUnfusedProducts) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "the AMX kernels are AVX-512 code";
  ThreadPool two(2), one(1);
  std::vector<const Kernels*> tables = {&amx_emulated_kernels()};
  if (isa_supported(Isa::kAmx)) tables.push_back(&kernels_for(Isa::kAmx));
  struct Case {
    DType gate_up, down;
    int64_t n, n_ff;
  };
  for (const Case& c : {Case{DType::Q8_0, DType::Q8_0, 512, 1536}, Case{DType::Q4_K, DType::Q6_K, 512, 1536},
                        Case{DType::Q4_0, DType::Q5_0, 2560, 96}, Case{DType::F16, DType::Q8_0, 512, 1536}}) {
    const Matrix gate = make_matrix(c.gate_up, c.n_ff, c.n, 51), up = make_matrix(c.gate_up, c.n_ff, c.n, 52);
    const Matrix down = make_matrix(c.down, 64, c.n_ff, 53);
    const int64_t n_tok = kAmxBf16MinTokens + 13;
    const std::vector<float> x = tokens(n_tok, c.n, 54);
    for (ThreadPool* pool : {&two, &one}) {
      const RepackedMatrix g = repack(gate.view, pool), u = repack(up.view, pool), d = repack(down.view, pool);
      for (const Kernels* k : tables) {
        const std::string what = std::string(dtype_name(c.gate_up)) + "/" + dtype_name(c.down) + " n " +
                                 std::to_string(c.n) + (k == tables[0] ? " emulated" : " amx") + " threads " +
                                 std::to_string(pool->n_threads());
        ASSERT_TRUE(gemm_swiglu_fuses(*k, g, u, d, n_tok)) << what;
        EXPECT_FALSE(gemm_swiglu_fuses(*k, g, u, d, kAmxBf16MinTokens - 1)) << what << ": below the BF16 path";
        std::vector<float> yg(static_cast<size_t>(n_tok * c.n_ff)), yu(yg.size());
        std::vector<float> want(static_cast<size_t>(n_tok * 64), -1.f), got(want.size(), -2.f);
        GemmScratch s[2];
        gemm(*pool, *k, g, x.data(), n_tok, yg.data(), s[0]);
        gemm(*pool, *k, u, x.data(), n_tok, yu.data(), s[1]);
        GemmJob job{&d, yg.data(), n_tok, want.data()};
        job.up = yu.data();
        gemm_many(*pool, *k, &job, 1, &s[0]);
        gemm_swiglu(*pool, *k, g, u, d, x.data(), n_tok, got.data(), s);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << what << " index " << i;
      }
    }
  }
}

// Types without an x16 layout (the codebook i-quants, Q2_K/Q3_K, ...) and every type when it is
// not repacked: with kAmxBf16MinTokens or more tokens, cpu::matmul on the AMX table dequantizes
// 16 rows at a time to bf16 tiles (Kernels::gemm_rows_bf16). Same bound as the BF16 path above,
// against the float product of the dequantized rows; rows past a 16-row group edge (37 rows) and
// rows of several chunks (n = 2560: 10 of 256 values) included; a token's result equals
// its result in a batch of exactly kAmxBf16MinTokens.
TEST(Gemm, AmxBf16RowPathIsWithinBound) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "the AMX kernels are AVX-512 code";
  ThreadPool pool(2);
  std::vector<const Kernels*> tables = {&amx_emulated_kernels()};
  if (isa_supported(Isa::kAmx)) tables.push_back(&kernels_for(Isa::kAmx));
  const int64_t n_out = 37;
  for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M,
                  DType::Q2_K, DType::Q3_K, DType::Q4_0, DType::F16}) {
    const int64_t n = t == DType::IQ2_XXS ? 2560 : 512;
    const Matrix m = make_matrix(t, n_out, n, 43);
    const int64_t n_tok = kAmxBf16MinTokens + 13;
    const std::vector<float> x = tokens(n_tok, n, 44);
    for (const Kernels* k : tables) {
      ASSERT_NE(k->gemm_rows_bf16, nullptr);
      std::vector<float> y(static_cast<size_t>(n_tok * n_out), -2.f), y64(static_cast<size_t>(kAmxBf16MinTokens * n_out), -3.f);
      MatmulScratch scratch;
      matmul(pool, *k, m.view, x.data(), n_tok, y.data(), scratch, nullptr);
      matmul(pool, *k, m.view, x.data(), kAmxBf16MinTokens, y64.data(), scratch, nullptr);
      expect_bf16_bound(m, x, n_tok, y, y64, std::string(dtype_name(t)) + (k == tables[0] ? " emulated" : " amx"));
    }
  }
}

TEST(Gemm, ActivationQuantizersAreBitExact) {
  for (int64_t block : {32, 16}) {
    std::vector<float> x = tokens(5, 1024, 4);
    x[3] = 0.0f;
    for (int i = 64; i < 96; ++i) x[static_cast<size_t>(i)] = 0.0f;  // an all-zero block
    std::vector<int8_t> q0(x.size()), q1(x.size());
    std::vector<float> d0(x.size() / 16), s0(d0.size()), d1(d0.size()), s1(d0.size());
    gemm_quantize_activations(x.data(), 5, 1024, block, q0.data(), d0.data(), s0.data());
    for (Isa isa : available_isas()) {
      kernels_for(isa).quantize_gemm(x.data(), 5, 1024, block, q1.data(), d1.data(), s1.data());
      const size_t nb = static_cast<size_t>(5 * 1024 / block);
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(q0[i], q1[i]) << isa_name(isa) << " " << i;
      for (size_t i = 0; i < nb; ++i) {
        ASSERT_EQ(d0[i], d1[i]) << isa_name(isa) << " " << i;
        ASSERT_EQ(s0[i], s1[i]) << isa_name(isa) << " " << i;
      }
    }
  }
}

// The whole path against float dot products of the dequantized weights: the only error is the
// 8-bit rounding of the activations.
TEST(Gemm, MatchesFloatReference) {
  ThreadPool pool(2);
  const int64_t n = 768, n_out = 50, n_tok = 9;
  for (DType t : kRepacked) {
    const Matrix m = make_matrix(t, n_out, n, 3);
    const RepackedMatrix packed = repack(m.view, &pool);
    const std::vector<float> x = tokens(n_tok, n, 5);
    std::vector<float> y(static_cast<size_t>(n_tok * n_out));
    GemmScratch scratch;
    gemm(pool, best_kernels(), packed, x.data(), n_tok, y.data(), scratch);
    for (int64_t tk = 0; tk < n_tok; ++tk)
      for (int64_t r = 0; r < n_out; ++r) {
        double mag = 0;
        const double ref = float_product(m, x, tk, r, mag);
        const double tol = gemm_block(t) == 0 ? 1e-6 * mag + 1e-6 : 1e-2 * mag + 1e-6;
        ASSERT_NEAR(y[static_cast<size_t>(tk * n_out + r)], ref, tol) << dtype_name(t) << " token " << tk << " row " << r;
      }
  }
}

// Reference tiles hold exactly the dequantized weights (scale * u + corr), from the GGUF rows
// and from the repacked groups alike.
TEST(Gemm, TilesReproduceDequantizedWeights) {
  ThreadPool pool(1);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                 DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0, DType::TQ2_0}) {
    const int64_t n = 512, n_out = 20;
    const Matrix m = make_matrix(t, n_out, n, 9);
    std::vector<uint8_t> buf(gemm_tile_bytes(t, n) + 64), buf2(buf.size());
    GemmIntTile tile;
    gemm_unpack_tile(m.view, 16, 4, buf.data(), &tile);  // rows 16..19, 12 zero rows
    const int64_t groups = tile.block / 4;
    auto check = [&](const GemmIntTile& tl, const char* what) {
      for (int64_t r = 0; r < kGemmRows; ++r)
        for (int64_t i = 0; i < n; ++i) {
          const int64_t b = i / tl.block, g = (i % tl.block) / 4, k = i % 4;
          const float u = tl.u[((b * groups + g) * kGemmRows + r) * 4 + k];
          const float v = tl.scale[b * kGemmRows + r] * u + tl.corr[b * kGemmRows + r];
          const float want = r < 4 ? m.deq[static_cast<size_t>((16 + r) * n + i)] : 0.0f;
          ASSERT_NEAR(v, want, 1e-6f * (1.0f + std::fabs(want))) << dtype_name(t) << " " << what << " row " << r << " value " << i;
        }
    };
    check(tile, "gguf rows");
    if (repackable(t) && gemm_block(t) != 0) {
      const RepackedMatrix packed = repack(m.view, &pool);
      GemmIntTile tile2;
      x16_group_to_tile(t, packed.group(1), n, buf2.data(), &tile2);
      check(tile2, "repacked");
    }
  }
}

// Through cpu::matmul: a token's row of y is bit-identical whether it is alone or in a batch
// (repacked types), so serving many sequences together does not change any one of them.
TEST(Gemm, MatmulIsBatchInvariant) {
  ThreadPool pool(2);
  const int64_t n = 1024, n_out = 64, n_tok = 13;
  std::vector<const Kernels*> tables;
  for (Isa isa : available_isas()) tables.push_back(&kernels_for(isa));  // AVX2 forced included: CPUs without AVX-512
  if (isa_supported(Isa::kAvx512)) tables.push_back(&amx_emulated_kernels());  // 13 tokens: one AMX remainder tile
  for (const Kernels* k : tables) {
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q5_1, DType::IQ4_NL, DType::IQ4_XS,
                    DType::TQ1_0, DType::TQ2_0, DType::F16, DType::BF16}) {
      const Matrix m = make_matrix(t, n_out, n, 21);
      const std::vector<float> x = tokens(n_tok, n, 22);
      std::vector<float> big(static_cast<size_t>(n_tok * n_out)), small(big.size());
      MatmulScratch scratch;
      RepackCache cache;
      matmul(pool, *k, m.view, x.data(), n_tok, big.data(), scratch, &cache);
      for (int64_t tk = 0; tk < n_tok; ++tk)
        matmul(pool, *k, m.view, x.data() + tk * n, 1, small.data() + tk * n_out, scratch, &cache);
      for (size_t i = 0; i < big.size(); ++i) ASSERT_EQ(big[i], small[i]) << dtype_name(t) << " " << isa_name(k->isa) << " " << i;
    }
  }
}

// The SwiGLU fused into the down projection's token conversion (GemmJob::up, matmul_swiglu):
// bit for bit the product of the activation computed first by the same kernel, on every table
// (the integer paths at 1 and 13 tokens, the AMX BF16 path at 70, the emulated tiles included),
// for the quantized types, with gate and up left as they were; float weights are refused (the
// caller's unfused form runs).
TEST(Gemm, FusedSwigluEqualsSwigluThenMatmul) {
  ThreadPool pool(2);
  const int64_t n = 512, n_out = 37;
  std::vector<const Kernels*> tables;
  for (Isa isa : available_isas()) tables.push_back(&kernels_for(isa));
  if (isa_supported(Isa::kAvx512)) tables.push_back(&amx_emulated_kernels());
  for (const Kernels* k : tables) {
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::IQ4_XS}) {
      const Matrix m = make_matrix(t, n_out, n, 61);
      for (int64_t n_tok : {int64_t{1}, int64_t{13}, kAmxBf16MinTokens + 6}) {
        const std::vector<float> gate = tokens(n_tok, n, 62), up = tokens(n_tok, n, 63);
        std::vector<float> h(gate.size()), want(static_cast<size_t>(n_tok * n_out)), got(want.size(), -5.f);
        swiglu_kernel(vector_isa(k->isa))(gate.data(), up.data(), n_tok * n, h.data());
        MatmulScratch scratch;
        RepackCache cache;
        matmul(pool, *k, m.view, h.data(), n_tok, want.data(), scratch, &cache);
        const std::vector<float> gate_before = gate;
        if (!k->gemm_is_simd) {
          EXPECT_FALSE(matmul_swiglu(pool, *k, m.view, gate.data(), up.data(), n_tok, got.data(), scratch, &cache));
          continue;
        }
        ASSERT_TRUE(matmul_swiglu(pool, *k, m.view, gate.data(), up.data(), n_tok, got.data(), scratch, &cache));
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << dtype_name(t) << " " << isa_name(k->isa) << " " << n_tok << " tokens, value " << i;
        EXPECT_EQ(gate, gate_before);
      }
    }
    const Matrix f = make_matrix(DType::F16, n_out, n, 64);
    const std::vector<float> gate = tokens(2, n, 65), up = tokens(2, n, 66);
    std::vector<float> y(static_cast<size_t>(2 * n_out));
    MatmulScratch scratch;
    RepackCache cache;
    EXPECT_FALSE(matmul_swiglu(pool, *k, f.view, gate.data(), up.data(), 2, y.data(), scratch, &cache)) << isa_name(k->isa);
  }
}

// gemm_many hands each thread a contiguous share of all jobs' groups and lets it take pairs from
// the others' once done: whatever the threads and the shares' bounds (odd group counts, a job
// ending inside a share), every row of every job is computed once and equals one thread's result.
TEST(Gemm, ManyJobsOverThreadSharesCoverEveryRow) {
  const int64_t n = 256;
  const int64_t rows[] = {16 * 7 + 5, 16 * 3, 16 * 11 + 1, 9};
  std::vector<Matrix> mats;
  std::vector<RepackedMatrix> packed;
  ThreadPool one(1);
  for (int64_t r : rows) {
    mats.push_back(make_matrix(DType::Q4_0, r, n, static_cast<uint32_t>(r)));
    packed.push_back(repack(mats.back().view, &one));
  }
  const Kernels& k = best_kernels();
  for (int64_t n_tok : {1, 3}) {
    const std::vector<float> x = tokens(n_tok, n, 5);
    for (int threads : {1, 2, 3, 5}) {
      ThreadPool pool(threads);
      std::vector<std::vector<float>> y(packed.size());
      std::vector<GemmJob> jobs;
      for (size_t j = 0; j < packed.size(); ++j) {
        y[j].assign(static_cast<size_t>(n_tok * packed[j].n_rows), std::nanf(""));  // a skipped row stays NaN
        jobs.push_back({&packed[j], x.data(), n_tok, y[j].data()});
      }
      std::vector<GemmScratch> scratch(jobs.size());
      gemm_many(pool, k, jobs.data(), jobs.size(), scratch.data());
      for (size_t j = 0; j < packed.size(); ++j) {
        std::vector<float> want(y[j].size());
        GemmScratch sc;
        gemm(one, k, packed[j], x.data(), n_tok, want.data(), sc);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(y[j][i], want[i]) << threads << " threads, " << n_tok << " tokens, job " << j << " value " << i;
      }
    }
  }
}

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One thread, thread CPU time (a busy machine distorts it less): prefill multiply-adds per
// second at 512 tokens and decode weight bytes per second at 1 token. Informational; run with
// --gtest_also_run_disabled_tests --gtest_filter=Gemm.DISABLED_Throughput.
TEST(Gemm, DISABLED_Throughput) {
  ThreadPool pool(1);
  const int64_t n = 1536, n_out = 8960;
  for (DType t : kRepacked) {
    const Matrix m = make_matrix(t, n_out, n, 1);
    const RepackedMatrix packed = repack(m.view, &pool);
    for (int64_t n_tok : {512, 1}) {
      const std::vector<float> x = tokens(n_tok, n, 2);
      std::vector<float> y(static_cast<size_t>(n_tok * n_out));
      GemmScratch scratch;
      gemm(pool, best_kernels(), packed, x.data(), n_tok, y.data(), scratch);
      const int reps = n_tok == 1 ? 50 : 2;
      const double t0 = thread_seconds();
      for (int i = 0; i < reps; ++i) gemm(pool, best_kernels(), packed, x.data(), n_tok, y.data(), scratch);
      const double s = thread_seconds() - t0;
      if (n_tok == 1) {
        std::printf("%-5s decode  %6.1f GB/s of weights per thread\n", dtype_name(t), reps * static_cast<double>(m.bytes.size()) / s * 1e-9);
      } else {
        std::printf("%-5s prefill %6.1f GMAC/s per thread (%s)\n", dtype_name(t),
                    reps * static_cast<double>(n * n_out * n_tok) / s * 1e-9, isa_name(best_kernels().isa));
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
