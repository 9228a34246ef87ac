// MLPerf-style scenarios: when requests are issued, and how many may be in flight.
//   single-stream: one request at a time, the next as soon as the previous finishes.
//   server:        open loop: Poisson arrivals at --qps, sent on schedule whatever the
//                  completions; past --concurrency in flight they wait in a client queue
//                  (counted, and the wait reported), so an overloaded target shows up as
//                  growing latency instead of a silently slower arrival rate.
//   offline:       every request issued at once, at most --concurrency in flight.
// Latencies are measured from when a request is sent, not from its scheduled arrival; the queue
// wait before sending is reported separately.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loadgen/target.h"
#include "loadgen/workload.h"

namespace fathom::loadgen {

enum class Scenario { kSingleStream, kServer, kOffline };
Expected<Scenario> parse_scenario(const std::string& name);  // "single-stream", "server", "offline"
const char* scenario_name(Scenario s);

struct RunOptions {
  Scenario scenario = Scenario::kOffline;
  double qps = 0;             // server: mean arrival rate, requests/s
  int64_t concurrency = 0;    // in flight at most; 0: unlimited (single-stream: always 1)
  int64_t requests = 0;       // requests to issue; 0: as many as fit in duration_s
  double duration_s = 0;      // stop issuing after this many seconds; 0: no limit
  uint64_t seed = 0;          // arrival schedule seed
};

// One request's record, times in seconds from the start of the run.
struct RequestRecord {
  int64_t index = 0;            // workload index
  double t_scheduled = 0;       // when the scenario issued it
  bool queued = false;          // it waited for a free concurrency slot
  RequestOutcome outcome;       // with times made relative to the run start
};

struct RunResult {
  Scenario scenario = Scenario::kOffline;
  double qps = 0;                       // server scenario's rate, else 0
  int64_t concurrency = 0;              // the effective limit (0: unlimited)
  double duration_s = 0;                // start of the run to the last request's end
  std::vector<RequestRecord> records;   // [n_requests] in workload order
  int64_t max_queue_depth = 0;          // most requests waiting for a slot at once
};

struct ProgressSnapshot {
  int64_t done = 0;         // requests finished (ok or not)
  int64_t errors = 0;       // of which failed
  int64_t total = 0;        // requests planned; 0 when the run is bounded by duration
  int64_t in_flight = 0;    // sent, not finished
  int64_t queued = 0;       // waiting for a slot now
  double elapsed_s = 0;     // since the run started
  double duration_s = 0;    // the run's time bound, 0 if none
  bool final = false;       // the run has ended
};
using ProgressCallback = std::function<void(const ProgressSnapshot&)>;

// The server scenario's issue times for `count` requests, seconds from the start.
std::vector<double> server_schedule(double qps, int64_t count, uint64_t seed);

// Runs the scenario to completion. Errors only for options that make no run (no requests and
// no duration, server without a rate); failed requests are records, not errors. `progress`
// (optional) is called from the calling thread about ten times a second and once at the end.
Expected<RunResult> run_scenario(Target& target, const Workload& workload, const RunOptions& options,
                                 const ProgressCallback& progress = nullptr);

}  // namespace fathom::loadgen
