// GGUF parsing under libFuzzer's coverage guidance (tests/gguf/gguf_fuzz.cpp mutates two files
// at random; this one explores from seeds). Accepted files are walked: every metadata value
// displayed, every tensor's byte range checked against the file.
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = fathom::gguf::GgufFile::parse(fathom::MappedFile::from_bytes(data, size, "fuzz.gguf"));
  if (!file) return 0;
  for (const auto& [key, value] : (*file)->metadata()) (void)value.to_display_string();
  for (const auto& t : (*file)->tensors()) {
    if ((*file)->data_offset() + t.offset + t.n_bytes > size) __builtin_trap();
  }
  return 0;
}
