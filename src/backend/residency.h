// Activation residency for a device backend: which host ranges (activation buffers, named by
// their host address as the Backend interface names them) have a copy in device memory, and
// whether that copy is newer than the host's. An op asks for its inputs (uploaded only when the
// device has no copy) and its outputs (written on the device, the host copy left stale); code
// that reads activations on the host asks for them first (Backend::sync_to_host), code that
// writes them there says so after (Backend::host_wrote).
//
// Entries are disjoint. A request that overlaps several entries, or reaches past one, merges
// them into one buffer covering their union (device-to-device copies; only the parts of the
// request no entry covers come from the host), so what an op reads or writes is always one
// contiguous device range. Buffers an op drops are freed when the op ends (end_op), after its
// work was queued, since the device may still be reading them.
//
// Device is the memory the entries live in:
//   Expected<uintptr_t> allocate(size_t bytes, uintptr_t host_begin);  // an address with host_begin's alignment mod 16
//   void release(uintptr_t address);
//   Status upload(uintptr_t dst, const void* src, size_t bytes);
//   Status download(void* dst, uintptr_t src, size_t bytes);          // done when it returns
//   Status copy(uintptr_t dst, uintptr_t src, size_t bytes);          // device to device
#pragma once

#include <algorithm>
#include <iterator>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "core/status.h"

namespace fathom {

struct ResidencyStats {
  uint64_t uploaded_bytes = 0;    // host to device
  uint64_t downloaded_bytes = 0;  // device to host
  uint64_t merged_bytes = 0;      // device to device, merging entries
  uint64_t resident_reads = 0;    // inputs found on the device (no transfer)
  uint64_t inputs = 0;            // inputs asked for
};

template <typename Device>
class ResidencyTable {
 public:
  explicit ResidencyTable(Device& device) : device_(device) {}
  ResidencyTable(const ResidencyTable&) = delete;
  ResidencyTable& operator=(const ResidencyTable&) = delete;
  ~ResidencyTable() {
    clear();
    end_op();
  }

  // Device address holding the current value of host bytes [p, p + bytes), for an op to read.
  Expected<uintptr_t> input(const void* p, size_t bytes) {
    ++stats_.inputs;
    return place(address(p), bytes, Use::kRead);
  }
  // Device address an op writes all of host bytes [p, p + bytes) to; the device's copy is then
  // the current one.
  Expected<uintptr_t> output(const void* p, size_t bytes) { return place(address(p), bytes, Use::kWrite); }
  // An op that reads [p, p + bytes) and writes part or all of it (in place, or a strided copy).
  Expected<uintptr_t> update(const void* p, size_t bytes) {
    ++stats_.inputs;
    return place(address(p), bytes, Use::kUpdate);
  }
  // Makes host bytes [p, p + bytes) current: downloads every overlapping entry the device has newer.
  Status to_host(const void* p, size_t bytes) {
    const uintptr_t begin = address(p), end = begin + bytes;
    for (auto it = first_overlap(begin, end); it != entries_.end() && it->first < end; ++it) {
      Entry& e = it->second;
      if (!e.device_newer) continue;
      FATHOM_RETURN_IF_ERROR(device_.download(reinterpret_cast<void*>(it->first), e.device, e.end - it->first));
      stats_.downloaded_bytes += e.end - it->first;
      e.device_newer = false;
    }
    return Status::ok();
  }
  // The host wrote [p, p + bytes): overlapping entries take those bytes (the rest of an entry keeps
  // whatever copy was newer).
  Status host_wrote(const void* p, size_t bytes) {
    const uintptr_t begin = address(p), end = begin + bytes;
    for (auto it = first_overlap(begin, end); it != entries_.end() && it->first < end; ++it) {
      const uintptr_t lo = std::max(begin, it->first), hi = std::min(end, it->second.end);
      FATHOM_RETURN_IF_ERROR(device_.upload(it->second.device + (lo - it->first), reinterpret_cast<const void*>(lo), hi - lo));
      stats_.uploaded_bytes += hi - lo;
    }
    return Status::ok();
  }
  // True when some entry overlapping [p, p + bytes) is newer on the device than on the host.
  bool device_newer(const void* p, size_t bytes) const {
    const uintptr_t begin = address(p), end = begin + bytes;
    for (auto it = first_overlap(begin, end); it != entries_.end() && it->first < end; ++it)
      if (it->second.device_newer) return true;
    return false;
  }
  // Runs `resolve` (the input/output/update calls of one op), twice when a later request merged
  // entries an earlier one had returned an address in: the second pass finds every range inside
  // one entry, so the addresses it returns all stay valid. Nothing is written before the op runs,
  // so resolving again sees the same values.
  template <typename Resolve>
  Status resolve_op(Resolve&& resolve) {
    const uint64_t merges = merges_;
    FATHOM_RETURN_IF_ERROR(resolve());
    if (merges_ != merges) FATHOM_RETURN_IF_ERROR(resolve());
    return Status::ok();
  }
  // Frees the buffers dropped since the last call (call once an op's work is queued).
  void end_op() {
    for (uintptr_t d : dropped_) device_.release(d);
    dropped_.clear();
  }
  // Forgets every entry (the end of a forward pass); host copies not synced stay stale.
  void clear() {
    for (auto& [begin, e] : entries_) dropped_.push_back(e.device);
    entries_.clear();
  }

