# CUDA backend (src/backend/cuda). FATHOM_CUDA=auto builds it when CMake finds nvcc and the
# toolkit's cudart and cuBLAS, on requires them, off leaves only the stub that reports "built
# without CUDA". Included after fathom_module(backend), whose glob already compiles
# src/backend/cuda/*.cpp; those files switch on FATHOM_HAVE_CUDA. The kernels (*.cu) form a
# library of their own: the top-level compile options (-Wall, -march=native, sanitizers) are
# host-compiler flags that nvcc rejects, so that target gets nvcc's own.
set(FATHOM_CUDA auto CACHE STRING "CUDA backend: auto, on or off")
set_property(CACHE FATHOM_CUDA PROPERTY STRINGS auto on off)
string(TOLOWER "${FATHOM_CUDA}" fathom_cuda_mode)
set(FATHOM_HAVE_CUDA OFF)
if(NOT fathom_cuda_mode STREQUAL "off")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Ampere (sm_80, also runs on sm_86/89) and Hopper (sm_90, H100/H200) machine code, plus
    # compute_90 PTX that newer GPUs compile at load. Each architecture costs compile time.
    if(NOT DEFINED ENV{CUDAARCHS})
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "GPU architectures the CUDA kernels are built for")
    endif()
    enable_language(CUDA)
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)  # CMake < 3.26 knows no C++20 flag for nvcc
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    find_package(CUDAToolkit QUIET)
  endif()
  if(CMAKE_CUDA_COMPILER AND TARGET CUDA::cudart AND TARGET CUDA::cublas)
    set(FATHOM_HAVE_CUDA ON)
  elseif(fathom_cuda_mode STREQUAL "on")
    message(FATAL_ERROR "FATHOM_CUDA=on, but no CUDA compiler with cudart and cuBLAS was found; install the CUDA "
                        "toolkit and put nvcc on PATH (or pass -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)")
  endif()
endif()
message(STATUS "fathom: CUDA backend ${FATHOM_HAVE_CUDA} (FATHOM_CUDA=${FATHOM_CUDA})")

if(FATHOM_HAVE_CUDA)
  message(STATUS "fathom: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}")
  file(GLOB fathom_cuda_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu)
  add_library(fathom_cuda_kernels STATIC ${fathom_cuda_sources})
  set_property(TARGET fathom_cuda_kernels PROPERTY COMPILE_OPTIONS "")  # drop the host-compiler options
  target_compile_options(fathom_cuda_kernels PRIVATE -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter)
  set_target_properties(fathom_cuda_kernels PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  target_include_directories(fathom_cuda_kernels PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(fathom_cuda_kernels PUBLIC CUDA::cudart)
  string(REPLACE ";" " " fathom_cuda_arch_list "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(fathom_backend PUBLIC FATHOM_HAVE_CUDA=1
                             PRIVATE FATHOM_CUDA_ARCHITECTURES="${fathom_cuda_arch_list}")
  target_link_libraries(fathom_backend PUBLIC fathom_cuda_kernels CUDA::cudart CUDA::cublas)
endif()
