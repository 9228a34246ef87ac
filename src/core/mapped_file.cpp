#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fathom {

Expected<std::unique_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 strprintf("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error(ErrorCode::kIo, strprintf("'%s' is not a regular file", path.c_str()));
  }
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return error(ErrorCode::kIo, strprintf("cannot mmap '%s': %s", path.c_str(), std::strerror(errno)));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->is_mmap_ = true;
  }
  ::close(fd);
  return f;
}

std::unique_ptr<MappedFile> MappedFile::from_bytes(const void* data, size_t size, std::string name) {
  std::unique_ptr<MappedFile> f(new MappedFile());
  auto* buf = new uint8_t[size > 0 ? size : 1];
  if (size > 0) std::memcpy(buf, data, size);
  f->data_ = buf;
  f->size_ = size;
  f->path_ = std::move(name);
  return f;
}

MappedFile::~MappedFile() {
  if (is_mmap_) {
    munmap(const_cast<uint8_t*>(data_), size_);
  } else {
    delete[] data_;
  }
}

Expected<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kNotFound, strprintf("cannot open '%s'", path.c_str()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace fathom
