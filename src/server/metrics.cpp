#include "server/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/status.h"

namespace fathom::server {

namespace {

std::string number(double v) { return strprintf("%.9g", v); }

// Label values may hold any text; the exposition format escapes \, " and newlines.
std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void metric_header(std::string& out, const char* name, const char* type, const char* help) {
  out += strprintf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void gauge(std::string& out, const char* name, const char* help, double value) {
  metric_header(out, name, "gauge", help);
  out += std::string(name) + " " + number(value) + "\n";
}

void counter(std::string& out, const char* name, const char* help, double value) {
  metric_header(out, name, "counter", help);
  out += std::string(name) + " " + number(value) + "\n";
}

// Resident set size from /proc/self/statm (0 when unreadable).
double resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long long total = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &total, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) : 0;
}

double open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  int64_t n = 0;
  while (const dirent* e = readdir(dir))
    if (e->d_name[0] != '.') ++n;
  closedir(dir);
  return static_cast<double>(n - 1);  // less the descriptor reading the folder
}

// When the process started, in unix seconds: the boot time (btime in /proc/stat) plus the
// process's start tick (field 22 of /proc/self/stat), as Prometheus's own clients compute it.
double process_start_time() {
  const double now = static_cast<double>(std::time(nullptr));
  double boot = 0;
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "btime %lf", &boot) == 1) break;
    std::fclose(f);
  }
  FILE* f = std::fopen("/proc/self/stat", "r");
  if (!f || boot <= 0) {
    if (f) std::fclose(f);
    return now;
  }
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // Counted after the ')' that ends the command name, which may itself hold spaces.
  const char* p = std::strrchr(buf, ')');
  unsigned long long ticks = 0;
  if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &ticks) != 1)
    return now;
  return boot + static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t bucket = 0;
  while (bucket < upper_bounds_.size() && value > upper_bounds_[bucket]) ++bucket;
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const char* name, const char* help) const {
  std::lock_guard<std::mutex> lock(mutex_);
  metric_header(out, name, "histogram", help);
  int64_t cumulative = 0;
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += strprintf("%s_bucket{le=\"%s\"} %lld\n", name, number(upper_bounds_[i]).c_str(), static_cast<long long>(cumulative));
  }
  out += strprintf("%s_bucket{le=\"+Inf\"} %lld\n", name, static_cast<long long>(count_));
  out += strprintf("%s_sum %s\n%s_count %lld\n", name, number(sum_).c_str(), name, static_cast<long long>(count_));
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      e2e_({0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}) {
  start_time_ = process_start_time();
}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
}

void Metrics::add_tokens(const RequestStats& stats, const std::string& key_id) {
  prompt_tokens_ += stats.n_prompt;
  generated_tokens_ += stats.n_generated;
  if (key_id.empty()) return;
  auto& [prompt, generated] = key_tokens_[key_id];
  prompt += stats.n_prompt;
  generated += stats.n_generated;
}

void Metrics::record_generation(const RequestStats& stats, const std::string& key_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    add_tokens(stats, key_id);
  }
  if (stats.n_generated > 0) ttft_.observe(stats.prompt_seconds());
  if (stats.n_generated > 1) tpot_.observe(stats.generation_seconds() / static_cast<double>(stats.n_generated - 1));
  e2e_.observe(stats.t_end - stats.t_submit);
}

void Metrics::record_unfinished(const RequestStats& stats, bool cancelled, const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  add_tokens(stats, key_id);
  if (cancelled) ++cancelled_;
}

void Metrics::set_engine_gauges(const EngineGauges& gauges) {
  std::lock_guard<std::mutex> lock(mutex_);
  gauges_ = gauges;
}

EngineGauges Metrics::engine_gauges() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return gauges_;
}

void Metrics::set_model_loaded(bool loaded) {
  std::lock_guard<std::mutex> lock(mutex_);
  model_loaded_ = loaded;
}

