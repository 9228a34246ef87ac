// Memory read bandwidth as the engine's own threads see it: every thread of a ThreadPool sums
// the 64-bit words of its contiguous share of one large buffer (the same split parallel_for
// gives a weight matrix), timed pass by pass. Decode speed is bounded by this figure divided by
// the weight bytes one token reads, so `fathom bench` and `fathom devices` both use it.
#pragma once

#include <cstddef>

#include "core/threadpool.h"

namespace fathom {

struct ReadBandwidth {
  double gb_per_s = 0;  // best pass, 1e9 bytes per second
  size_t bytes = 0;     // buffer size actually read per pass
  int passes = 0;       // timed passes
};

// Reads a `bytes` buffer (first touched by the pool's threads, so pages sit where they are read)
// at least `min_passes` times and for at least `min_seconds`; reports the fastest pass.
// The buffer should be several times the last-level cache or the figure is a cache bandwidth.
ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, int min_passes, double min_seconds);

// Last-level cache size from /sys (0 when unknown).
size_t last_level_cache_bytes();
// A buffer size that defeats the caches: max(1 GiB, 8 x the last-level cache).
size_t default_bandwidth_buffer_bytes();

}  // namespace fathom
