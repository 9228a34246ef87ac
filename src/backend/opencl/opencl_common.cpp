// The parts of the OpenCL backend's interface that exist in every build; without OpenCL
// (FATHOM_OPENCL=off or no headers found) the factory reports that instead of a device.
#include <cstdlib>

#include "backend/opencl/opencl_backend.h"

namespace fathom {

std::string default_opencl_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/fathom/opencl";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/fathom/opencl";
  return "";
}

#if !FATHOM_HAVE_OPENCL
bool opencl_compiled_in() { return false; }

Expected<std::unique_ptr<Backend>> create_opencl_backend(const OpenClOptions&) {
  return error(ErrorCode::kNotFound, "this fathom was built without OpenCL (configure with -DFATHOM_OPENCL=on after "
                                     "installing opencl-headers and ocl-icd-opencl-dev)");
}
#endif

}  // namespace fathom
