#include "server/engine_worker.h"

#include <cstdio>

namespace fathom::server {

void EventChannel::push(ChoiceEvent event) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(std::move(event));
}

bool EventChannel::take(std::vector<ChoiceEvent>& out) {
  out.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  if (events_.empty()) return false;
  for (ChoiceEvent& e : events_) out.push_back(std::move(e));
  events_.clear();
  return true;
}

EngineWorker::EngineWorker(Metrics& metrics, int32_t max_running, int64_t max_in_flight)
    : metrics_(metrics), max_running_(max_running), max_in_flight_(max_in_flight) {}

EngineWorker::~EngineWorker() { stop(); }

void EngineWorker::start(EngineFactory factory, std::string prefix_cache_file) {
  prefix_cache_file_ = std::move(prefix_cache_file);
  thread_ = std::thread([this, factory = std::move(factory)] { run(factory); });
}

EngineState EngineWorker::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

Status EngineWorker::load_status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return load_status_;
}

Status EngineWorker::wait_loaded() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return state_ != EngineState::kLoading; });
  return load_status_;
}

const Engine* EngineWorker::engine() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_ == EngineState::kReady ? engine_.get() : nullptr;
}

bool EngineWorker::reserve() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (static_cast<int64_t>(in_flight_.size()) + reserved_ + 1 > max_in_flight_) return false;
  ++reserved_;
  return true;
}

void EngineWorker::release_reservation() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (reserved_ > 0) --reserved_;
}

Expected<std::vector<RequestId>> EngineWorker::submit(std::vector<GenerationRequest> requests, bool reserved) {
  std::vector<RequestId> ids;
  {
    // Held across the engine's submit so that a final event (on the engine thread) cannot
    // look for its id before it is recorded.
    std::lock_guard<std::mutex> lock(mutex_);
    if (reserved && reserved_ > 0) --reserved_;
    if (state_ != EngineState::kReady) return error(ErrorCode::kUnavailable, "the model is not loaded");
    if (static_cast<int64_t>(in_flight_.size()) + reserved_ + static_cast<int64_t>(requests.size()) > max_in_flight_)
      return error(ErrorCode::kUnavailable, "queue full");
    for (GenerationRequest& r : requests) {
      // The wrapper retires the id from the in-flight set when its final event is delivered.
      // It runs before the handler hears of the end, so a client that has its answer sees
      // the request's KV blocks (freed by the engine before this event) as free in /metrics.
      r.on_event = [this, inner = std::move(r.on_event)](const TokenEvent& ev) {
        if (ev.finished) {
          {
            std::lock_guard<std::mutex> lock(mutex_);
            in_flight_.erase(ev.id);
          }
          publish_gauges();
        }
        if (inner) inner(ev);
        if (ev.finished) cv_.notify_all();
      };
      Expected<RequestId> id = engine_->submit(std::move(r));
      if (!id) {
        for (RequestId done : ids) engine_->cancel(done);
        wake_ = true;
        cv_.notify_all();
        return id.status();
      }
      ids.push_back(*id);
      in_flight_.insert(*id);
    }
    wake_ = true;
  }
  cv_.notify_all();
  return ids;
}

void EngineWorker::cancel(RequestId id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!engine_) return;
  engine_->cancel(id);
  wake_ = true;
  cv_.notify_all();
}

void EngineWorker::cancel_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!engine_) return;
  for (RequestId id : in_flight_) engine_->cancel(id);
  wake_ = true;
  cv_.notify_all();
}

int64_t EngineWorker::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(in_flight_.size());
}

bool EngineWorker::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return in_flight_.empty(); });
}

void EngineWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineWorker::publish_gauges() {
  EngineGauges g;
  const int64_t n = in_flight();
  g.running = std::min<int64_t>(n, max_running_);
  g.waiting = n - g.running;
  const KvCache& kv = engine_->kv_cache();
  g.kv_blocks_used = kv.n_active_blocks();
  g.kv_blocks_free = kv.n_available_blocks();  // free plus cached blocks no sequence holds
  const KvCache::PrefixStats prefix = kv.prefix_stats();
  g.kv_blocks_cached = prefix.cached_blocks;
  g.prefix_cache_hit_rate =
      prefix.query_tokens > 0 ? static_cast<double>(prefix.hit_tokens) / static_cast<double>(prefix.query_tokens) : 0.0;
  g.prefix_query_tokens = prefix.query_tokens;
  g.prefix_hit_tokens = prefix.hit_tokens;
  metrics_.set_engine_gauges(g);
}

void EngineWorker::run(EngineFactory factory) {
  Expected<std::unique_ptr<Engine>> loaded = factory();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!loaded) {
      state_ = EngineState::kFailed;
      load_status_ = loaded.status();
      cv_.notify_all();
      return;
    }
    engine_ = std::move(loaded).value();
  }
  for (const std::string& line : engine_->placement_report()) std::fprintf(stderr, "fathom serve: placement: %s\n", line.c_str());
  if (!prefix_cache_file_.empty()) restore_prefix_cache();
  publish_gauges();  // before anyone can see the engine ready
  metrics_.set_model_loaded(true);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = EngineState::kReady;
    cv_.notify_all();
  }
  step_until_stopped();
  if (!prefix_cache_file_.empty()) save_prefix_cache();
}

void EngineWorker::restore_prefix_cache() {
  const double t0 = now_seconds();
  Expected<KvPersistRestoreStats> restored = engine_->restore_prefix_cache(prefix_cache_file_);
  if (!restored) {
    if (restored.status().code() == ErrorCode::kNotFound) {
      std::fprintf(stderr, "fathom serve: prefix cache: nothing saved at %s yet; it is written there at shutdown\n",
                   prefix_cache_file_.c_str());
    } else {
      std::fprintf(stderr, "fathom serve: warning: ignoring the saved prefix cache: %s\n",
                   restored.status().to_string().c_str());
      metrics_.set_prefix_cache_restore(0, /*rejected=*/true);
    }
    return;
  }
  const KvPersistRestoreStats& s = *restored;
  const int32_t block_size = engine_->kv_cache().shape().block_size;
  std::fprintf(stderr,
               "fathom serve: prefix cache: restored %lld of %lld blocks (%lld tokens) from %s in %.2f s"
               " (left out: %lld for lack of free blocks, %lld longer than the context, %lld unreachable)\n",
               static_cast<long long>(s.n_restored), static_cast<long long>(s.n_entries),
               static_cast<long long>(s.n_restored * block_size), prefix_cache_file_.c_str(), now_seconds() - t0,
               static_cast<long long>(s.n_skipped_capacity), static_cast<long long>(s.n_skipped_context),
               static_cast<long long>(s.n_skipped_orphan));
  metrics_.set_prefix_cache_restore(s.n_restored, /*rejected=*/false);
}

void EngineWorker::save_prefix_cache() {
  const double t0 = now_seconds();
  Expected<KvPersistSaveStats> saved = engine_->save_prefix_cache(prefix_cache_file_);
  if (!saved) {
    std::fprintf(stderr, "fathom serve: warning: the prefix cache was not saved: %s\n", saved.status().to_string().c_str());
    return;
  }
  std::fprintf(stderr, "fathom serve: prefix cache: saved %lld blocks (%.1f MiB) to %s in %.2f s\n",
               static_cast<long long>(saved->n_blocks), static_cast<double>(saved->n_bytes) / (1024.0 * 1024.0),
               prefix_cache_file_.c_str(), now_seconds() - t0);
}

void EngineWorker::step_until_stopped() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || wake_; });
      if (stop_) return;
      wake_ = false;
    }
    // engine_ is only written before the loop, so the engine thread reads it without the lock.
    while (engine_->has_work()) {
      if (Status st = engine_->step(); !st.is_ok()) {
        std::fprintf(stderr, "fathom serve: engine step failed: %s; cancelling the requests in flight\n",
                     st.to_string().c_str());
        cancel_all();
      }
      publish_gauges();
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
    }
  }
}

}  // namespace fathom::server
