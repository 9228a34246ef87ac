#include "kv/kv_persist.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <unordered_set>

namespace fathom {

namespace {

constexpr char kMagic[8] = {'F', 'A', 'T', 'H', 'O', 'M', 'K', 'V'};
constexpr char kTrailerMagic[8] = {'F', 'K', 'V', 'E', 'N', 'D', '\0', '\0'};
constexpr uint32_t kMaxArchitectureBytes = 256;  // longer is a corrupt header
constexpr size_t kIoBufferBytes = size_t{1} << 20;

// Detects damage, not tampering: FNV-style over 64-bit words with a fold so that every input bit
// reaches the whole state. Writer and reader hash the same fields in the same chunks.
class Checksum {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (; n >= 8; n -= 8, p += 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      mix(w);
    }
    if (n > 0) {
      uint64_t w = 0;
      std::memcpy(&w, p, n);
      mix(w ^ (static_cast<uint64_t>(n) << 56));
    }
  }
  uint64_t value() const { return h_; }

 private:
  void mix(uint64_t w) {
    h_ = (h_ ^ w) * 1099511628211ull;
    h_ ^= h_ >> 32;
  }
  uint64_t h_ = 1469598103934665603ull;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

size_t block_data_bytes(const KvCacheShape& s) {
  return static_cast<size_t>(s.block_size) * static_cast<size_t>(kv_bytes_per_token(s));
}

// Sequential writer that checksums what it writes; the first failure sticks.
class Writer {
 public:
  explicit Writer(std::FILE* f) : f_(f) {}
  void bytes(const void* data, size_t n) {
    if (n == 0 || !ok_) return;
    sum_.add(data, n);
    ok_ = std::fwrite(data, 1, n, f_) == n;
  }
  template <typename T>
  void value(T v) { bytes(&v, sizeof v); }
  void checksum() {  // writes the checksum of everything since the last one, then restarts it
    const uint64_t v = sum_.value();
    sum_ = Checksum();
    if (ok_) ok_ = std::fwrite(&v, sizeof v, 1, f_) == 1;
  }
  bool ok() const { return ok_; }

 private:
  std::FILE* f_;
  Checksum sum_;
  bool ok_ = true;
};

// Sequential reader that checksums what it reads and knows how many bytes are left.
class Reader {
 public:
  Reader(std::FILE* f, uint64_t size) : f_(f), left_(size) {}
  bool bytes(void* data, size_t n) {
    if (n > left_ || std::fread(data, 1, n, f_) != n) return false;
    left_ -= n;
    sum_.add(data, n);
    return true;
  }
  template <typename T>
  bool value(T& v) { return bytes(&v, sizeof v); }
  // Reads a stored checksum and compares it with the one computed since the last check.
  bool checksum_matches() {
    const uint64_t expected = sum_.value();
    sum_ = Checksum();
    uint64_t stored = 0;
    if (sizeof stored > left_ || std::fread(&stored, sizeof stored, 1, f_) != 1) return false;
    left_ -= sizeof stored;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    // The fuzz build (tests/fuzz) cannot forge checksums; without this every mutation past the
    // header would stop here and the entry parsing would go untested.
    (void)expected;
    return true;
#else
    return stored == expected;
#endif
  }
  uint64_t left() const { return left_; }

