// Saving and restoring the prefix cache (serve --kv-persist): blocks, rows and LRU order survive
// the round trip; a restarted engine hits on a prompt it saw before and generates the same greedy
// tokens as without any cache; a file that is damaged in any byte, truncated anywhere, extended,
// or made for another model or layout is rejected and leaves the cache untouched.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "kv/kv_persist.h"
#include "model/synth.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

KvCacheShape small_shape() {
  KvCacheShape s;
  s.n_layer = 2;
  s.k_width = 2;
  s.v_width = 3;
  s.block_size = 4;
  s.n_ctx_max = 64;
  return s;
}

std::vector<int32_t> seq(int32_t start, int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(start + i);
  return t;
}

const KvPersistModelKey kKey{0x1234abcdull, "llama"};

std::string tmp_path(const std::string& name) { return std::string(FATHOM_TEST_TMP) + "/kv-persist-" + name; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Fills every row of the sequence's blocks with values derived from (layer, block position, slot).
void fill_rows(KvCache& kv, int32_t seq_id, float salt) {
  const KvCacheShape& s = kv.shape();
  for (int64_t l = 0; l < s.n_layer; ++l)
    for (int64_t pos = 0; pos < kv.capacity(seq_id); ++pos) {
      for (int64_t c = 0; c < s.k_width; ++c) kv.k_at(l, seq_id, pos)[c] = salt + static_cast<float>(l * 1000 + pos * 10 + c);
      for (int64_t c = 0; c < s.v_width; ++c) kv.v_at(l, seq_id, pos)[c] = -salt - static_cast<float>(l * 1000 + pos * 10 + c);
    }
}

// A cache with two sequences' prefixes indexed (a: 10 tokens -> 2 blocks, b: 9 -> 2), then freed.
struct Saved {
  std::vector<int32_t> a = seq(100, 10), b = seq(500, 9);
  std::string path;
  std::vector<std::vector<int32_t>> lru;  // prefix tokens of the entries, oldest first
};

Saved save_two_prefixes(const std::string& name) {
  Saved saved;
  saved.path = tmp_path(name);
  KvCache kv(small_shape(), 8);
  kv.enable_prefix_cache();
  EXPECT_TRUE(kv.reserve(1, 10).is_ok());
  fill_rows(kv, 1, 0.5f);
  kv.cache_computed_blocks(1, saved.a, 10);
  EXPECT_TRUE(kv.reserve(2, 9).is_ok());
  fill_rows(kv, 2, 7.25f);
  kv.cache_computed_blocks(2, saved.b, 9);
  kv.free_sequence(1);
  kv.free_sequence(2);
  for (const auto& e : kv.prefix_cache()->entries_lru()) saved.lru.push_back(*e.prefix_tokens);
  auto st = save_prefix_cache(kv, kKey, saved.path);
  EXPECT_TRUE(st) << st.status().to_string();
  if (st) {
    EXPECT_EQ(st->n_blocks, 4);
  }
  EXPECT_FALSE(std::filesystem::exists(saved.path + ".tmp." + std::to_string(getpid())));  // renamed away
  return saved;
}

TEST(KvPersist, RoundTripKeepsBlocksRowsAndLruOrder) {
  const Saved saved = save_two_prefixes("roundtrip.bin");
  KvCache kv(small_shape(), 8);
  kv.enable_prefix_cache();
  auto restored = restore_prefix_cache(kv, kKey, saved.path);
  ASSERT_TRUE(restored) << restored.status().to_string();
  EXPECT_EQ(restored->n_entries, 4);
  EXPECT_EQ(restored->n_restored, 4);
  EXPECT_EQ(kv.prefix_stats().cached_blocks, 4);
  EXPECT_EQ(kv.n_available_blocks(), 8);  // restored blocks are held by the cache alone: evictable
  std::vector<std::vector<int32_t>> lru;
  for (const auto& e : kv.prefix_cache()->entries_lru()) {
    lru.push_back(*e.prefix_tokens);
    EXPECT_EQ(kv.pool().ref_count(e.block), 1);
  }
  EXPECT_EQ(lru, saved.lru);
  // A new sequence with prompt a reuses both blocks, and their rows are the saved ones.
  EXPECT_EQ(kv.reuse_prefix(3, saved.a), 8);
  KvCache expected(small_shape(), 8);
  ASSERT_TRUE(expected.reserve(1, 10).is_ok());
  fill_rows(expected, 1, 0.5f);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t pos = 0; pos < 8; ++pos) {
      for (int c = 0; c < 2; ++c) EXPECT_EQ(kv.k_at(l, 3, pos)[c], expected.k_at(l, 1, pos)[c]) << l << " " << pos;
      for (int c = 0; c < 3; ++c) EXPECT_EQ(kv.v_at(l, 3, pos)[c], expected.v_at(l, 1, pos)[c]) << l << " " << pos;
    }
  EXPECT_EQ(kv.reuse_prefix(4, saved.b), 8);
}

