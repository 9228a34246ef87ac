// The one pool of worker threads (owned by the CPU backend). Threads are created once; each
// parallel_for wakes them, splits [0, n) into contiguous chunks and waits on a counter barrier.
// Waiting threads (idle workers, and the caller waiting for the workers) spin on the counter
// with a pause for up to kSpinMicros, so back-to-back ops in a forward pass cost no system
// call, then sleep on a futex; the other side issues a wake-up only when someone sleeps. No
// sched_yield loops: on a busy machine they burn the time slice the other thread needs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
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
  const std::function<void(int)>* job_ = nullptr;  // current job, set before generation_ moves
  std::atomic<uint32_t> generation_{0};      // bumped once per job; workers wait for a change (futex word)
  std::atomic<uint32_t> pending_{0};         // workers still running the current job (futex word)
  std::atomic<int> sleeping_workers_{0};     // workers blocked on generation_
  std::atomic<int> caller_sleeping_{0};      // 1 while the caller is blocked on pending_
  std::atomic<bool> stop_{false};
};

}  // namespace fathom
