#include "core/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/streamed_memory.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fathom {

namespace {

using SumFn = uint64_t (*)(const uint64_t* p, size_t n);

// Four independent accumulators so the loop is bound by loads, not by one add chain.
uint64_t sum_generic(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_generic(p + i, n - i);
}

__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 24));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  return sum_generic(lanes, 8) + sum_generic(p + i, n - i);
}
#endif

SumFn best_sum() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return sum_avx512;
  if (__builtin_cpu_supports("avx2")) return sum_avx2;
#endif
  return sum_generic;
}

size_t parse_cache_size(const std::string& text) {
  size_t value = 0, i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') value = value * 10 + static_cast<size_t>(text[i++] - '0');
  if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) value <<= 10;
  if (i < text.size() && (text[i] == 'M' || text[i] == 'm')) value <<= 20;
  return value;
}

}  // namespace

ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, int min_passes, double min_seconds) {
  constexpr int64_t kGrain = 8192;  // words per parallel_for chunk (64 KiB)
  const int64_t n = std::max<int64_t>(kGrain, static_cast<int64_t>(bytes / sizeof(uint64_t)) / kGrain * kGrain);
  const size_t n_bytes = static_cast<size_t>(n) * sizeof(uint64_t);
  // The same memory as the repacked weights (huge pages): with 4 KiB pages the probe measured
  // page walks too and read 20-40% below what the weights are streamed at.
  std::unique_ptr<uint64_t, decltype(&std::free)> buf(static_cast<uint64_t*>(allocate_streamed(n_bytes)), &std::free);
  ReadBandwidth r;
  if (!buf) return r;
  uint64_t* data = buf.get();
  // First touch by the thread that will read each chunk (the same split as the reads).
  pool.parallel_for(n, kGrain, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) data[i] = static_cast<uint64_t>(i);
  });
  const SumFn sum = best_sum();
  std::vector<uint64_t> sinks(static_cast<size_t>(pool.n_threads()), 0);  // [threads] keeps the sums alive
  double total = 0, best = 1e30;
  const auto start = std::chrono::steady_clock::now();
  constexpr int kMaxPasses = 1000;
  for (r.passes = 0; r.passes < kMaxPasses && (r.passes < min_passes || total < min_seconds); ++r.passes) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, kGrain, [&](int t, int64_t begin, int64_t end) {
      sinks[static_cast<size_t>(t)] += sum(data + begin, static_cast<size_t>(end - begin));
    });
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    total = std::chrono::duration<double>(t1 - start).count();
  }
  uint64_t checksum = 0;
  for (uint64_t s : sinks) checksum += s;
  volatile uint64_t keep = checksum;  // the sums must be computed
  (void)keep;
  r.bytes = n_bytes;
  r.gb_per_s = best > 0 ? static_cast<double>(n_bytes) / best / 1e9 : 0;
  return r;
}

size_t last_level_cache_bytes() {
  size_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (!(f >> text)) continue;
    best = std::max(best, parse_cache_size(text));
  }
  return best;
}

size_t default_bandwidth_buffer_bytes() { return std::max(size_t{1} << 30, 8 * last_level_cache_bytes()); }

}  // namespace fathom
