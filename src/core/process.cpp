#include "core/process.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fathom {

namespace {

uint64_t status_kib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kib = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      unsigned long long v = 0;
      if (std::sscanf(line + n + 1, "%llu", &v) == 1) kib = v;
      break;
    }
  }
  std::fclose(f);
  return kib * 1024;
}

}  // namespace

uint64_t resident_bytes() { return status_kib("VmRSS"); }
uint64_t peak_resident_bytes() { return status_kib("VmHWM"); }

Expected<HostMemory> parse_meminfo(std::string_view text) {
  HostMemory m;
  std::istringstream in{std::string(text)};
  bool have_total = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string key, unit;
    uint64_t value = 0;
    if (!(ls >> key >> value)) continue;
    ls >> unit;
    const uint64_t scale = unit == "kB" ? 1024 : 1;
    if (key == "MemTotal:") m.total_bytes = value * scale, have_total = true;
    if (key == "MemAvailable:") m.available_bytes = value * scale;
  }
  if (!have_total) return error(ErrorCode::kInvalidFile, "meminfo: no MemTotal line");
  if (m.available_bytes == 0) m.available_bytes = m.total_bytes;
  return m;
}

Expected<HostMemory> read_host_memory(const std::string& meminfo_path) {
  std::ifstream f(meminfo_path);
  if (!f) return error(ErrorCode::kNotFound, "cannot read " + meminfo_path);
  std::ostringstream text;
  text << f.rdbuf();
  return parse_meminfo(text.str());
}

}  // namespace fathom
