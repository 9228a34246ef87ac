// Read-only memory map of a whole file. Weights are used in place from the map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace fathom {

// How MappedFile::open brings a file into memory.
struct MapOptions {
  bool read = false;   // read it into an allocation instead of mapping it (pages cannot be dropped)
  bool lock = false;   // mlock the bytes in RAM; when RLIMIT_MEMLOCK forbids it, open fails
};

class MappedFile {
 public:
  static Expected<std::unique_ptr<MappedFile>> open(const std::string& path, const MapOptions& options = {});
  // Wraps bytes already in memory (tests, fuzzing); the buffer is copied.
  static std::unique_ptr<MappedFile> from_bytes(const void* data, size_t size, std::string name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool is_mmap() const { return is_mmap_; }  // a file mapping (pages can be dropped and re-read)
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;  // [size_] bytes, read-only
  size_t size_ = 0;
  bool is_mmap_ = false;           // munmap on destruction, else free (page-aligned allocation)
  bool is_locked_ = false;         // munlock on destruction
  std::string path_;
};

// Reads a whole (small) text file; errors name the path and say when it is a directory.
Expected<std::string> read_text_file(const std::string& path);

}  // namespace fathom
