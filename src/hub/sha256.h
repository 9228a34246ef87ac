// Incremental SHA-256 (OpenSSL's EVP interface), for checking downloads against the digests
// Hugging Face reports for LFS files.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.h"

namespace fathom::hub {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  std::string hex_digest();  // 64 lower-case hex digits; the hasher is then reset
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;  // the EVP_MD_CTX
};

// Feeds bytes [0, n_bytes) of a file into hasher; a shorter file or a read error is an error
// naming the path.
Status hash_file_prefix(const std::string& path, uint64_t n_bytes, Sha256& hasher);

}  // namespace fathom::hub