TEST(KvPersist, SmallerPoolKeepsTheMostRecentlyUsedBlocks) {
  const Saved saved = save_two_prefixes("small-pool.bin");
  KvCache kv(small_shape(), 2);
  kv.enable_prefix_cache();
  auto restored = restore_prefix_cache(kv, kKey, saved.path);
  ASSERT_TRUE(restored) << restored.status().to_string();
  EXPECT_EQ(restored->n_restored, 2);
  EXPECT_EQ(restored->n_skipped_capacity, 2);
  EXPECT_EQ(kv.reuse_prefix(1, saved.b), 8);  // b was cached last
  EXPECT_EQ(kv.reuse_prefix(2, saved.a), 0);
}

TEST(KvPersist, ShorterContextDropsLongPrefixesAndTheirOrphans) {
  const Saved saved = save_two_prefixes("short-ctx.bin");
  KvCacheShape shape = small_shape();
  shape.n_ctx_max = 6;  // only one-block prefixes fit
  KvCache kv(shape, 8);
  kv.enable_prefix_cache();
  auto restored = restore_prefix_cache(kv, kKey, saved.path);
  ASSERT_TRUE(restored) << restored.status().to_string();
  EXPECT_EQ(restored->n_restored, 2);
  EXPECT_EQ(restored->n_skipped_context, 2);
  EXPECT_EQ(kv.pool().n_free(), 6);
}

// The cache after a failed restore is exactly a fresh one.
void expect_untouched(const KvCache& kv) {
  EXPECT_EQ(kv.pool().n_free(), kv.pool().n_total());
  EXPECT_EQ(kv.prefix_stats().cached_blocks, 0);
}

Status restore_into_fresh(const std::string& path, const KvPersistModelKey& key = kKey, KvCacheShape shape = small_shape()) {
  KvCache kv(shape, 8);
  kv.enable_prefix_cache();
  auto restored = restore_prefix_cache(kv, key, path);
  if (restored) return Status::ok();
  expect_untouched(kv);
  return restored.status();
}

TEST(KvPersist, RejectsEveryFlippedByteTruncationAndExtension) {
  const Saved saved = save_two_prefixes("hostile-source.bin");
  const std::string good = read_bytes(saved.path);
  ASSERT_GT(good.size(), 100u);
  const std::string path = tmp_path("hostile.bin");
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    write_bytes(path, bad);
    const Status st = restore_into_fresh(path);
    EXPECT_FALSE(st.is_ok()) << "flipped byte " << i;
    EXPECT_NE(st.message().find(path), std::string::npos) << st.to_string();
  }
  for (size_t n = 0; n < good.size(); ++n) {
    write_bytes(path, good.substr(0, n));
    EXPECT_FALSE(restore_into_fresh(path).is_ok()) << "truncated to " << n;
  }
  write_bytes(path, good + "x");
  EXPECT_FALSE(restore_into_fresh(path).is_ok());
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    std::string noise(good.size(), '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    if (trial % 2 == 0) std::copy(good.begin(), good.begin() + 12, noise.begin());  // valid magic and version
    write_bytes(path, noise);
    EXPECT_FALSE(restore_into_fresh(path).is_ok()) << "noise " << trial;
  }
  EXPECT_EQ(restore_into_fresh(tmp_path("does-not-exist.bin")).code(), ErrorCode::kNotFound);
  write_bytes(path, good);
  EXPECT_TRUE(restore_into_fresh(path).is_ok());  // the harness itself accepts the intact file
}

