#include "core/log.h"

#include <cstdio>

namespace fathom {

void Logger::log(LogLevel level, const std::string& message) const {
  if (!enabled(level)) return;
  static const char* const kNames[] = {"error", "warn", "info", "debug"};
  std::fprintf(stderr, "fathom %s: %s\n", kNames[static_cast<int>(level)], message.c_str());
}

}  // namespace fathom
