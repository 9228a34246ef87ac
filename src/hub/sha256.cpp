#include "hub/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace fathom::hub {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;  // owned
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  FATHOM_CHECK(impl_->ctx != nullptr);
  reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::reset() { FATHOM_CHECK(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1); }

void Sha256::update(const void* data, size_t n) { FATHOM_CHECK(EVP_DigestUpdate(impl_->ctx, data, n) == 1); }

std::string Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  FATHOM_CHECK(EVP_DigestFinal_ex(impl_->ctx, digest, &n) == 1);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  reset();
  return hex;
}

Status hash_file_prefix(const std::string& path, uint64_t n_bytes, Sha256& hasher) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return error(ErrorCode::kIo, strprintf("cannot open '%s': %s", path.c_str(), std::strerror(errno)));
  std::vector<char> buf(1 << 20);
  uint64_t left = n_bytes;
  while (left > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    const size_t got = std::fread(buf.data(), 1, want, f);
    hasher.update(buf.data(), got);
    left -= got;
    if (got < want) break;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return error(ErrorCode::kIo, strprintf("cannot read '%s'", path.c_str()));
  if (left > 0)
    return error(ErrorCode::kIo, strprintf("'%s' is shorter than %llu bytes", path.c_str(),
                                           static_cast<unsigned long long>(n_bytes)));
  return Status::ok();
}

}  // namespace fathom::hub
