#include "loadgen/runner.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "plan/loadgen_math.h"
#include "runtime/engine.h"

namespace fathom::loadgen {

namespace {

// "Unlimited" concurrency still needs a thread per request in flight; past this many a client
// machine spends more effort switching threads than the target does serving.
constexpr int64_t kMaxInFlight = 1024;
constexpr double kProgressInterval = 0.1;  // seconds between progress callbacks

std::chrono::steady_clock::time_point to_time_point(double seconds) {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds)));
}

// Issues the scenario's requests from the calling thread and runs them on worker threads, one
// request per worker at a time; workers are started as outstanding requests need them.
class Dispatcher {
 public:
  Dispatcher(Target& target, const Workload& workload, const RunOptions& options, const ProgressCallback& progress)
      : target_(target), workload_(workload), options_(options), progress_(progress) {
    limit_ = options.scenario == Scenario::kSingleStream ? 1 : options.concurrency > 0 ? options.concurrency : kMaxInFlight;
  }

  RunResult run(const std::vector<double>& arrivals) {
    t0_ = now_seconds();
    const bool open_loop = options_.scenario == Scenario::kServer;
    std::unique_lock<std::mutex> lock(mutex_);
    for (int64_t i = 0;; ++i) {
      if (options_.requests > 0 && i >= options_.requests) break;
      double t_issue = 0;
      if (open_loop) {
        if (i >= static_cast<int64_t>(arrivals.size())) break;
        t_issue = arrivals[static_cast<size_t>(i)];
        if (options_.duration_s > 0 && t_issue >= options_.duration_s) break;
        wait(lock, t0_ + t_issue, [] { return false; });
      } else {
        // Closed loop: the next request goes out when a slot frees up.
        wait(lock, 0, [this] { return outstanding() < limit_; });
        t_issue = now_seconds() - t0_;
        if (options_.duration_s > 0 && t_issue >= options_.duration_s) break;
      }
      issue(i, t_issue);
    }
    closing_ = true;
    changed_.notify_all();
    wait(lock, 0, [this] { return done_ == static_cast<int64_t>(records_.size()); });
    lock.unlock();
    for (std::thread& w : workers_) w.join();

    RunResult result;
    result.scenario = options_.scenario;
    result.qps = open_loop ? options_.qps : 0;
    result.concurrency = limit_ == kMaxInFlight ? 0 : limit_;
    result.max_queue_depth = max_queue_depth_;
    for (RequestRecord& r : records_) {
      result.duration_s = std::max(result.duration_s, r.outcome.t_end);
      result.records.push_back(std::move(r));
    }
    if (progress_) progress_(snapshot(/*final=*/true));
    return result;
  }

 private:
  int64_t outstanding() const { return in_flight_ + static_cast<int64_t>(queue_.size()); }

  // Waits until `ready()` or the absolute time `deadline` (0: none), calling the progress
  // callback every kProgressInterval meanwhile (with the lock released).
  template <typename Pred>
  void wait(std::unique_lock<std::mutex>& lock, double deadline, Pred ready) {
    for (;;) {
      if (ready()) return;
      const double now = now_seconds();
      if (deadline > 0 && now >= deadline) return;
      if (now >= next_progress_) {
        next_progress_ = now + kProgressInterval;
        if (progress_) {
          const ProgressSnapshot s = snapshot(false);
          lock.unlock();
          progress_(s);
          lock.lock();
          continue;
        }
      }
      const double until = deadline > 0 ? std::min(deadline, next_progress_) : next_progress_;
      changed_.wait_until(lock, to_time_point(until));
    }
  }

