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

void Backend::moe_route(const float* router_logits, int64_t n_tokens, const RoutingParams& p, int32_t* experts, float* weights) {
  sync_to_host(router_logits, n_tokens * p.n_expert);
  const int64_t k = p.n_expert_used;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const Route r = route_token(router_logits + t * p.n_expert, p);
    std::copy(r.experts.begin(), r.experts.end(), experts + t * k);
    std::copy(r.weights.begin(), r.weights.end(), weights + t * k);
  }
}

void Backend::gather_rows(const float* src, int64_t n_src_rows, int64_t width, const int32_t* rows, int64_t n_rows, float* dst) {
  sync_to_host(src, n_src_rows * width);
  for (int64_t i = 0; i < n_rows; ++i)
    std::memcpy(dst + i * width, src + rows[i] * width, static_cast<size_t>(width) * sizeof(float));
  host_wrote(dst, n_rows * width);
}

void Backend::scatter_add_rows(const float* src, const int32_t* rows, const float* weights, int64_t n_rows, int64_t width,
                               float* acc, int64_t n_acc_rows) {
  sync_to_host(src, n_rows * width);
  sync_to_host(acc, n_acc_rows * width);
  for (int64_t i = 0; i < n_rows; ++i) {
    float* dst = acc + rows[i] * width;
    const float* row = src + i * width;
    for (int64_t j = 0; j < width; ++j) dst[j] += weights[i] * row[j];
  }
  host_wrote(acc, n_acc_rows * width);
}

}  // namespace fathom
