#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

#include "core/process.h"

namespace fathom {

namespace {

constexpr size_t kPage = 4096;  // allocation alignment: tensor data keeps the alignment a mapping gives

uint8_t* allocate_pages(size_t size) {
  const size_t rounded = (std::max<size_t>(size, 1) + kPage - 1) / kPage * kPage;
  return static_cast<uint8_t*>(std::aligned_alloc(kPage, rounded));
}

Status read_all(int fd, uint8_t* out, size_t size, const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return error(ErrorCode::kIo, strprintf("cannot read '%s' at offset %zu: %s", path.c_str(), done,
                                             n < 0 ? std::strerror(errno) : "unexpected end of file"));
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Expected<std::unique_ptr<MappedFile>> MappedFile::open(const std::string& path, const MapOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 strprintf("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error(ErrorCode::kIo, strprintf(S_ISDIR(st.st_mode) ? "'%s' is a directory, not a file" : "'%s' is not a regular file",
                                           path.c_str()));
  }
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (options.read) {
    const Expected<HostMemory> host = read_host_memory();
    if (host && host->available_bytes > 0 && host->available_bytes < f->size_) {
      ::close(fd);
      return error(ErrorCode::kOutOfMemory,
                   strprintf("reading '%s' into memory needs %.1f MiB but only %.1f MiB are available; map it instead",
                             path.c_str(), static_cast<double>(f->size_) / (1024.0 * 1024.0),
                             static_cast<double>(host->available_bytes) / (1024.0 * 1024.0)));
    }
    uint8_t* buf = allocate_pages(f->size_);
    if (!buf) {
      ::close(fd);
      return error(ErrorCode::kOutOfMemory, strprintf("cannot allocate %zu bytes to read '%s'", f->size_, path.c_str()));
    }
    f->data_ = buf;
    const Status st_read = read_all(fd, buf, f->size_, path);
    ::close(fd);
    FATHOM_RETURN_IF_ERROR(st_read);
  } else if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return error(ErrorCode::kIo, strprintf("cannot mmap '%s': %s", path.c_str(), std::strerror(errno)));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->is_mmap_ = true;
    ::close(fd);
  } else {
    ::close(fd);
  }
  if (options.lock && f->size_ > 0) {
    if (mlock(f->data_, f->size_) != 0) {
      const int err = errno;
      rlimit limit{};
      getrlimit(RLIMIT_MEMLOCK, &limit);
      const std::string allowed = limit.rlim_cur == RLIM_INFINITY ? "unlimited"
                                                                  : strprintf("%llu KiB", static_cast<unsigned long long>(limit.rlim_cur / 1024));
      return error(ErrorCode::kOutOfMemory,
                   strprintf("cannot lock the %.1f MiB of '%s' in RAM: %s (locked-memory limit %s; raise it with "
                             "`ulimit -l` or leave out the lock)",
                             static_cast<double>(f->size_) / (1024.0 * 1024.0), path.c_str(), std::strerror(err), allowed.c_str()));
    }
    f->is_locked_ = true;
  }
  return f;
}

std::unique_ptr<MappedFile> MappedFile::from_bytes(const void* data, size_t size, std::string name) {
  std::unique_ptr<MappedFile> f(new MappedFile());
  uint8_t* buf = allocate_pages(size);
  if (!buf) throw std::bad_alloc();
  if (size > 0) std::memcpy(buf, data, size);
  f->data_ = buf;
  f->size_ = size;
  f->path_ = std::move(name);
  return f;
}

MappedFile::~MappedFile() {
  if (is_locked_) munlock(data_, size_);
  if (is_mmap_) {
    munmap(const_cast<uint8_t*>(data_), size_);
  } else {
    std::free(const_cast<uint8_t*>(data_));
  }
}

Expected<std::string> read_text_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return error(ErrorCode::kInvalidArgument, strprintf("'%s' is a directory, not a file", path.c_str()));
  std::ifstream in(path, std::ios::binary);
  if (!in) return error(ErrorCode::kNotFound, strprintf("cannot open '%s'", path.c_str()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace fathom
