// Prefix caching: exact block reuse, reference counts, LRU eviction order, and that reuse does
// not change what the engine generates.
#include <gtest/gtest.h>

#include "kv/kv_cache.h"
#include "model/synth.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

KvCacheShape shape4() {
  KvCacheShape s;
  s.n_layer = 1;
  s.k_width = 2;
  s.v_width = 2;
  s.block_size = 4;
  s.n_ctx_max = 64;
  return s;
}

std::vector<int32_t> seq(int32_t start, int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(start + i);
  return t;
}

TEST(PrefixCache, ReusesWholeBlocksAndLeavesTheLastTokenToCompute) {
  KvCache kv(shape4(), 8);
  kv.enable_prefix_cache();
  const std::vector<int32_t> a = seq(100, 10);
  EXPECT_EQ(kv.reuse_prefix(1, a), 0);
  ASSERT_TRUE(kv.reserve(1, 10).is_ok());  // blocks 0, 1, 2
  kv.cache_computed_blocks(1, a, 10);       // blocks 0 and 1 are full
  EXPECT_EQ(kv.prefix_stats().cached_blocks, 2);
  EXPECT_EQ(kv.pool().ref_count(0), 2);  // sequence + cache
  // Same first 9 tokens, different tail: two blocks (8 tokens) reused.
  std::vector<int32_t> b = seq(100, 9);
  b.push_back(7);
  EXPECT_EQ(kv.reuse_prefix(2, b), 8);
  EXPECT_EQ(kv.block_table(2), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(kv.pool().ref_count(0), 3);
  // Exactly 8 tokens: only one block, because the last token must be computed.
  EXPECT_EQ(kv.reuse_prefix(3, seq(100, 8)), 4);
  // A different first block matches nothing.
  EXPECT_EQ(kv.reuse_prefix(4, seq(200, 10)), 0);
  const auto stats = kv.prefix_stats();
  EXPECT_EQ(stats.hit_tokens, 12);
  EXPECT_EQ(stats.query_tokens, 10 + 10 + 8 + 10);
}

TEST(PrefixCache, EvictsLeastRecentlyUsedOnlyWhenNeeded) {
  KvCache kv(shape4(), 4);
  kv.enable_prefix_cache();
  const std::vector<int32_t> a = seq(0, 5), b = seq(50, 5);
  ASSERT_TRUE(kv.reserve(1, 5).is_ok());  // blocks 0, 1
  kv.cache_computed_blocks(1, a, 5);       // caches block 0
  ASSERT_TRUE(kv.reserve(2, 5).is_ok());  // blocks 2, 3
  kv.cache_computed_blocks(2, b, 5);       // caches block 2
  kv.free_sequence(1);
  kv.free_sequence(2);
  EXPECT_EQ(kv.pool().n_free(), 2);       // blocks 1 and 3; 0 and 2 held by the cache
  EXPECT_EQ(kv.n_available_blocks(), 4);
  EXPECT_EQ(kv.reuse_prefix(3, a), 4);    // touches block 0: now block 2 is the LRU
  kv.free_sequence(3);
  ASSERT_TRUE(kv.reserve(4, 12).is_ok()); // needs 3: two free + evict one (block 2, not 0)
  EXPECT_EQ(kv.prefix_stats().cached_blocks, 1);
  EXPECT_EQ(kv.reuse_prefix(5, a), 4);
  EXPECT_EQ(kv.reuse_prefix(6, b), 0);
}

TEST(PrefixCache, EngineOutputsAreUnchangedAndPrefillIsSkipped) {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/prefix-llama.gguf";
  SynthOptions o;
  o.arch = "llama";
  o.preset = "tiny";
  o.dtype = DType::Q8_0;
  ASSERT_TRUE(synth_model(o, path).is_ok());
  auto make = [&](bool cache) {
    EngineOptions eo;
    eo.model_path = path;
    eo.n_threads = 2;
    eo.n_ctx = 256;
    eo.n_seq_max = 2;
    eo.prefix_cache = cache;
    return std::move(Engine::create(eo)).value();
  };
  std::vector<int32_t> system = seq(20, 40);  // shared prefix (e.g. a system prompt)
  auto run = [&](Engine& e, int32_t tail) {
    std::vector<int32_t> p = system;
    p.push_back(tail);
    p.push_back(tail + 1);
    GenerationRequest r;
    r.prompt = p;
    r.max_tokens = 8;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    std::vector<int32_t> out;
    r.on_event = [&](const TokenEvent& ev) {
      if (ev.token >= 0) out.push_back(ev.token);
    };
    EXPECT_TRUE(e.submit(std::move(r)));
    EXPECT_TRUE(e.run_until_idle().is_ok());
    return out;
  };
  auto cached = make(true), plain = make(false);
  for (int32_t tail : {300, 301, 302}) EXPECT_EQ(run(*cached, tail), run(*plain, tail)) << tail;
  const auto stats = cached->kv_cache().prefix_stats();
  EXPECT_EQ(stats.hit_tokens, 2 * 32);  // requests 2 and 3 reuse two 16-token blocks of the 40-token prefix
  EXPECT_EQ(plain->kv_cache().prefix_stats().hit_tokens, 0);
}

}  // namespace
}  // namespace fathom