 private:
  std::FILE* f_;
  Checksum sum_;
  uint64_t left_;  // bytes of the file not read yet
};

// One block read from the file into the pool, not yet indexed.
struct StagedBlock {
  std::vector<int32_t> prefix_tokens;  // every token from position 0 through this block
  int32_t block = -1;                  // pool block holding its K/V rows (caller's reference)
  uint64_t key = 0;                    // chain key of the whole prefix
  uint64_t parent_key = 0;             // chain key without the last block (0 for the first)
};

// A type id from the file, by name when this build knows it.
std::string type_name(uint32_t id) {
  const std::optional<DTypeTraits> t = dtype_traits(id);
  return t ? std::string(t->name) : strprintf("type id %u", id);
}

}  // namespace

uint64_t fingerprint_model_file(const uint8_t* data, size_t size, size_t data_offset) {
  constexpr size_t kSamples = 64, kSampleBytes = 4096;
  Checksum sum;
  const uint64_t sizes[2] = {size, data_offset};
  sum.add(sizes, sizeof sizes);
  data_offset = std::min(data_offset, size);
  sum.add(data, data_offset);
  const size_t data_bytes = size - data_offset;
  for (size_t i = 0; i < kSamples && data_bytes > 0; ++i) {
    const size_t at = data_offset + (data_bytes - std::min(data_bytes, kSampleBytes)) / (kSamples - 1) * i;
    sum.add(data + at, std::min(kSampleBytes, size - at));
  }
  return sum.value();
}

Expected<KvPersistSaveStats> save_prefix_cache(const KvCache& kv, const KvPersistModelKey& key, const std::string& path) {
  if constexpr (std::endian::native != std::endian::little)
    return error(ErrorCode::kUnsupported, "saving the prefix cache needs a little-endian machine");
  const PrefixCache* prefix = kv.prefix_cache();
  if (!prefix) return error(ErrorCode::kInvalidArgument, "the prefix cache is off; nothing to save");
  const KvCacheShape& shape = kv.shape();
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  FilePtr f(std::fopen(tmp.c_str(), "wb"));
  if (!f) return error(ErrorCode::kIo, strprintf("%s: cannot create: %s", tmp.c_str(), std::strerror(errno)));
  // Not zero-filled: stdio touches only what it reads, so a small file costs a few pages, not 256.
  const auto buffer = std::make_unique_for_overwrite<char[]>(kIoBufferBytes);
  std::setvbuf(f.get(), buffer.get(), _IOFBF, kIoBufferBytes);
  const std::vector<PrefixCache::EntryView> entries = prefix->entries_lru();
  Writer w(f.get());
  w.bytes(kMagic, sizeof kMagic);
  w.value(kKvPersistVersion);
  w.value(key.fingerprint);
  w.value(static_cast<uint32_t>(shape.k_type));
  w.value(static_cast<uint32_t>(shape.v_type));
  w.value(static_cast<uint32_t>(shape.block_size));
  w.value(static_cast<int64_t>(shape.n_layer));
  w.value(static_cast<int64_t>(shape.k_width));
  w.value(static_cast<int64_t>(shape.v_width));
  w.value(static_cast<uint32_t>(key.architecture.size()));
  w.bytes(key.architecture.data(), key.architecture.size());
  w.value(static_cast<uint64_t>(entries.size()));
  w.checksum();
  const size_t k_bytes = static_cast<size_t>(shape.block_size) * kv.k_row_bytes();
  const size_t v_bytes = static_cast<size_t>(shape.block_size) * kv.v_row_bytes();
  for (const PrefixCache::EntryView& e : entries) {
    w.value(static_cast<uint32_t>(e.prefix_tokens->size()));
    w.bytes(e.prefix_tokens->data(), e.prefix_tokens->size() * sizeof(int32_t));
    for (int64_t l = 0; l < shape.n_layer; ++l) {
      w.bytes(kv.k_data(l, e.block, 0), k_bytes);
      w.bytes(kv.v_data(l, e.block, 0), v_bytes);
    }
    w.checksum();
  }
  w.bytes(kTrailerMagic, sizeof kTrailerMagic);
  w.value(static_cast<uint64_t>(entries.size()));
  bool ok = w.ok() && std::fflush(f.get()) == 0 && ::fsync(fileno(f.get())) == 0;
  const int write_errno = errno;
  ok = std::fclose(f.release()) == 0 && ok;
  std::error_code ec;
  if (!ok) {
    std::filesystem::remove(tmp, ec);
    return error(ErrorCode::kIo, strprintf("%s: write failed: %s (disk full?)", tmp.c_str(), std::strerror(write_errno)));
  }
  const auto n_bytes = std::filesystem::file_size(tmp, ec);
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    return error(ErrorCode::kIo, strprintf("cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), ec.message().c_str()));
  }
  KvPersistSaveStats stats;
  stats.n_blocks = static_cast<int64_t>(entries.size());
  stats.n_bytes = static_cast<int64_t>(n_bytes);
  return stats;
}

Expected<KvPersistRestoreStats> restore_prefix_cache(KvCache& kv, const KvPersistModelKey& key, const std::string& path) {
  if constexpr (std::endian::native != std::endian::little)
    return error(ErrorCode::kUnsupported, "restoring the prefix cache needs a little-endian machine");
  if (!kv.prefix_cache_enabled()) return error(ErrorCode::kInvalidArgument, "the prefix cache is off; nothing to restore into");
  const KvCacheShape& shape = kv.shape();
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) return error(ErrorCode::kNotFound, strprintf("%s: %s", path.c_str(), ec.message().c_str()));
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) return error(ErrorCode::kIo, strprintf("%s: cannot open: %s", path.c_str(), std::strerror(errno)));
  // Not zero-filled: stdio touches only what it reads, so a small file costs a few pages, not 256.
  const auto buffer = std::make_unique_for_overwrite<char[]>(kIoBufferBytes);
  std::setvbuf(f.get(), buffer.get(), _IOFBF, kIoBufferBytes);
  Reader r(f.get(), file_size);
  auto corrupt = [&path](const std::string& what) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: %s; the file is damaged (it is ignored and rewritten at shutdown)",
                                                    path.c_str(), what.c_str()));
  };

  // Header.
  char magic[8];
  uint32_t version = 0, k_type = 0, v_type = 0, block_size = 0, arch_len = 0;
  uint64_t fingerprint = 0, n_entries = 0;
  int64_t n_layer = 0, k_width = 0, v_width = 0;
  if (!r.bytes(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0)
    return error(ErrorCode::kInvalidFile, strprintf("%s: not a fathom prefix-cache file (bad magic)", path.c_str()));
  if (!r.value(version)) return corrupt("truncated header");
  if (version != kKvPersistVersion)
    return error(ErrorCode::kInvalidFile, strprintf("%s: format version %u, this build reads version %u", path.c_str(),
                                                    version, kKvPersistVersion));
  if (!r.value(fingerprint) || !r.value(k_type) || !r.value(v_type) || !r.value(block_size) || !r.value(n_layer) || !r.value(k_width) ||
      !r.value(v_width) || !r.value(arch_len))
    return corrupt("truncated header");
  if (arch_len > kMaxArchitectureBytes) return corrupt(strprintf("architecture name of %u bytes", arch_len));
  std::string architecture(arch_len, '\0');
  if (!r.bytes(architecture.data(), arch_len) || !r.value(n_entries)) return corrupt("truncated header");
  if (!r.checksum_matches()) return corrupt("header checksum mismatch");
  auto mismatch = [&path](const std::string& what) {
    return error(ErrorCode::kInvalidFile,
                 strprintf("%s: saved for a different model or cache layout (%s)", path.c_str(), what.c_str()));
  };
  if (architecture != key.architecture)
    return mismatch(strprintf("architecture '%s', this model is '%s'", architecture.c_str(), key.architecture.c_str()));
  if (fingerprint != key.fingerprint)
    return mismatch(strprintf("model fingerprint %016llx, this model's is %016llx", static_cast<unsigned long long>(fingerprint),
                              static_cast<unsigned long long>(key.fingerprint)));
  if (k_type != static_cast<uint32_t>(shape.k_type) || v_type != static_cast<uint32_t>(shape.v_type))
    return mismatch(strprintf("KV cache types K %s, V %s, this cache stores K %s, V %s (start with -ctk %s -ctv %s to use the "
                              "file)",
                              type_name(k_type).c_str(), type_name(v_type).c_str(), dtype_name(shape.k_type),
                              dtype_name(shape.v_type), type_name(k_type).c_str(), type_name(v_type).c_str()));
  if (static_cast<int32_t>(block_size) != shape.block_size)
    return mismatch(strprintf("block size %u, this cache uses %d", block_size, shape.block_size));
  if (n_layer != shape.n_layer || k_width != shape.k_width || v_width != shape.v_width)
    return mismatch(strprintf("KV shape %lld layers x (%lld + %lld), this cache is %lld x (%lld + %lld)",
                              static_cast<long long>(n_layer), static_cast<long long>(k_width), static_cast<long long>(v_width),
                              static_cast<long long>(shape.n_layer), static_cast<long long>(shape.k_width),
                              static_cast<long long>(shape.v_width)));
  // Every entry holds at least one block of tokens and data plus its length and checksum; a count
  // the file cannot hold is damage, caught before anything is allocated for it.
  const uint64_t min_entry_bytes = 4 + static_cast<uint64_t>(shape.block_size) * 4 + block_data_bytes(shape) + 8;
  const uint64_t trailer_bytes = sizeof kTrailerMagic + 8;
  if (r.left() < trailer_bytes || n_entries > (r.left() - trailer_bytes) / min_entry_bytes)
    return corrupt(strprintf("%llu blocks do not fit in its %llu bytes (truncated?)", static_cast<unsigned long long>(n_entries),
                             static_cast<unsigned long long>(file_size)));

  // Entries: read into free blocks, staged until the whole file has checked out.
  KvPersistRestoreStats stats;
  stats.n_entries = static_cast<int64_t>(n_entries);
  const uint64_t capacity = static_cast<uint64_t>(kv.pool().n_free());
  const uint64_t first_kept = n_entries > capacity ? n_entries - capacity : 0;  // the file is oldest first
  std::vector<StagedBlock> staged;
  auto discard = [&kv, &staged] {
    for (const StagedBlock& s : staged) kv.return_block(s.block);
    staged.clear();
  };
  const size_t k_bytes = static_cast<size_t>(shape.block_size) * kv.k_row_bytes();
  const size_t v_bytes = static_cast<size_t>(shape.block_size) * kv.v_row_bytes();
  std::vector<uint8_t> scratch;  // data of blocks that are read but not restored
  for (uint64_t i = 0; i < n_entries; ++i) {
    const std::string where = strprintf("block %llu of %llu", static_cast<unsigned long long>(i + 1),
                                        static_cast<unsigned long long>(n_entries));
    uint32_t n_prefix = 0;
    if (!r.value(n_prefix)) return discard(), corrupt(where + ": truncated");
    if (n_prefix == 0 || n_prefix % block_size != 0 || static_cast<uint64_t>(n_prefix) * 4 > r.left())
      return discard(), corrupt(strprintf("%s: %u prefix tokens (not a positive multiple of %u, or past the end)", where.c_str(),
                                          n_prefix, block_size));
    StagedBlock s;
    s.prefix_tokens.resize(n_prefix);
    if (!r.bytes(s.prefix_tokens.data(), static_cast<size_t>(n_prefix) * 4)) return discard(), corrupt(where + ": truncated");
    const bool keep = i >= first_kept && static_cast<int64_t>(n_prefix) <= shape.n_ctx_max;
    if (keep) {
      const std::optional<int32_t> block = kv.take_free_block();
      FATHOM_CHECK(block.has_value());  // at most n_free blocks are kept
      s.block = *block;
    } else {
      scratch.resize(std::max(k_bytes, v_bytes));
      if (i >= first_kept) ++stats.n_skipped_context;
      else ++stats.n_skipped_capacity;
    }
    bool read_ok = true;
    for (int64_t l = 0; l < shape.n_layer && read_ok; ++l) {
      read_ok = r.bytes(keep ? kv.k_data(l, s.block, 0) : scratch.data(), k_bytes) &&
                r.bytes(keep ? kv.v_data(l, s.block, 0) : scratch.data(), v_bytes);
    }
    if (keep) staged.push_back(std::move(s));  // owned from here on, so discard() returns it
    if (!read_ok) return discard(), corrupt(where + ": truncated");
    if (!r.checksum_matches()) return discard(), corrupt(where + ": checksum mismatch");
  }
  char trailer[8];
  uint64_t trailer_entries = 0;
  if (!r.bytes(trailer, sizeof trailer) || std::memcmp(trailer, kTrailerMagic, sizeof trailer) != 0 ||
      !r.value(trailer_entries) || trailer_entries != n_entries)
    return discard(), corrupt("bad or missing end marker (truncated?)");
  if (r.left() != 0 || std::fgetc(f.get()) != EOF)
    return discard(), corrupt(strprintf("%llu unexpected bytes after the end marker", static_cast<unsigned long long>(r.left())));

  // Index, oldest first so the LRU order carries over. A block is reachable by lookup only when
  // every shorter prefix of it is cached too; the others would never hit, so their blocks go back.
  for (StagedBlock& s : staged) {
    const size_t n_blocks = s.prefix_tokens.size() / block_size;
    for (size_t b = 0; b < n_blocks; ++b) {
      s.parent_key = s.key;
      s.key = PrefixCache::chain_key(s.key, s.prefix_tokens.data() + b * block_size, static_cast<int32_t>(block_size));
    }
  }
  std::vector<const StagedBlock*> by_length;
  for (const StagedBlock& s : staged) by_length.push_back(&s);
  std::stable_sort(by_length.begin(), by_length.end(),
                   [](const StagedBlock* a, const StagedBlock* b) { return a->prefix_tokens.size() < b->prefix_tokens.size(); });
  std::unordered_set<uint64_t> reachable;  // chain keys of prefixes restored with all their parents
  for (const StagedBlock* s : by_length)
    if (s->prefix_tokens.size() == block_size || reachable.count(s->parent_key)) reachable.insert(s->key);
  for (const StagedBlock& s : staged) {
    if (reachable.count(s.key)) {
      kv.index_restored_block(s.prefix_tokens, s.block);
      ++stats.n_restored;
    } else {
      kv.return_block(s.block);
      ++stats.n_skipped_orphan;
    }
  }
  return stats;
}

}  // namespace fathom
