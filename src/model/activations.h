// The activation buffers of a forward pass (DenseScratch, MlaScratch, MoeScratch): vectors in
// huge pages once they reach 2 MiB (core/streamed_memory.h), grown to the largest batch seen.
#pragma once

#include <cstdint>

#include "core/streamed_memory.h"

namespace fathom {

using Activations = StreamedVector<float>;

// v holds at least n floats.
inline void grow(Activations& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace fathom
