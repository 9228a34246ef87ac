// The multi-token kernels of the codebook i-quants (vec_dot_iq_tokens_*.cpp): every token's
// result bit-identical to the reference dot product, for token counts around the kernel's tiles
// and row counts around its 4-row tile (AVX2 and AVX-512), and through cpu::matmul a token's
// output the same alone or in a batch.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "../model/iquant_rewrite.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/vec_dot.h"
#include "quant/quant.h"

namespace fathom::cpu {
namespace {

const DType kCodebookTypes[] = {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS,
                                DType::IQ3_S,   DType::IQ1_S,  DType::IQ1_M};

// n_rows random rows: random bytes in every field, a small positive or negative scale per row.
std::vector<uint8_t> random_matrix(DType t, int64_t n, int64_t n_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t row_bytes = row_size(t, n);
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(n_rows));
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  for (int64_t r = 0; r < n_rows; ++r) test::set_iq_scales(t, w.data() + row_bytes * static_cast<size_t>(r), n, scale(rng));
  return w;
}

// n_tokens activation rows of n floats, each with one outlier (so some Q8_K values reach +-127).
std::vector<float> activations(int64_t n_tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n_tokens * n));
  for (float& v : x) v = dist(rng);
  for (int64_t t = 0; t < n_tokens; ++t) x[static_cast<size_t>(t * n + (7 * t) % n)] = t % 2 ? 40.f : -40.f;
  return x;
}

// One ISA's dot_tokens against the reference, every type, token and row.
void expect_tokens_bit_exact(const Kernels& k) {
  const int64_t n_rows = 6;  // one 4-row tile and two single rows
  for (int64_t n : {256, 4608}) {  // 1 and 18 super-blocks: whole chunks (16 or 8 blocks) and a partial one
    const size_t act_row = row_size(DType::Q8_K, n);
    const std::vector<float> x = activations(33, n, static_cast<uint32_t>(n));
    std::vector<uint8_t> xq(act_row * 33);
    for (int64_t t = 0; t < 33; ++t) quant::quantize_row_ref(DType::Q8_K, x.data() + t * n, xq.data() + act_row * t, n);
    for (DType type : kCodebookTypes) {
      ASSERT_NE(k.dot_tokens[static_cast<size_t>(type)], nullptr) << dtype_name(type);
      const size_t row_bytes = row_size(type, n);
      const std::vector<uint8_t> w = random_matrix(type, n, n_rows, static_cast<uint32_t>(n + static_cast<int>(type)));
      std::vector<float> want(static_cast<size_t>(33 * n_rows));
      for (int64_t t = 0; t < 33; ++t)
        for (int64_t r = 0; r < n_rows; ++r)
          want[t * n_rows + r] = quant::vec_dot_ref(type, n, w.data() + row_bytes * r, xq.data() + act_row * t);
      for (int64_t n_tokens : {1, 2, 3, 7, 8, 9, 33}) {
        SCOPED_TRACE(std::string(isa_name(k.isa)) + " " + dtype_name(type) + " n=" + std::to_string(n) +
                     " tokens=" + std::to_string(n_tokens));
        const int64_t out_stride = n_rows + 3;  // output rows wider than the slice computed
        std::vector<float> out(static_cast<size_t>(n_tokens * out_stride), -1.f);
        k.dot_tokens[static_cast<size_t>(type)](n, w.data(), row_bytes, n_rows, xq.data(), act_row, n_tokens, out.data(),
                                                out_stride);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r = 0; r < n_rows; ++r)
            ASSERT_EQ(out[t * out_stride + r], want[t * n_rows + r]) << "token " << t << " row " << r;
          for (int64_t r = n_rows; r < out_stride; ++r) ASSERT_EQ(out[t * out_stride + r], -1.f) << "wrote past the rows";
        }
      }
    }
  }
}

TEST(IqTokens, EveryTokenIsBitExactWithReference) {
  bool tested = false;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    expect_tokens_bit_exact(kernels_for(isa));
    tested = true;
  }
  if (!tested) GTEST_SKIP() << "the multi-token kernels are AVX2 and AVX-512 code";
}

// cpu::matmul takes the multi-token kernel for a batch and the row kernel for one token: the two
// agree bit for bit on every ISA, so a token's output does not depend on its batch.
TEST(IqTokens, MatmulIsBatchInvariant) {
  ThreadPool pool(2);
  const int64_t n = 512, n_out = 37, n_tokens = 9;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    const Kernels& k = kernels_for(isa);
    for (DType type : kCodebookTypes) {
      std::vector<uint8_t> w = random_matrix(type, n, n_out, 7);
      TensorView view;
      view.dtype = type;
      view.ne = {n, n_out, 1, 1};
      view.n_dims = 2;
      view.data = w.data();
      const std::vector<float> x = activations(n_tokens, n, 8);
      std::vector<float> batch(static_cast<size_t>(n_tokens * n_out)), alone(batch.size());
      MatmulScratch scratch;
      matmul(pool, k, view, x.data(), n_tokens, batch.data(), scratch, nullptr);
      for (int64_t t = 0; t < n_tokens; ++t)
        matmul(pool, k, view, x.data() + t * n, 1, alone.data() + t * n_out, scratch, nullptr);
      for (size_t i = 0; i < batch.size(); ++i)
        ASSERT_EQ(batch[i], alone[i]) << dtype_name(type) << " " << isa_name(isa) << " output " << i;
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