TEST(KvPersist, RejectsAnotherModelOrLayout) {
  const Saved saved = save_two_prefixes("mismatch.bin");
  Status st = restore_into_fresh(saved.path, KvPersistModelKey{kKey.fingerprint + 1, "llama"});
  EXPECT_NE(st.message().find("different model"), std::string::npos) << st.to_string();
  st = restore_into_fresh(saved.path, KvPersistModelKey{kKey.fingerprint, "qwen2"});
  EXPECT_NE(st.message().find("architecture 'llama'"), std::string::npos) << st.to_string();
  KvCacheShape other = small_shape();
  other.block_size = 8;
  st = restore_into_fresh(saved.path, kKey, other);
  EXPECT_NE(st.message().find("block size 4"), std::string::npos) << st.to_string();
  other = small_shape();
  other.v_width = 2;
  st = restore_into_fresh(saved.path, kKey, other);
  EXPECT_NE(st.message().find("KV shape"), std::string::npos) << st.to_string();
}

// A cache in `types` with rows of whole 32-value blocks, sequence 1's prompt `tokens` cached.
KvCache typed_cache(const KvCacheTypes& types, const std::vector<int32_t>& tokens) {
  KvCacheShape s = small_shape();
  s.k_width = 64;
  s.v_width = 32;
  KvCache kv(with_types(s, types), 8);
  kv.enable_prefix_cache();
  EXPECT_TRUE(kv.reserve(1, static_cast<int64_t>(tokens.size())).is_ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> k(64), v(32);
  for (int64_t l = 0; l < s.n_layer; ++l)
    for (int64_t pos = 0; pos < static_cast<int64_t>(tokens.size()); ++pos) {
      for (float& x : k) x = dist(rng);
      for (float& x : v) x = dist(rng);
      kv.store_k(l, 1, pos, k.data());
      kv.store_v(l, 1, pos, v.data());
    }
  kv.cache_computed_blocks(1, tokens, static_cast<int64_t>(tokens.size()));
  return kv;
}

TEST(KvPersist, RoundTripKeepsTheStoredBytesOfEachCacheType) {
  const std::vector<int32_t> tokens = seq(100, 9);  // two full blocks
  const KvCacheTypes cases[] = {{DType::F32, DType::F32}, {DType::F16, DType::F16}, {DType::BF16, DType::BF16},
                                {DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::Q8_0, DType::Q4_0}};
  for (const KvCacheTypes& types : cases) {
    const std::string name = std::string("types-") + dtype_name(types.k) + "-" + dtype_name(types.v) + ".bin";
    const KvCache saved = typed_cache(types, tokens);
    auto st = save_prefix_cache(saved, kKey, tmp_path(name));
    ASSERT_TRUE(st) << st.status().to_string();
    KvCache kv(saved.shape(), 8);
    kv.enable_prefix_cache();
    auto restored = restore_prefix_cache(kv, kKey, tmp_path(name));
    ASSERT_TRUE(restored) << restored.status().to_string();
    EXPECT_EQ(restored->n_restored, 2);
    ASSERT_EQ(kv.reuse_prefix(3, tokens), 8);
    for (int64_t l = 0; l < 2; ++l)
      for (size_t b = 0; b < 2; ++b) {
        const int32_t from = saved.block_table(1)[b], to = kv.block_table(3)[b];
        const size_t k_bytes = 4 * saved.k_row_bytes(), v_bytes = 4 * saved.v_row_bytes();
        EXPECT_EQ(std::memcmp(kv.k_data(l, to, 0), saved.k_data(l, from, 0), k_bytes), 0) << name << " layer " << l;
        EXPECT_EQ(std::memcmp(kv.v_data(l, to, 0), saved.v_data(l, from, 0), v_bytes), 0) << name << " layer " << l;
      }
  }
}

TEST(KvPersist, RejectsAnotherCacheTypeNamingBoth) {
  const KvCache saved = typed_cache({DType::Q8_0, DType::F16}, seq(100, 9));
  ASSERT_TRUE(save_prefix_cache(saved, kKey, tmp_path("types-mismatch.bin")));
  KvCache kv(with_types(saved.shape(), {DType::F16, DType::F16}), 8);
  kv.enable_prefix_cache();
  auto restored = restore_prefix_cache(kv, kKey, tmp_path("types-mismatch.bin"));
  ASSERT_FALSE(restored);
  EXPECT_NE(restored.status().message().find("K q8_0, V f16, this cache stores K f16, V f16"), std::string::npos)
      << restored.status().to_string();
  EXPECT_EQ(kv.pool().n_free(), 8);
}

// --- through the engine, on a synthetic model --------------------------------------------------

std::string synth(const std::string& name, uint64_t seed) {
  const std::string path = tmp_path(name);
  SynthOptions o;
  o.arch = "llama";
  o.preset = "tiny";
  o.dtype = DType::Q8_0;
  o.seed = seed;
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

std::unique_ptr<Engine> engine_for(const std::string& model, bool prefix_cache) {
  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = 2;
  eo.n_ctx = 256;
  eo.n_seq_max = 2;
  eo.prefix_cache = prefix_cache;
  auto e = Engine::create(eo);
  EXPECT_TRUE(e) << e.status().to_string();
  return e ? std::move(e).value() : nullptr;
}

std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt) {
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = 10;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  std::vector<int32_t> out;
  r.on_event = [&](const TokenEvent& ev) {
    if (ev.token >= 0) out.push_back(ev.token);
    if (ev.finished) {
      EXPECT_NE(ev.reason, FinishReason::kError) << ev.status.to_string();
    }
  };
  EXPECT_TRUE(e.submit(std::move(r)));
  EXPECT_TRUE(e.run_until_idle().is_ok());
  return out;
}

TEST(KvPersist, RestartedEngineHitsAndGeneratesTheUncachedTokens) {
  const std::string model = synth("engine-a.gguf", 5);
  const std::string file = tmp_path("engine.prefix-cache");
  const std::vector<int32_t> prompt = seq(30, 45);  // two full 16-token blocks reusable
  auto uncached = engine_for(model, false);
  ASSERT_TRUE(uncached);
  const std::vector<int32_t> expected = greedy(*uncached, prompt);
  ASSERT_EQ(expected.size(), 10u);
  {
    auto first = engine_for(model, true);
    ASSERT_TRUE(first);
    EXPECT_EQ(greedy(*first, prompt), expected);
    auto saved = first->save_prefix_cache(file);
    ASSERT_TRUE(saved) << saved.status().to_string();
    EXPECT_EQ(saved->n_blocks, (45 + 10 - 1) / 16);  // prompt and generated tokens in full blocks
  }
  auto second = engine_for(model, true);
  ASSERT_TRUE(second);
  auto restored = second->restore_prefix_cache(file);
  ASSERT_TRUE(restored) << restored.status().to_string();
  EXPECT_EQ(restored->n_restored, 3);
  EXPECT_EQ(greedy(*second, prompt), expected);
  EXPECT_EQ(second->kv_cache().prefix_stats().hit_tokens, 32);  // (45 - 1) / 16 whole blocks
}

TEST(KvPersist, AnotherModelsFileIsIgnoredAndTheEngineStillServes) {
  const std::string model_a = synth("engine-a.gguf", 5), model_b = synth("engine-b.gguf", 6);  // same header, other weights
  const std::string file = tmp_path("engine-other.prefix-cache");
  const std::vector<int32_t> prompt = seq(30, 45);
  {
    auto first = engine_for(model_a, true);
    ASSERT_TRUE(first);
    greedy(*first, prompt);
    ASSERT_TRUE(first->save_prefix_cache(file));
  }
  auto other = engine_for(model_b, true);
  ASSERT_TRUE(other);
  EXPECT_NE(other->persist_key().fingerprint, engine_for(model_a, true)->persist_key().fingerprint);
  auto restored = other->restore_prefix_cache(file);
  ASSERT_FALSE(restored);
  EXPECT_NE(restored.status().message().find("different model"), std::string::npos) << restored.status().to_string();
  EXPECT_EQ(other->kv_cache().prefix_stats().cached_blocks, 0);
  EXPECT_EQ(greedy(*other, prompt), greedy(*engine_for(model_b, false), prompt));
}

}  // namespace
}  // namespace fathom
