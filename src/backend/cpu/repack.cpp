#include "backend/cpu/repack.h"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"
#include "core/process.h"
#include "core/streamed_memory.h"
#include "quant/blocks.h"

namespace fathom::cpu {

namespace {

using namespace fathom::quant;

constexpr int64_t R = kGemmRows;

size_t block_bytes(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::IQ4_NL: return 2 * R + 4 * 64;
    case DType::Q5_0: return 2 * R + 4 * 64 + 64;
    case DType::Q8_0: return 2 * R + 8 * 64;
    case DType::Q4_K: return 4 * R + 16 * R + 8 * 4 * 64;
    case DType::Q5_K: return 4 * R + 16 * R + 8 * 4 * 64 + 8 * 64;
    case DType::Q6_K: return 2 * R + 16 * R + 8 * kQ6PairBytes;
    case DType::IQ4_XS: return 2 * R + 8 * R + 8 * 4 * 64;
    case DType::TQ1_0: case DType::TQ2_0: return 2 * R + 8 * 2 * 64;
    case DType::F16: case DType::BF16: return 2 * R;
    case DType::F32: return 4 * R;
    default: return 0;
  }
}

int64_t block_values(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: return 32;
    case DType::F16: case DType::BF16: case DType::F32: return 1;
    default: return kQK;
  }
}

