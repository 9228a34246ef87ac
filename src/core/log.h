// Minimal leveled logging to stderr. The level is set once by the CLI (no env reads here).
#pragma once

#include <string>

namespace fathom {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kWarn) : level_(level) {}
  void set_level(LogLevel level) { level_ = level; }
  bool enabled(LogLevel level) const { return level <= level_; }
  void log(LogLevel level, const std::string& message) const;

 private:
  LogLevel level_;
};

}  // namespace fathom
