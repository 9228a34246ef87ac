#include "backend/device_spec.h"

namespace fathom {

Expected<int> parse_device_spec(const std::string& spec, const std::string& kind) {
  if (spec == kind) return -1;
  const std::string prefix = kind + ":";
  const std::string n = spec.rfind(prefix, 0) == 0 ? spec.substr(prefix.size()) : "";
  if (n.empty() || n.size() > 6 || n.find_first_not_of("0123456789") != std::string::npos)
    return error(ErrorCode::kInvalidArgument,
                 "device '" + spec + "': expected " + kind + " or " + kind + ":N with N a device number from `fathom devices`");
  return std::stoi(n);
}

}  // namespace fathom
