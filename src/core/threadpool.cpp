#include "core/threadpool.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FATHOM_PAUSE() _mm_pause()
#else
#define FATHOM_PAUSE() ((void)0)
#endif

namespace fathom {

namespace {

// How long a waiting thread spins before it sleeps: longer than the gap between two ops of a
// forward pass, far shorter than a scheduler time slice.
constexpr auto kSpinMicros = std::chrono::microseconds(100);

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  // Returns at once when *word != expected (EAGAIN), on a wake-up, or spuriously; callers loop.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// Spins until pred() or kSpinMicros pass; returns pred().
template <typename Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinMicros;
  for (int i = 1;; ++i) {
    if (pred()) return true;
    FATHOM_PAUSE();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  futex_wake_all(&generation_);
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int thread_index) {
  uint32_t seen = 0;
  for (;;) {
    auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(changed)) {
      // Sleep. The caller bumps generation_ and then reads sleeping_workers_ (both seq_cst), so
      // either it sees us here and wakes us, or the futex sees the new generation and returns.
      sleeping_workers_.fetch_add(1);
      while (!changed()) futex_wait(&generation_, seen);
      sleeping_workers_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    (*job_)(thread_index);
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load() != 0) futex_wake_all(&pending_);
  }
}

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(static_cast<uint32_t>(n_threads_ - 1));
  generation_.fetch_add(1);
  if (sleeping_workers_.load() != 0) futex_wake_all(&generation_);
  fn(0);
  auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done)) {
    caller_sleeping_.store(1);
    for (uint32_t left = pending_.load(); left != 0; left = pending_.load()) futex_wait(&pending_, left);
    caller_sleeping_.store(0);
  }
  job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int, int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_chunks = (n + grain - 1) / grain;
  if (n_threads_ == 1 || n_chunks == 1) {
    fn(0, 0, n);
    return;
  }
  const int64_t per_thread = (n_chunks + n_threads_ - 1) / n_threads_;
  run_on_all([&](int t) {
    const int64_t begin = std::min<int64_t>(n, t * per_thread * grain);
    const int64_t end = std::min<int64_t>(n, (t + 1) * per_thread * grain);
    if (begin < end) fn(t, begin, end);
  });
}

}  // namespace fathom