  void issue(int64_t index, double t_issue) {
    RequestRecord r;
    r.index = index;
    r.t_scheduled = t_issue;
    r.queued = outstanding() >= limit_;
    records_.push_back(std::move(r));
    queue_.push_back(index);
    max_queue_depth_ = std::max(max_queue_depth_, outstanding() - limit_);
    if (static_cast<int64_t>(workers_.size()) < std::min(limit_, outstanding()))
      workers_.emplace_back([this] { work(); });
    changed_.notify_all();
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return !queue_.empty() || closing_; });
      if (queue_.empty()) return;
      const int64_t index = queue_.front();
      queue_.pop_front();
      ++in_flight_;
      lock.unlock();
      RequestOutcome out = target_.send(workload_.item(index));
      make_relative(out);
      lock.lock();
      --in_flight_;
      ++done_;
      if (!out.ok()) ++errors_;
      records_[static_cast<size_t>(index)].outcome = std::move(out);
      changed_.notify_all();
    }
  }

  void make_relative(RequestOutcome& out) const {
    out.t_sent -= t0_;
    out.t_end -= t0_;
    if (out.t_first_token > 0) out.t_first_token -= t0_;
    for (double& t : out.chunk_times) t -= t0_;
  }

  ProgressSnapshot snapshot(bool final) const {
    ProgressSnapshot s;
    s.done = done_;
    s.errors = errors_;
    s.total = options_.requests;
    s.in_flight = in_flight_;
    s.queued = std::max<int64_t>(0, outstanding() - limit_);
    s.elapsed_s = now_seconds() - t0_;
    s.duration_s = options_.duration_s;
    s.final = final;
    return s;
  }

  Target& target_;
  const Workload& workload_;
  const RunOptions& options_;
  const ProgressCallback& progress_;
  int64_t limit_ = 1;                    // requests in flight at most
  double t0_ = 0;                        // run start, steady-clock seconds
  double next_progress_ = 0;             // when the next progress callback is due

  std::mutex mutex_;                     // guards everything below
  std::condition_variable changed_;      // a request was issued, finished, or the run is closing
  std::deque<RequestRecord> records_;    // [issued] by index; deque: references stay valid on growth
  std::deque<int64_t> queue_;            // issued, not yet taken by a worker
  std::vector<std::thread> workers_;     // started on demand, at most limit_
  int64_t in_flight_ = 0;                // taken by a worker, not finished
  int64_t done_ = 0;                     // finished
  int64_t errors_ = 0;                   // finished with an error
  int64_t max_queue_depth_ = 0;          // most requests waiting for a slot at once
  bool closing_ = false;                 // no more requests will be issued
};

}  // namespace

Expected<Scenario> parse_scenario(const std::string& name) {
  if (name == "single-stream" || name == "singlestream") return Scenario::kSingleStream;
  if (name == "server") return Scenario::kServer;
  if (name == "offline") return Scenario::kOffline;
  return error(ErrorCode::kInvalidArgument, "--scenario '" + name + "': expected single-stream, server or offline");
}

const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kSingleStream: return "single-stream";
    case Scenario::kServer: return "server";
    case Scenario::kOffline: return "offline";
  }
  return "?";
}

std::vector<double> server_schedule(double qps, int64_t count, uint64_t seed) {
  return plan::poisson_arrivals(qps, static_cast<size_t>(std::max<int64_t>(0, count)), seed);
}

Expected<RunResult> run_scenario(Target& target, const Workload& workload, const RunOptions& options,
                                 const ProgressCallback& progress) {
  if (options.requests <= 0 && options.duration_s <= 0)
    return error(ErrorCode::kInvalidArgument, "give --requests N or --duration S");
  if (options.concurrency < 0) return error(ErrorCode::kInvalidArgument, "--concurrency must be >= 0");
  std::vector<double> arrivals;
  if (options.scenario == Scenario::kServer) {
    if (!(options.qps > 0)) return error(ErrorCode::kInvalidArgument, "the server scenario needs --qps > 0");
    // Bounded by duration: twice the expected count, so the schedule outlasts the duration
    // except with negligible probability.
    const int64_t count = options.requests > 0
                              ? options.requests
                              : static_cast<int64_t>(options.qps * options.duration_s * 2.0) + 64;
    arrivals = server_schedule(options.qps, count, options.seed);
  }
  Dispatcher d(target, workload, options, progress);
  return d.run(arrivals);
}

}  // namespace fathom::loadgen