  size_t size() const { return entries_.size(); }
  const ResidencyStats& stats() const { return stats_; }

 private:
  enum class Use { kRead, kWrite, kUpdate };
  struct Entry {
    uintptr_t end = 0;         // host range [key, end)
    uintptr_t device = 0;      // its copy
    bool device_newer = false; // the host's bytes are stale
  };
  using Map = std::map<uintptr_t, Entry>;

  static uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

  typename Map::iterator first_overlap(uintptr_t begin, uintptr_t end) {
    auto it = entries_.upper_bound(begin);
    if (it != entries_.begin() && std::prev(it)->second.end > begin) --it;
    return it != entries_.end() && it->first < end ? it : entries_.end();
  }
  typename Map::const_iterator first_overlap(uintptr_t begin, uintptr_t end) const {
    auto it = entries_.upper_bound(begin);
    if (it != entries_.begin() && std::prev(it)->second.end > begin) --it;
    return it != entries_.end() && it->first < end ? it : entries_.end();
  }

  Expected<uintptr_t> place(uintptr_t begin, size_t bytes, Use use) {
    if (bytes == 0) return uintptr_t{0};
    const uintptr_t end = begin + bytes;
    auto first = first_overlap(begin, end);
    if (first != entries_.end() && first->first <= begin && first->second.end >= end) {  // inside one entry
      if (use == Use::kRead) ++stats_.resident_reads;
      else first->second.device_newer = true;
      return first->second.device + (begin - first->first);
    }
    // A new entry over the union of the request and the entries it overlaps.
    auto last = first;
    uintptr_t union_begin = begin, union_end = end;
    if (first != entries_.end()) {
      union_begin = std::min(begin, first->first);
      for (auto it = first; it != entries_.end() && it->first < end; ++it) {
        last = it;
        union_end = std::max(union_end, it->second.end);
      }
      ++last;
    }
    FATHOM_ASSIGN_OR_RETURN(const uintptr_t device, device_.allocate(union_end - union_begin, union_begin));
    bool newer = use != Use::kRead;
    // Parts of the request the merged entries do not cover: from the host, unless the op writes them all.
    uintptr_t covered = begin;
    auto fill_gap = [&](uintptr_t gap_end) -> Status {
      if (use != Use::kWrite && gap_end > covered) {
        FATHOM_RETURN_IF_ERROR(device_.upload(device + (covered - union_begin), reinterpret_cast<const void*>(covered), gap_end - covered));
        stats_.uploaded_bytes += gap_end - covered;
      }
      return Status::ok();
    };
    Status st = Status::ok();
    for (auto it = first; it != last && st.is_ok(); ++it) {
      const Entry& e = it->second;
      st = device_.copy(device + (it->first - union_begin), e.device, e.end - it->first);
      stats_.merged_bytes += e.end - it->first;
      newer = newer || e.device_newer;
      if (st.is_ok() && it->first > covered) st = fill_gap(it->first);
      covered = std::max(covered, e.end);
    }
    if (st.is_ok()) st = fill_gap(end);
    if (!st.is_ok()) {
      device_.release(device);
      return st;
    }
    for (auto it = first; it != last; ++it) dropped_.push_back(it->second.device);
    if (first != last) ++merges_;
    entries_.erase(first, last);
    entries_.emplace(union_begin, Entry{union_end, device, newer});
    return device + (begin - union_begin);
  }

  Device& device_;
  Map entries_;                     // by host begin; disjoint
  std::vector<uintptr_t> dropped_;  // freed at end_op
  uint64_t merges_ = 0;             // requests that replaced entries
  ResidencyStats stats_;
};

}  // namespace fathom
