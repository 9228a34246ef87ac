// Weight repacking at load time: a GGUF matrix in q4_0, q5_0, q8_0, q4_K, q5_K, q6_K, iq4_nl,
// iq4_xs, tq1_0, tq2_0, f16, bf16 or f32 is rewritten into
// an interleaved "x16" layout where each group of kGemmRows (16) consecutive rows is stored
// block by block with the 16 rows side by side, so one 512-bit register holds 4 values of each
// of the 16 rows and the int8 dot-product instruction serves 16 rows at once (gemm.h). The
// same layout serves decode (one token) and prefill (many), with the same arithmetic per row
// and token, so a sequence's logits do not depend on what else is in its batch.
//
// Per 16-row group, block after block (b = 32-value block, or K-quant super-block):
//   q4_0x16:  d[16] fp16 | 4 x 64 B nibbles     (vector g: bytes qs[4g..4g+3] of rows 0..15;
//                                                low nibbles = values 4g.., high = 16+4g..)
//   q5_0x16:  as q4_0x16, then 64 B of 5th bits (bit g of byte 4r+k: value 4g+k of row r)
//   q8_0x16:  d[16] fp16 | 8 x 64 B (q + 128)   (vector g: values 4g..4g+3 of rows 0..15)
//   q4_Kx16:  d[16] dmin[16] fp16 | sc[8][16] m[8][16] u8 | 8 sub-blocks x 4 x 64 B nibbles
//   q5_Kx16:  as q4_Kx16, then 8 sub-blocks x 64 B of 5th bits (as q5_0x16)
//   q6_Kx16:  d[16] fp16 | sc[16][16] i8 | 8 pairs of sub-blocks (2p, 2p + 1) x (4 x 64 B nibbles
//             as q4_0x16's, low = sub-block 2p, high = 2p + 1; then 2 x 64 B of high 2-bit fields:
//             bits 2l, 2l+1 of byte 4r+k of vector h = bits 4-5 of q of value 4l+k, sub-block 2p+h)
//   iq4_nlx16: as q4_0x16, the nibbles being indices into the codebook (the kernels look them up)
//   iq4_xsx16: d[16] fp16 | sc[8][16] i8 (the 6-bit scale - 32) | 8 sub-blocks x 4 x 64 B nibbles
//   tq2_0x16, tq1_0x16: d[16] fp16 | 8 sub-blocks x 2 x 64 B of 2-bit fields t (value = t - 1):
//                      bits 2l, 2l+1 of byte 4r+k of vector h hold value 4(4h+l)+k of row r's sub-block
//   f16/bf16/f32 x16: value i of rows 0..15 side by side, i = 0..n-1
// q4_0/q5_0/q8_0/iq4_nl/q6_K/tq2_0/f16/bf16/f32 keep the file's size, q4_K/q5_K grow 2-3%, iq4_xs
// 1.5%, tq1_0's base-3 bytes become 2-bit fields (+22%).
// Rows past the end of the matrix are zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "core/streamed_memory.h"
#include "core/tensor.h"
#include "core/threadpool.h"

namespace fathom::cpu {

struct RepackedMatrix {
  DType type = DType::F32;  // source GGUF type
  int64_t n = 0;            // values per row
  int64_t n_rows = 0;
  int64_t n_groups = 0;     // ceil(n_rows / 16)
  size_t group_bytes = 0;   // bytes of one 16-row group
  std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, nullptr};  // 64-byte aligned

  const uint8_t* group(int64_t g) const { return data.get() + static_cast<size_t>(g) * group_bytes; }
};

// Types with an x16 layout.
bool repackable(DType t);
// The 256 fields t (0..2; tq2_0 may hold 3) of one tq1_0 or tq2_0 block in value order; the
// value is t - 1 times the block's d (blocks.h).
void ternary_fields(DType t, const uint8_t* block, uint8_t* fields);
// Bytes one 16-row group of rows with n values takes.
size_t repacked_group_bytes(DType t, int64_t n);
// Bytes the repacked copy of w takes (0 for a type without an x16 layout).
size_t repacked_bytes(const TensorView& w);
// Repacked copies stop at 3/4 of the memory available when the cache is created, leaving room
// for the KV cache and activations; the rest stays in the GGUF layout.
inline size_t repack_budget(uint64_t available_bytes) { return static_cast<size_t>(available_bytes / 4 * 3); }
// Whether a CpuBackend on this machine makes repacked copies (a SIMD gemm, FATHOM_NO_REPACK unset).
bool repacking_enabled();

// Rewrites w (a repackable type, n a multiple of the super-block) into the x16 layout, split
// over the pool. Returns an empty matrix (data null) when memory cannot be allocated. With an
// arena the bytes come from it (and live as long as it does), else the matrix owns them.
RepackedMatrix repack(const TensorView& w, ThreadPool* pool, StreamedArena* arena = nullptr);

// Repacked copies of the weights a backend has multiplied with, made on first use and kept.
// Repacking is skipped (the caller uses the GGUF layout in place, from the mmap) for types
// without an x16 layout, when FATHOM_NO_REPACK is set, and once the copies would take more
// than 3/4 of the memory that was available when the cache was created. When the caller says
// the source is a read-only file mapping, its pages are released once copied (MADV_DONTNEED;
// re-read from the file if anything touches them again), so memory stays about the size of
// the model. Memory the program owns is never released (MADV_DONTNEED would zero it).
class RepackCache {
 public:
  RepackCache();
  // The repacked form of w, or nullptr to use w as it is. release_source: w lies in a read-only
  // file mapping whose pages may be dropped after the copy.
  const RepackedMatrix* get(const TensorView& w, ThreadPool& pool, bool release_source = false);
  size_t bytes() const { return bytes_; }
  size_t n_skipped() const { return n_skipped_; }

 private:
  StreamedArena arena_;  // the matrices' bytes, in huge pages however small they are
  std::unordered_map<const void*, RepackedMatrix> cache_;
  size_t bytes_ = 0;
  size_t budget_ = 0;
  size_t n_skipped_ = 0;
  bool enabled_ = true;
};

}  // namespace fathom::cpu
