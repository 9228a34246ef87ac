// Device names on the command line: "KIND" (the backend's default device) or "KIND:N" (device
// N in `fathom devices` numbering), e.g. opencl, opencl:1, cuda:0. One parser for every backend
// and for the engine that picks between them, so all accept and reject the same names.
#pragma once

#include <string>

#include "core/status.h"

namespace fathom {

// -1 for "KIND", N for "KIND:N" (N up to 6 digits); kInvalidArgument for anything else.
Expected<int> parse_device_spec(const std::string& spec, const std::string& kind);

}  // namespace fathom
