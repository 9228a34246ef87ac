// The OpenCL plumbing under OpenClBackend: choosing a device, and building the program with a
// disk cache of compiled binaries keyed by device, driver, build options and source.
#pragma once

#if FATHOM_HAVE_OPENCL
#include <CL/cl.h>

#include <string>

#include "backend/opencl/opencl_backend.h"
#include "core/status.h"

namespace fathom::opencl {

// "CL_OUT_OF_RESOURCES" etc.; "CL error N" for codes it does not know.
std::string error_name(cl_int code);

struct SelectedDevice {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  OpenClDeviceInfo info;  // what it offers
};

// spec: "opencl" (the first GPU, else the first device) or "opencl:N" (N-th device over all
// platforms, the order `fathom devices` lists). kNotFound when there is none such.
Expected<SelectedDevice> select_device(const std::string& spec);

struct BuiltProgram {
  cl_program program = nullptr;  // built for the device; the caller releases it
  bool from_cache = false;       // loaded from a cached binary instead of compiled from source
};

// Builds `source` for the device. With a cache_dir, a binary cached under the key (device name,
// platform, driver and device versions, options, source) is tried first, and a fresh build is
// stored there (written to a temporary file, then renamed, so readers never see half a file).
// A failed build is kUnavailable with the compiler log in the message.
Expected<BuiltProgram> build_program(cl_context context, const SelectedDevice& device, const std::string& source,
                                     const std::string& options, const std::string& cache_dir);

// Hex key of the cached binary for these inputs (exposed for tests).
std::string program_cache_key(const OpenClDeviceInfo& info, const std::string& source, const std::string& options);

}  // namespace fathom::opencl
#endif
