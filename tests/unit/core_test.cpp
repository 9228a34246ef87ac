#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <numeric>

#include "core/dtype.h"
#include "core/json_depth.h"
#include "core/status.h"
#include "core/streamed_memory.h"
#include "core/threadpool.h"

namespace fathom {
namespace {

Expected<int> half_of(int x) {
  if (x % 2) return error(ErrorCode::kInvalidArgument, strprintf("%d is odd", x));
  return x / 2;
}

Status quarter(int x, int* out) {
  FATHOM_ASSIGN_OR_RETURN(int h, half_of(x));
  FATHOM_ASSIGN_OR_RETURN(*out, half_of(h));
  return Status::ok();
}

TEST(Status, ExpectedCarriesValueOrError) {
  int q = 0;
  EXPECT_TRUE(quarter(8, &q).is_ok());
  EXPECT_EQ(q, 2);
  const Status st = quarter(6, &q);
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.to_string(), "invalid argument: 3 is odd");
}

TEST(JsonDepth, CountsBracketsOutsideStrings) {
  EXPECT_FALSE(json_depth_exceeded_at("{\"a\": [1, {\"b\": []}]}", 4));
  EXPECT_EQ(json_depth_exceeded_at("{\"a\": [1, {\"b\": []}]}", 2), std::optional<size_t>(10));
  EXPECT_EQ(json_depth_exceeded_at("{\"a\": [1, {\"b\": []}]}", 3), std::optional<size_t>(16));
  // Brackets inside strings, also after escaped quotes and backslashes, do not count.
  EXPECT_FALSE(json_depth_exceeded_at(R"(["[[[", "\"[[[", "\\", "{{"])", 1));
  EXPECT_EQ(json_depth_exceeded_at(R"(["\\", [])", 1), std::optional<size_t>(7));
  // Closing brackets give levels back; stray closers do not go below zero.
  EXPECT_FALSE(json_depth_exceeded_at("[][][]]]][", 1));
  EXPECT_EQ(json_depth_exceeded_at(std::string(200000, '['), 64), std::optional<size_t>(64));
  EXPECT_FALSE(json_depth_exceeded_at("", 0));
}

TEST(DType, TraitsMatchGgml) {
  EXPECT_EQ(traits(DType::Q4_0).type_size, 18u);
  EXPECT_EQ(traits(DType::Q4_K).type_size, 144u);
  EXPECT_EQ(traits(DType::Q6_K).block_size, 256);
  EXPECT_EQ(row_size(DType::Q8_0, 4096), 4096u / 32 * 34);
  EXPECT_FALSE(dtype_traits(4).has_value());  // Q4_2 was removed from the format
  EXPECT_EQ(*parse_dtype("Q4_K"), DType::Q4_K);
  EXPECT_EQ(*parse_dtype("bf16"), DType::BF16);
  EXPECT_FALSE(parse_dtype("q9_9").has_value());
}

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 5, 64, 1000, 4097}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, 16, [&](int, int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

TEST(ThreadPool, ManySmallJobsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep)
    pool.run_on_all([&](int t) { sum += t + 1; });
  EXPECT_EQ(sum.load(), 2000 * 3);
}

// Pieces are 64-byte aligned and disjoint, packed back to back in a 2 MiB-aligned chunk (so a
// small matrix shares huge pages with its neighbours), and a piece larger than a chunk gets one
// of its own; every byte can be written.
TEST(StreamedArena, PacksPiecesIntoHugePageChunks) {
  constexpr size_t kChunk = size_t{4} << 20, kHuge = size_t{2} << 20;
  StreamedArena arena(kChunk);
  uint8_t* a = arena.allocate(100);
  uint8_t* b = arena.allocate(1000);
  uint8_t* c = arena.allocate(3 << 20);  // still fits the first chunk
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % kHuge, 0u);  // a chunk starts on a huge page
  EXPECT_EQ(b, a + 128);                                  // 100 rounded up to 64 bytes
  EXPECT_EQ(c, b + 1024);
  uint8_t* d = arena.allocate(2 << 20);  // does not fit what is left: a new chunk
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % kHuge, 0u);
  uint8_t* e = arena.allocate(9 << 20);  // larger than a chunk: a chunk of its own size
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e) % kHuge, 0u);
  std::memset(a, 1, 100);
  std::memset(b, 2, 1000);
  std::memset(c, 3, 3 << 20);
  std::memset(d, 4, 2 << 20);
  std::memset(e, 5, 9 << 20);
  EXPECT_EQ(a[99], 1);
  EXPECT_EQ(b[0], 2);
  EXPECT_EQ(c[(3 << 20) - 1], 3);
  EXPECT_EQ(d[0], 4);
}

}  // namespace
}  // namespace fathom
