#include "backend/backend.h"

#include <cstring>

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

}  // namespace fathom