void Metrics::set_prefix_cache_restore(int64_t restored_blocks, bool rejected) {
  std::lock_guard<std::mutex> lock(mutex_);
  prefix_restored_blocks_ = restored_blocks;
  prefix_restore_rejected_ = rejected;
}

std::string Metrics::render() const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    metric_header(out, "fathom_requests_total", "counter", "HTTP responses by route and status code.");
    for (const auto& [key, n] : requests_)
      out += strprintf("fathom_requests_total{route=\"%s\",status=\"%d\"} %lld\n", escape_label(key.first).c_str(),
                       key.second, static_cast<long long>(n));
    counter(out, "fathom_prompt_tokens_total", "Prompt tokens of generations that ran (cancelled ones included).",
            static_cast<double>(prompt_tokens_));
    counter(out, "fathom_generated_tokens_total", "Tokens generated, also by cancelled and failed generations.",
            static_cast<double>(generated_tokens_));
    if (!key_tokens_.empty()) {
      metric_header(out, "fathom_key_prompt_tokens_total", "counter", "Prompt tokens by API key (key-1 is the first configured key).");
      for (const auto& [key, n] : key_tokens_)
        out += strprintf("fathom_key_prompt_tokens_total{key=\"%s\"} %lld\n", escape_label(key).c_str(), static_cast<long long>(n.first));
      metric_header(out, "fathom_key_generated_tokens_total", "counter", "Generated tokens by API key.");
      for (const auto& [key, n] : key_tokens_)
        out += strprintf("fathom_key_generated_tokens_total{key=\"%s\"} %lld\n", escape_label(key).c_str(), static_cast<long long>(n.second));
    }
    counter(out, "fathom_requests_cancelled_total",
            "Generations cancelled before their end (client gone, or shutdown).", static_cast<double>(cancelled_));
    gauge(out, "fathom_model_loaded", "1 when the model is loaded and requests are served.", model_loaded_ ? 1 : 0);
    gauge(out, "fathom_requests_waiting", "Requests queued, not yet scheduled (the queue depth).",
          static_cast<double>(gauges_.waiting));
    gauge(out, "fathom_requests_running", "Sequences being prefilled or decoded.", static_cast<double>(gauges_.running));
    gauge(out, "fathom_kv_blocks_used", "KV cache blocks held by sequences.", static_cast<double>(gauges_.kv_blocks_used));
    gauge(out, "fathom_kv_blocks_free", "KV cache blocks available: free, or cached and evictable.",
          static_cast<double>(gauges_.kv_blocks_free));
    gauge(out, "fathom_kv_blocks_cached", "KV cache blocks indexed by the prefix cache.",
          static_cast<double>(gauges_.kv_blocks_cached));
    gauge(out, "fathom_prefix_cache_hit_rate", "Fraction of prompt tokens served from the prefix cache.",
          gauges_.prefix_cache_hit_rate);
    counter(out, "fathom_prefix_cache_query_tokens_total", "Prompt tokens looked up in the prefix cache.",
            static_cast<double>(gauges_.prefix_query_tokens));
    counter(out, "fathom_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.",
            static_cast<double>(gauges_.prefix_hit_tokens));
    gauge(out, "fathom_prefix_cache_restored_blocks", "Prefix cache blocks restored at start-up (--kv-persist).",
          static_cast<double>(prefix_restored_blocks_));
    gauge(out, "fathom_prefix_cache_restore_rejected",
          "1 when a saved prefix cache was found but ignored (other model or layout, or damaged).",
          prefix_restore_rejected_ ? 1 : 0);
  }
  ttft_.render(out, "fathom_ttft_seconds", "Time to first token: submit to the first sampled token.");
  tpot_.render(out, "fathom_tpot_seconds", "Time per output token after the first.");
  e2e_.render(out, "fathom_e2e_seconds", "End-to-end generation latency: submit to the last token.");
  gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", resident_bytes());
  gauge(out, "process_open_fds", "Number of open file descriptors.", open_fds());
  gauge(out, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", start_time_);
  return out;
}

}  // namespace fathom::server
