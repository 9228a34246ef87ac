// Without CUDA (FATHOM_CUDA=off, or no toolkit found) the factory reports that instead of a device.
#include "backend/cuda/cuda_backend.h"

namespace fathom {

#if !FATHOM_HAVE_CUDA
bool cuda_compiled_in() { return false; }

Expected<std::unique_ptr<Backend>> create_cuda_backend(const CudaOptions&) {
  return error(ErrorCode::kNotFound, "this fathom was built without CUDA (configure with -DFATHOM_CUDA=on after installing "
                                     "the CUDA toolkit, with nvcc on PATH)");
}

Expected<CudaMemoryInfo> cuda_memory_info(const std::string&) {
  return error(ErrorCode::kNotFound, "this fathom was built without CUDA");
}
#endif

}  // namespace fathom
