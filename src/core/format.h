// Numbers as people read them in messages and reports.
#pragma once

#include <cstdint>
#include <string>

namespace fathom {

std::string format_bytes(uint64_t bytes);  // "1.2 GiB", "68.6 KiB", "512 B"

}  // namespace fathom
