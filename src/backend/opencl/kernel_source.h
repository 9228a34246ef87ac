// The OpenCL C program of the backend: kernels/*.cl concatenated at build time
// (embed_kernels.cmake), so the binary needs no files beside it.
#pragma once

namespace fathom::opencl {

const char* kernel_source();

}  // namespace fathom::opencl
