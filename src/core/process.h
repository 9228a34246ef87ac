// Facts about this process and its machine read from /proc (Linux): resident memory now and at
// peak, and the host's memory (the one /proc/meminfo reader; plan and the CPU backend use it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fathom {

// Bytes, or 0 when /proc is unavailable.
uint64_t resident_bytes();       // VmRSS
uint64_t peak_resident_bytes();  // VmHWM

struct HostMemory {
  uint64_t total_bytes = 0;      // MemTotal
  uint64_t available_bytes = 0;  // MemAvailable (MemTotal on kernels without it)
};
// Parses the text of /proc/meminfo ("MemTotal:  16318744 kB"); an error without a MemTotal line.
Expected<HostMemory> parse_meminfo(std::string_view text);
Expected<HostMemory> read_host_memory(const std::string& meminfo_path = "/proc/meminfo");

}  // namespace fathom
