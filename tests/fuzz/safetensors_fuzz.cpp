// Safetensors header validation: input = a whole file. An accepted file's tensors must convert
// to f32 without reading outside the file.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "convert/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fathom::convert;
  auto file = SafetensorsFile::parse(fathom::MappedFile::from_bytes(data, size, "fuzz.safetensors"));
  if (!file) return 0;
  std::vector<float> out;
  for (const StTensor& t : (*file)->tensors()) {
    if (t.n_elements() > (1 << 20)) continue;  // converting is linear; the header is the target
    out.resize(static_cast<size_t>(t.n_elements()));
    (void)st_to_f32(t, out.data());
  }
  return 0;
}
