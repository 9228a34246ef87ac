#include "core/format.h"

#include "core/status.h"

namespace fathom {

std::string format_bytes(uint64_t bytes) {
  constexpr double kKiB = 1024.0, kMiB = kKiB * 1024.0, kGiB = kMiB * 1024.0;
  const double b = static_cast<double>(bytes);
  if (b >= kGiB) return strprintf("%.1f GiB", b / kGiB);
  if (b >= kMiB) return strprintf("%.1f MiB", b / kMiB);
  if (b >= kKiB) return strprintf("%.1f KiB", b / kKiB);
  return strprintf("%llu B", static_cast<unsigned long long>(bytes));
}

}  // namespace fathom
