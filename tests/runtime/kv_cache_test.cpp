// Block pool and paged KV cache: exact block ids, reference counts, limits.
#include <gtest/gtest.h>

#include "kv/kv_cache.h"

namespace fathom {
namespace {

KvCacheShape small_shape() {
  KvCacheShape s;
  s.n_layer = 2;
  s.k_width = 4;
  s.v_width = 4;
  s.block_size = 4;
  s.n_ctx_max = 32;
  return s;
}

TEST(BlockPool, HandsOutAscendingIdsAndReusesTheLastFreed) {
  BlockPool pool(4);
  EXPECT_EQ(*pool.allocate(), 0);
  EXPECT_EQ(*pool.allocate(), 1);
  EXPECT_EQ(*pool.allocate(), 2);
  pool.release(1);
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_EQ(*pool.allocate(), 1);  // most recently freed first
  EXPECT_EQ(*pool.allocate(), 3);
  EXPECT_FALSE(pool.allocate().has_value());
}

TEST(BlockPool, SharedBlockReturnsOnlyAfterLastOwner) {
  BlockPool pool(2);
  const int32_t b = *pool.allocate();
  pool.retain(b);
  EXPECT_EQ(pool.ref_count(b), 2);
  pool.release(b);
  EXPECT_EQ(pool.n_free(), 1);
  pool.release(b);
  EXPECT_EQ(pool.n_free(), 2);
}

TEST(KvCache, ReserveAllocatesWholeBlocksInOrder) {
  KvCache kv(small_shape(), 8);
  ASSERT_TRUE(kv.reserve(7, 5).is_ok());  // 5 tokens -> 2 blocks
  EXPECT_EQ(kv.block_table(7), (std::vector<int32_t>{0, 1}));
  ASSERT_TRUE(kv.reserve(9, 4).is_ok());
  EXPECT_EQ(kv.block_table(9), (std::vector<int32_t>{2}));
  ASSERT_TRUE(kv.reserve(7, 8).is_ok());  // still 2 blocks
  EXPECT_EQ(kv.block_table(7).size(), 2u);
  ASSERT_TRUE(kv.reserve(7, 9).is_ok());
  EXPECT_EQ(kv.block_table(7), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(kv.capacity(7), 12);
  kv.free_sequence(7);
  EXPECT_EQ(kv.pool().n_free(), 7);
  EXPECT_FALSE(kv.has_sequence(7));
}

TEST(KvCache, RowsOfPositionsLandInTheirBlocks) {
  KvCache kv(small_shape(), 8);
  ASSERT_TRUE(kv.reserve(1, 3).is_ok());
  ASSERT_TRUE(kv.reserve(2, 6).is_ok());  // blocks 1, 2
  kv.k_at(1, 2, 5)[0] = 42.0f;
  EXPECT_EQ(kv.k_row(1, 2, 1)[0], 42.0f);  // position 5 = block index 1 (id 2), slot 1
  kv.v_at(0, 1, 2)[3] = 7.0f;
  EXPECT_EQ(kv.v_row(0, 0, 2)[3], 7.0f);
}

TEST(KvCache, LimitsAreErrorsThatAllocateNothing) {
  KvCache kv(small_shape(), 3);
  const Status too_long = kv.reserve(1, 33);
  EXPECT_EQ(too_long.code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(kv.pool().n_free(), 3);
  const Status full = kv.reserve(1, 13);
  EXPECT_EQ(full.code(), ErrorCode::kOutOfMemory);
  EXPECT_EQ(kv.pool().n_free(), 3);
}

TEST(KvCache, SharedPrefixIsReferenceCounted) {
  KvCache kv(small_shape(), 8);
  ASSERT_TRUE(kv.reserve(1, 8).is_ok());
  kv.share_prefix(1, 2, 2);
  EXPECT_EQ(kv.block_table(2), kv.block_table(1));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  kv.free_sequence(1);
  EXPECT_EQ(kv.pool().n_free(), 6);  // still owned by sequence 2
  kv.free_sequence(2);
  EXPECT_EQ(kv.pool().n_free(), 8);
}

TEST(KvCache, MlaLatentLayoutHasNoV) {
  KvCacheShape s = small_shape();
  s.k_width = 512 + 64;
  s.v_width = 0;
  KvCache kv(s, 2);
  EXPECT_EQ(kv.bytes_per_token(), static_cast<size_t>(2 * 576 * 4));
}

}  // namespace
}  // namespace fathom
