# Writes a C++ file holding the OpenCL C sources as one raw string, so the kernels ship inside
# the binary. Run as: cmake -DOUT=file.cpp -DSOURCES=a.cl|b.cl -P embed_kernels.cmake
# (sources joined by '|', concatenated in the given order).
string(REPLACE "|" ";" sources "${SOURCES}")
set(body "")
foreach(src IN LISTS sources)
  file(READ "${src}" text)
  get_filename_component(name "${src}" NAME)
  string(APPEND body "// ---- ${name} ----\n${text}\n")
endforeach()
string(FIND "${body}" ")FATHOM_CL\"" bad)
if(NOT bad EQUAL -1)
  message(FATAL_ERROR "an OpenCL source contains the raw-string delimiter )FATHOM_CL\"")
endif()
file(WRITE "${OUT}"
  "// Generated from src/backend/opencl/kernels/*.cl by embed_kernels.cmake; do not edit.\n"
  "#include \"backend/opencl/kernel_source.h\"\n\n"
  "namespace fathom::opencl {\n\n"
  "const char* kernel_source() {\n"
  "  return R\"FATHOM_CL(${body})FATHOM_CL\";\n"
  "}\n\n"
  "}  // namespace fathom::opencl\n")
