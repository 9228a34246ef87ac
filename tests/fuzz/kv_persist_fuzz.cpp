// Restoring a saved prefix cache (`fathom serve --kv-persist`): input = the file's bytes,
// restored into a small cache matching the seeds' shape and model key. The fuzz build skips the
// checksum comparisons (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) so mutations reach the entries.
// A rejected file must leave the cache as it was.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kv/kv_persist.h"

namespace {

fathom::KvCacheShape seed_shape() {
  fathom::KvCacheShape s;
  s.n_layer = 2;
  s.k_width = 2;
  s.v_width = 3;
  s.block_size = 4;
  s.n_ctx_max = 64;
  return s;
}

const fathom::KvPersistModelKey kKey{0x1234abcdull, "llama"};

// One scratch file per process, removed at exit; the reader only takes a path.
const std::string& scratch_path() {
  static const std::string path = [] {
    // Memory-backed when the machine has /dev/shm: a disk file made the target ~50x slower.
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
    std::string p = std::string(dir && *dir ? dir : "/tmp") + "/fathom-kv-fuzz-" + std::to_string(getpid());
    std::atexit([] { std::remove(scratch_path().c_str()); });
    return p;
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(scratch_path().c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  fathom::KvCache kv(seed_shape(), 8);
  kv.enable_prefix_cache();
  auto restored = fathom::restore_prefix_cache(kv, kKey, scratch_path());
  if (!restored && kv.pool().n_free() != 8) {
    std::fprintf(stderr, "rejected restore changed the cache\n");
    __builtin_trap();
  }
  return 0;
}
