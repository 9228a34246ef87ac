# OpenCL backend (src/backend/opencl). FATHOM_OPENCL=auto builds it when Debian's opencl-headers
# and ocl-icd-opencl-dev are installed, on requires them, off leaves only the stub that reports
# "built without OpenCL". Included after fathom_module(backend), whose glob already compiles
# src/backend/opencl/*.cpp; those files switch on FATHOM_HAVE_OPENCL.
set(FATHOM_OPENCL auto CACHE STRING "OpenCL backend: auto, on or off")
set_property(CACHE FATHOM_OPENCL PROPERTY STRINGS auto on off)
string(TOLOWER "${FATHOM_OPENCL}" fathom_opencl_mode)
set(FATHOM_HAVE_OPENCL OFF)
if(NOT fathom_opencl_mode STREQUAL "off")
  find_package(OpenCL QUIET)
  if(OpenCL_FOUND)
    set(FATHOM_HAVE_OPENCL ON)
  elseif(fathom_opencl_mode STREQUAL "on")
    message(FATAL_ERROR "FATHOM_OPENCL=on, but the OpenCL headers or ICD loader were not found; "
                        "install opencl-headers and ocl-icd-opencl-dev (scripts/install-deps.sh)")
  endif()
endif()
message(STATUS "fathom: OpenCL backend ${FATHOM_HAVE_OPENCL} (FATHOM_OPENCL=${FATHOM_OPENCL})")

if(FATHOM_HAVE_OPENCL)
  set(fathom_cl_dir ${CMAKE_SOURCE_DIR}/src/backend/opencl)
  # Order matters: common.cl defines the helpers the others use.
  set(fathom_cl_sources ${fathom_cl_dir}/kernels/common.cl ${fathom_cl_dir}/kernels/matmul.cl
                        ${fathom_cl_dir}/kernels/ops.cl ${fathom_cl_dir}/kernels/attention.cl)
  string(REPLACE ";" "|" fathom_cl_joined "${fathom_cl_sources}")
  set(fathom_cl_generated ${CMAKE_BINARY_DIR}/generated/opencl_kernels.cpp)
  add_custom_command(
    OUTPUT ${fathom_cl_generated}
    COMMAND ${CMAKE_COMMAND} -DOUT=${fathom_cl_generated} -DSOURCES=${fathom_cl_joined} -P ${fathom_cl_dir}/embed_kernels.cmake
    DEPENDS ${fathom_cl_sources} ${fathom_cl_dir}/embed_kernels.cmake
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
  target_sources(fathom_backend PRIVATE ${fathom_cl_generated})
  # 1.2 is the API baseline: newer entry points are not used, and the headers then raise no
  # deprecation warnings for clCreateCommandQueue and CL_DEVICE_HOST_UNIFIED_MEMORY.
  target_compile_definitions(fathom_backend PUBLIC FATHOM_HAVE_OPENCL=1 CL_TARGET_OPENCL_VERSION=120)
  target_link_libraries(fathom_backend PUBLIC OpenCL::OpenCL)
endif()
