// FATHOM_HOST_DEVICE marks small header functions that the CUDA kernels call as well as host
// code, so one definition serves both (nvcc compiles it for each side); elsewhere it is empty.
// Such functions stay plain C++: no intrinsics, no exceptions, no allocation.
#pragma once

#if defined(__CUDACC__)
#define FATHOM_HOST_DEVICE __host__ __device__
#else
#define FATHOM_HOST_DEVICE
#endif
