#include "backend/backend.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

namespace fathom {

void Backend::add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  sync_to_host(x, n_rows * n);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) x[r * n + i] += bias[i];
  host_wrote(x, n_rows * n);
}

void Backend::copy_strided(const float* src, float* dst, const StridedCopy& c) {
  sync_to_host(src, c.src_span());
  sync_to_host(dst, c.dst_span());  // the floats between the runs keep their values
  for (int64_t o = 0; o < c.n_outer; ++o)
    for (int64_t i = 0; i < c.n_inner; ++i)
      std::memcpy(dst + o * c.dst_outer + i * c.dst_inner, src + o * c.src_outer + i * c.src_inner,
                  static_cast<size_t>(c.width) * sizeof(float));
  host_wrote(dst, c.dst_span());
}

void Backend::top_candidates(const float* logits, int64_t n_rows, int64_t n_vocab, int64_t k, int32_t* ids, float* values) {
  sync_to_host(logits, n_rows * n_vocab);
  std::vector<int32_t> order(static_cast<size_t>(n_vocab));
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = logits + r * n_vocab;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    for (int64_t j = 0; j < k; ++j) {
      ids[r * k + j] = order[static_cast<size_t>(j)];
      values[r * k + j] = row[order[static_cast<size_t>(j)]];
    }
  }
}

}  // namespace fathom
