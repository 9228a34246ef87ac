// Nearest-entry search in the codebooks of the i-quants (internal to src/quant; the tests use it
// too). A codebook entry is a group of `dim` values, each one of `n_levels` levels; the entries
// are a subset of the lattice of all level combinations. The quantizers scale a group of weights
// into level units and ask for the entry minimising the weighted squared error.
//
// The fast search rounds each value to its nearest level, which names one lattice point. When
// that point is an entry it is the exact answer (the error is a sum over coordinates, each at its
// minimum). Otherwise only the point's neighbour list is searched: the entries within a small
// distance of the lattice point, computed once per codebook. search_all is the exhaustive twin
// the tests compare it with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace fathom::quant::detail {

class Codebook {
 public:
  // `entries` [n_entries] packs each entry's level values one per byte (value j in byte j; int8
  // when `signed_values`, else uint8); `levels` [n_levels] lists the level values ascending.
  // A lattice point's neighbour list holds the entries whose squared distance to it is at most the
  // nearest entry's plus `margin` squared level spacings, at most `max_neighbours` of them.
  Codebook(const uint64_t* entries, int n_entries, int dim, const float* levels, int n_levels, bool signed_values,
           float margin, int max_neighbours);

  int dim() const { return dim_; }
  int n_entries() const { return n_entries_; }
  const float* entry(int index) const { return values_.data() + static_cast<size_t>(index) * dim_; }

  // Best entry for targets t[dim] (level units) with weights w[dim]: its index, and the weighted
  // error sum w (t - entry)^2 through *error.
  int search(const float* t, const float* w, float* error) const;
  int search_all(const float* t, const float* w, float* error) const;

  // Entries on the neighbour list of the lattice point nearest to t (for the tests' statistics).
  int n_candidates(const float* t) const;

 private:
  int lattice_point(const float* t) const;
  float group_error(int index, const float* t, const float* w) const;

  int dim_;
  int n_entries_;
  std::vector<float> levels_;               // [n_levels] ascending level values
  std::vector<float> values_;               // [n_entries, dim] entry values
  std::vector<int32_t> neighbour_begin_;    // [n_lattice + 1] offsets into neighbours_
  std::vector<uint16_t> neighbours_;        // entries near each lattice point, nearest first
};

// Per-value weights of the codebook quantizers' error over n values (a super-block):
// importance * sqrt(sigma2 + x^2), sigma2 = 2 * mean(x^2), with importance 1 when there is no
// imatrix. (ggml weights by x^2 without one; that lets the search ignore small values, and a wide
// search then makes the plain error a quarter worse: docs/decisions.md.)
void codebook_weights(const float* x, const float* importance, int n, float* w);

// out[n] = x[n] with NaN and infinities replaced by 0: the codebook quantizers store a non-finite
// value as zero and quantize the rest of its block as if it were.
void finite_values(const float* x, int n, float* out);

// The super-block loop of the codebook quantizers (IQ3_*, IQ1_*): per 256 values, non-finite
// values to 0, the weights of codebook_weights, then choose(f, x, w, choice) and pack(choice, block)
// into a zeroed block.
template <typename Block, typename Format, typename Choice>
void quantize_codebook_blocks(const Format& f, void (*choose)(const Format&, const float*, const float*, Choice&),
                              void (*pack)(const Choice&, Block&), const float* x, void* dst, int64_t n,
                              const float* importance) {
  constexpr int kSuper = 256;
  auto* y = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kSuper; ++i) {
    float xb[kSuper], w[kSuper];
    finite_values(x + kSuper * i, kSuper, xb);
    codebook_weights(xb, importance ? importance + kSuper * i : nullptr, kSuper, w);
    Choice c;
    choose(f, xb, w, c);
    std::memset(&y[i], 0, sizeof(Block));
    pack(c, y[i]);
  }
}

// The codebooks of the formats, built on first use (thread-safe, immutable afterwards).
const Codebook& iq3_xxs_codebook();
const Codebook& iq3_s_codebook();
const Codebook& iq1_codebook();

}  // namespace fathom::quant::detail