// The 256 6-bit values (0..63) of a q6_K block in value order.
void q6_K_values(const block_q6_K& b, uint8_t* q) {
  for (int c = 0; c < 2; ++c) {
    const uint8_t* ql = b.ql + 64 * c;
    const uint8_t* qh = b.qh + 32 * c;
    for (int l = 0; l < 32; ++l) {
      q[128 * c + l] = static_cast<uint8_t>((ql[l] & 15) | (qh[l] & 3) << 4);
      q[128 * c + 32 + l] = static_cast<uint8_t>((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4);
      q[128 * c + 64 + l] = static_cast<uint8_t>((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
      q[128 * c + 96 + l] = static_cast<uint8_t>((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
    }
  }
}

// The nibble and 5th-bit vectors of one 32-value block of row r: nibble vector g (4 x 64 B at
// `nib`) gets byte v[4g+k] | v[16+4g+k] << 4 at 4r + k; the high-bit vector (64 B at `hi`, null
// for 4-bit types) gets bit g' of byte 4r + k = bit 4 of value 4g' + k.
void put_32(const uint8_t* v, int64_t r, uint8_t* nib, uint8_t* hi) {
  for (int g = 0; g < 4; ++g)
    for (int k = 0; k < 4; ++k)
      nib[64 * g + 4 * r + k] = static_cast<uint8_t>((v[4 * g + k] & 15) | (v[16 + 4 * g + k] & 15) << 4);
  if (hi == nullptr) return;
  for (int k = 0; k < 4; ++k) {
    uint8_t bits = 0;
    for (int g = 0; g < 8; ++g) bits = static_cast<uint8_t>(bits | ((v[4 * g + k] >> 4) & 1) << g);
    hi[4 * r + k] = bits;
  }
}

// Writes row r (0..15) of one block of the x16 layout at `out` from the source block `src`.
void put_row(DType t, const uint8_t* src, int64_t r, uint8_t* out) {
  switch (t) {
    case DType::Q4_0:
    case DType::IQ4_NL: {
      // The same 18 bytes: fp16 d, then 32 nibbles (iq4_nl's are codebook indices).
      static_assert(sizeof(block_q4_0) == sizeof(block_iq4_nl));
      const auto& b = *reinterpret_cast<const block_q4_0*>(src);
      std::memcpy(out + 2 * r, &b.d, 2);
      for (int g = 0; g < 4; ++g) std::memcpy(out + 2 * R + 64 * g + 4 * r, b.qs + 4 * g, 4);
      return;
    }
    case DType::Q5_0: {
      const auto& b = *reinterpret_cast<const block_q5_0*>(src);
      std::memcpy(out + 2 * r, &b.d, 2);
      uint32_t qh;
      std::memcpy(&qh, b.qh, 4);
      uint8_t v[32];
      for (int l = 0; l < 16; ++l) {
        v[l] = static_cast<uint8_t>((b.qs[l] & 15) | ((qh >> l) & 1) << 4);
        v[l + 16] = static_cast<uint8_t>((b.qs[l] >> 4) | ((qh >> (l + 16)) & 1) << 4);
      }
      put_32(v, r, out + 2 * R, out + 2 * R + 4 * 64);
      return;
    }
    case DType::Q8_0: {
      const auto& b = *reinterpret_cast<const block_q8_0*>(src);
      std::memcpy(out + 2 * r, &b.d, 2);
      for (int g = 0; g < 8; ++g)
        for (int k = 0; k < 4; ++k)
          out[2 * R + 64 * g + 4 * r + k] = static_cast<uint8_t>(static_cast<uint8_t>(b.qs[4 * g + k]) ^ 0x80);
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      uint16_t d, dmin;
      std::memcpy(&d, src, 2);
      std::memcpy(&dmin, src + 2, 2);
      const uint8_t* scales = src + 4;
      const uint8_t* qh = five ? src + 16 : nullptr;
      const uint8_t* qsrc = src + (five ? 48 : 16);
      std::memcpy(out + 2 * r, &d, 2);
      std::memcpy(out + 2 * R + 2 * r, &dmin, 2);
      uint8_t* sc = out + 4 * R;
      uint8_t* mn = sc + 8 * R;
      uint8_t* qs = mn + 8 * R;
      uint8_t* hi = qs + 8 * 4 * 64;
      for (int j = 0; j < 8; ++j) {
        unpack_scale_min_k4(j, scales, &sc[j * R + r], &mn[j * R + r]);
        uint8_t v[32];
        const uint8_t* q = qsrc + 32 * (j / 2);
        const int shift = 4 * (j & 1);
        for (int l = 0; l < 32; ++l) {
          v[l] = (q[l] >> shift) & 15;
          if (qh) v[l] = static_cast<uint8_t>(v[l] | ((qh[l] >> j) & 1) << 4);
        }
        put_32(v, r, qs + 256 * j, five ? hi + 64 * j : nullptr);
      }
      return;
    }
    case DType::Q6_K: {
      const auto& b = *reinterpret_cast<const block_q6_K*>(src);
      std::memcpy(out + 2 * r, &b.d, 2);
      int8_t* sc = reinterpret_cast<int8_t*>(out + 2 * R);
      uint8_t* qv = out + 2 * R + 16 * R;
      uint8_t v[256];
      q6_K_values(b, v);
      for (int j = 0; j < 16; ++j) sc[j * R + r] = b.scales[j];
      for (int p = 0; p < 8; ++p) {
        const uint8_t* pv = v + 32 * p;  // sub-blocks 2p and 2p + 1
        uint8_t* pair = qv + kQ6PairBytes * p;
        put_32(pv, r, pair, nullptr);  // the low 4 bits
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < 4; ++k) {
            uint8_t bits = 0;
            for (int l = 0; l < 4; ++l) bits = static_cast<uint8_t>(bits | ((pv[16 * h + 4 * l + k] >> 4) & 3) << (2 * l));
            pair[4 * 64 + 64 * h + 4 * r + k] = bits;
          }
      }
      return;
    }
    case DType::IQ4_XS: {
      const auto& b = *reinterpret_cast<const block_iq4_xs*>(src);
      std::memcpy(out + 2 * r, &b.d, 2);
      auto* sc = reinterpret_cast<int8_t*>(out + 2 * R);
      uint8_t* qs = out + 2 * R + 8 * R;
      for (int j = 0; j < 8; ++j) {
        sc[j * R + r] = static_cast<int8_t>(iq4_xs_scale(b, j));
        for (int g = 0; g < 4; ++g) std::memcpy(qs + 256 * j + 64 * g + 4 * r, b.qs + 16 * j + 4 * g, 4);
      }
      return;
    }
    case DType::TQ1_0:
    case DType::TQ2_0: {
      uint16_t d;
      std::memcpy(&d, src + (t == DType::TQ1_0 ? offsetof(block_tq1_0, d) : offsetof(block_tq2_0, d)), 2);
      std::memcpy(out + 2 * r, &d, 2);
      uint8_t v[256];
      ternary_fields(t, src, v);
      for (int j = 0; j < 8; ++j)
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < 4; ++k) {
            uint8_t byte = 0;
            for (int l = 0; l < 4; ++l) byte = static_cast<uint8_t>(byte | v[32 * j + 4 * (4 * h + l) + k] << (2 * l));
            out[2 * R + 128 * j + 64 * h + 4 * r + k] = byte;
          }
      return;
    }
    case DType::F16:
    case DType::BF16:
      std::memcpy(out + 2 * r, src, 2);
      return;
    case DType::F32:
      std::memcpy(out + 4 * r, src, 4);
      return;
    default:
      return;
  }
}

}  // namespace

void ternary_fields(DType t, const uint8_t* block, uint8_t* fields) {
  if (t == DType::TQ2_0) {
    const auto& b = *reinterpret_cast<const block_tq2_0*>(block);
    for (int c = 0; c < 2; ++c)
      for (int l = 0; l < 4; ++l)
        for (int m = 0; m < 32; ++m) fields[128 * c + 32 * l + m] = static_cast<uint8_t>((b.qs[32 * c + m] >> (2 * l)) & 3);
    return;
  }
  const auto& b = *reinterpret_cast<const block_tq1_0*>(block);
  for (int v = 0; v < 160; ++v) fields[v] = static_cast<uint8_t>(tq1_0_trit(b.qs[v % 32], v / 32));
  for (int u = 0; u < 80; ++u) fields[160 + u] = static_cast<uint8_t>(tq1_0_trit(b.qs[32 + u % 16], u / 16));
  for (int u = 0; u < 16; ++u) fields[240 + u] = static_cast<uint8_t>(tq1_0_trit(b.qh[u % 4], u / 4));
}

bool repackable(DType t) { return block_bytes(t) != 0; }

size_t repacked_group_bytes(DType t, int64_t n) {
  return block_bytes(t) * static_cast<size_t>(n / block_values(t));
}

namespace {
void arena_owned(void*) {}  // RepackedMatrix's deleter for bytes a StreamedArena owns
}  // namespace

RepackedMatrix repack(const TensorView& w, ThreadPool* pool, StreamedArena* arena) {
  RepackedMatrix m;
  if (!repackable(w.dtype) || w.ne[0] % block_values(w.dtype) != 0) return m;
  m.type = w.dtype;
  m.n = w.ne[0];
  m.n_rows = w.n_rows();
  m.n_groups = (m.n_rows + R - 1) / R;
  m.group_bytes = repacked_group_bytes(w.dtype, m.n);
  const size_t total = m.group_bytes * static_cast<size_t>(m.n_groups);
  // Decode streams every weight once per token: huge pages (streamed_memory.h).
  void* p = arena != nullptr ? arena->allocate(total) : allocate_streamed(total);
  if (p == nullptr) return m;
  m.data = std::unique_ptr<uint8_t, void (*)(void*)>(static_cast<uint8_t*>(p), arena != nullptr ? arena_owned : std::free);
  const int64_t nb = m.n / block_values(w.dtype);
  const size_t in_block = traits(w.dtype).type_size, out_block = block_bytes(w.dtype);
  const size_t row_bytes = w.row_bytes();
  const auto* src = static_cast<const uint8_t*>(w.data);
  auto work = [&](int, int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* out = m.data.get() + static_cast<size_t>(g) * m.group_bytes;
      if ((g + 1) * R > m.n_rows) std::memset(out, 0, m.group_bytes);  // padding rows of the last group
      for (int64_t r = 0; r < R && g * R + r < m.n_rows; ++r) {
        const uint8_t* row = src + static_cast<size_t>(g * R + r) * row_bytes;
        for (int64_t b = 0; b < nb; ++b) put_row(w.dtype, row + static_cast<size_t>(b) * in_block, r, out + static_cast<size_t>(b) * out_block);
      }
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(m.n_groups, 1, work);
  } else {
    work(0, 0, m.n_groups);
  }
  return m;
}

namespace {

// Drops the pages of [p, p + n) from this process (whole pages inside the range only).
void release_source(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

bool repack_not_switched_off() {
  const char* off = std::getenv("FATHOM_NO_REPACK");
  return off == nullptr || off[0] == '\0' || off[0] == '0';
}

}  // namespace

size_t repacked_bytes(const TensorView& w) {
  if (!repackable(w.dtype)) return 0;
  return repacked_group_bytes(w.dtype, w.ne[0]) * static_cast<size_t>((w.n_rows() + kGemmRows - 1) / kGemmRows);
}

bool repacking_enabled() { return repack_not_switched_off() && best_kernels().gemm_is_simd; }

RepackCache::RepackCache() {
  enabled_ = repack_not_switched_off();
  const Expected<HostMemory> host = read_host_memory();
  budget_ = host ? repack_budget(host->available_bytes) : SIZE_MAX;
}

const RepackedMatrix* RepackCache::get(const TensorView& w, ThreadPool& pool, bool release) {
  if (!enabled_ || !repackable(w.dtype)) return nullptr;
  auto it = cache_.find(w.data);
  if (it != cache_.end()) return it->second.data ? &it->second : nullptr;
  RepackedMatrix m;
  const size_t need = repacked_bytes(w);
  if (bytes_ + need <= budget_) m = repack(w, &pool, &arena_);
  if (m.data) {
    bytes_ += need;
    if (release) release_source(w.data, w.n_bytes());
  } else {
    ++n_skipped_;
  }
  auto [pos, inserted] = cache_.emplace(w.data, std::move(m));
  return pos->second.data ? &pos->second : nullptr;
}

}  // namespace fathom::cpu
