// The one pool of worker threads (owned by the CPU backend). Threads are created once; each
// parallel_for wakes them, splits [0, n) into contiguous chunks and waits on a counter barrier.
// Workers spin briefly before sleeping so back-to-back ops in a forward pass do not pay a
// futex round trip each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fathom {

class ThreadPool {
 public:
  // n_threads includes the calling thread; 0 means hardware_concurrency().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return n_threads_; }

  // Calls fn(thread_index, begin, end) on every thread for a contiguous chunk of [0, n);
  // chunks are rounded to multiples of `grain`. Returns when all chunks are done.
  void parallel_for(int64_t n, int64_t grain,
                    const std::function<void(int thread_index, int64_t begin, int64_t end)>& fn);

  // Calls fn(thread_index) once on each of the n_threads threads.
  void run_on_all(const std::function<void(int thread_index)>& fn);

 private:
  void worker_loop(int thread_index);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;         // n_threads_ - 1 helpers; index 0 is the caller
  const std::function<void(int)>* job_ = nullptr;  // current job, valid while generation_ is odd-stepped
  std::atomic<uint64_t> generation_{0};      // bumped once per job; workers wait for a change
  std::atomic<int> pending_{0};              // workers still running the current job
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace fathom
