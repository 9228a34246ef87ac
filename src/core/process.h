// Facts about this process read from /proc (Linux): resident memory now and at peak.
#pragma once

#include <cstdint>

namespace fathom {

// Bytes, or 0 when /proc is unavailable.
uint64_t resident_bytes();       // VmRSS
uint64_t peak_resident_bytes();  // VmHWM

}  // namespace fathom
