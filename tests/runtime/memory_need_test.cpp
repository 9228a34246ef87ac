// The memory figures checked before allocating: the KV figure is the engine's real allocation for
// the per-head and the MLA latent layouts, the arithmetic refuses instead of wrapping, and the
// engine itself refuses a cache that cannot fit instead of throwing std::bad_alloc. The same
// holds for every KV cache type, and `fathom plan` sizes the pool with the engine's figure.
#include <gtest/gtest.h>

#include "core/process.h"
#include "model/architecture.h"
#include "model/memory_need.h"
#include "model/synth.h"
#include "plan/planner.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

std::string synth_path(const std::string& arch, const std::string& preset = "tiny") {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/memory-" + arch + "-" + preset + ".gguf";
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.dtype = DType::Q8_0;
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

EngineOptions engine_options(const std::string& path, int64_t n_ctx, int32_t n_seq) {
  EngineOptions o;
  o.model_path = path;
  o.n_threads = 1;
  o.n_ctx = n_ctx;
  o.n_seq_max = n_seq;
  return o;
}

TEST(MemoryNeed, KvFigureIsWhatTheEngineAllocates) {
  for (const char* arch : {"llama", "qwen2", "deepseek2"}) {
    const std::string path = synth_path(arch);
    // 200 is not a multiple of the block size: the figure must round up as the pool does.
    for (const auto& [n_ctx, n_seq] : {std::pair<int64_t, int32_t>{64, 1}, {200, 3}}) {
      const EngineOptions o = engine_options(path, n_ctx, n_seq);
      auto engine = Engine::create(o);
      ASSERT_TRUE(engine) << engine.status().to_string();
      const Model& model = (*engine)->model();
      auto need = memory_need(model.file(), model.config(), engine_memory_demand(o), 0);
      ASSERT_TRUE(need) << need.status().to_string();
      const KvCache& kv = (*engine)->kv_cache();
      EXPECT_EQ(need->kv_blocks, kv.pool().n_total()) << arch << " n_ctx " << n_ctx;
      EXPECT_EQ(static_cast<size_t>(need->kv_bytes), kv.allocated_bytes()) << arch << " n_ctx " << n_ctx;
      EXPECT_GT(need->scratch_bytes, 0);
      // The layout the figure assumes is the architecture's own.
      const KvCacheShape from_config = kv_cache_shape(model.config(), n_ctx), built = kv.shape();
      EXPECT_EQ(from_config.n_layer, built.n_layer);
      EXPECT_EQ(from_config.k_width, built.k_width);
      EXPECT_EQ(from_config.v_width, built.v_width);
    }
  }
}

TEST(MemoryNeed, MlaCachesTheLatentRowOnly) {
  const std::string path = synth_path("deepseek2");
  auto engine = Engine::create(engine_options(path, 64, 1));
  ASSERT_TRUE(engine) << engine.status().to_string();
  const ModelConfig& c = (*engine)->model().config();
  ASSERT_GT(c.kv_lora_rank, 0);
  EXPECT_EQ((*engine)->kv_cache().shape().k_width, c.kv_lora_rank + c.n_rot);
  EXPECT_EQ((*engine)->kv_cache().shape().v_width, 0);
  auto need = memory_need((*engine)->model().file(), c, engine_memory_demand(engine_options(path, 64, 1)), 0);
  ASSERT_TRUE(need);
  EXPECT_EQ(need->kv_bytes, 4 * 16 * c.n_layer * (c.kv_lora_rank + c.n_rot) * 2);  // f16, the default
}

TEST(MemoryNeed, EngineAndPlanAllocateTheSameBytesForEachCacheType) {
  const KvCacheTypes cases[] = {{DType::F32, DType::F32}, {DType::F16, DType::F16}, {DType::BF16, DType::BF16},
                                {DType::Q8_0, DType::Q8_0}, {DType::Q4_0, DType::Q4_0}, {DType::Q8_0, DType::F16}};
  for (const auto& [arch, preset] : {std::pair<const char*, const char*>{"qwen2", "tiny"}, {"deepseek2", "tiny-l64"}}) {
    const std::string path = synth_path(arch, preset);
    auto desc = plan::model_from_gguf(path);
    ASSERT_TRUE(desc) << desc.status().to_string();
    for (const KvCacheTypes& types : cases) {
      EngineOptions o = engine_options(path, 200, 3);
      o.kv_types = types;
      auto engine = Engine::create(o);
      ASSERT_TRUE(engine) << engine.status().to_string();
      const KvCache& kv = (*engine)->kv_cache();
      EXPECT_EQ(kv.shape().k_type, types.k);
      EXPECT_EQ(kv.shape().v_type, types.v);
      plan::PlanOptions po;
      po.ctx = 200;
      po.concurrency = 3;
      po.kv_types = types;
      const plan::ModelSizing z = plan::size_model(*desc, po);
      const std::string what = std::string(arch) + " K " + dtype_name(types.k) + " V " + dtype_name(types.v);
      EXPECT_EQ(z.kv_bytes_total, kv.allocated_bytes()) << what;
      EXPECT_EQ(z.kv_bytes_per_token, kv.bytes_per_token()) << what;
      auto need = memory_need((*engine)->model().file(), (*engine)->model().config(), engine_memory_demand(o), 0);
      ASSERT_TRUE(need);
      EXPECT_EQ(static_cast<size_t>(need->kv_bytes), kv.allocated_bytes()) << what;
    }
  }
}

TEST(MemoryNeed, BlockTypesNeedRowsOfWholeBlocks) {
  // deepseek2 tiny caches a 48-value latent row: not whole 32-value blocks.
  EngineOptions o = engine_options(synth_path("deepseek2"), 64, 1);
  o.kv_types = {DType::Q8_0, DType::Q8_0};
  auto engine = Engine::create(o);
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("q8_0 K cache stores rows of whole 32-value blocks; this model's K rows have 48 values"),
            std::string::npos) << engine.status().to_string();
  o.kv_types = {DType::BF16, DType::BF16};
  EXPECT_TRUE(Engine::create(o)) << "bf16 takes any width";
}

TEST(MemoryNeed, ArithmeticRefusesInsteadOfWrapping) {
  EXPECT_EQ(*kv_pool_blocks(999999999, 16, 1), 62500000);
  EXPECT_EQ(*kv_pool_blocks(17, 16, 3), 6);
  EXPECT_EQ(kv_pool_blocks(INT64_MAX, 16, INT32_MAX).status().code(), ErrorCode::kOutOfRange);
  EXPECT_EQ(kv_pool_blocks(0, 16, 1).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(check_pool_addressable(kMaxKvBlocks, 16).is_ok());
  EXPECT_EQ(check_pool_addressable(kMaxKvBlocks + 1, 16).code(), ErrorCode::kOutOfRange);
  KvCacheShape wide;
  wide.n_layer = 61;
  wide.k_width = 576;
  wide.block_size = 16;
  EXPECT_EQ(*kv_pool_bytes(wide, 62500000), int64_t{62500000} * 16 * 61 * 576 * 4);
  EXPECT_EQ(kv_pool_bytes(wide, int64_t{1} << 44).status().code(), ErrorCode::kOutOfRange);
}

TEST(MemoryNeed, HugeContextIsAFigureNotAnAllocation) {
  const std::string path = synth_path("llama");
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file);
  auto config = ModelConfig::from_gguf(**file);
  ASSERT_TRUE(config);
  MemoryDemand d;
  d.n_ctx = 999999999;
  auto need = memory_need(**file, *config, d, 0);
  ASSERT_TRUE(need) << need.status().to_string();
  const KvCacheShape s = kv_cache_shape(*config, d.n_ctx);
  EXPECT_EQ(need->kv_bytes, int64_t{62500000} * 16 * s.n_layer * (s.k_width + s.v_width) * 2);  // f16, the default
  MemoryWording w;
  const Status st = check_memory(*need, uint64_t{8} << 30, *config, d, w);
  EXPECT_EQ(st.code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(st.message().find("the KV cache for -c 999999999 needs 238.4 GiB (plus "), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("but 8.0 GiB of memory is available; lower -c/--ctx-size (the model was trained on 512 tokens)"),
            std::string::npos) << st.message();
  EXPECT_TRUE(check_memory(*need, uint64_t{1} << 50, *config, d, w).is_ok());
  // The largest context int64 holds: an error, not a wrapped product.
  d.n_ctx = INT64_MAX;
  d.n_seq = 64;
  EXPECT_EQ(memory_need(**file, *config, d, 0).status().code(), ErrorCode::kOutOfRange);
}

TEST(MemoryNeed, DeviceHoldsItsWeightsAndItsLayersShareOfTheKvCache) {
  const std::string path = synth_path("llama");
  auto file = gguf::GgufFile::open(path);
  ASSERT_TRUE(file);
  auto config = ModelConfig::from_gguf(**file);
  ASSERT_TRUE(config);
  ASSERT_EQ(config->n_layer, 2);
  const int64_t kv_bytes = 2 * 1000;  // two layers' worth
  PlacementOptions one_layer;
  one_layer.gpu_layers = 1;
  auto last = plan_placement(**file, *config, "cuda", one_layer);
  ASSERT_TRUE(last) << last.status().to_string();
  const auto weights_last = static_cast<int64_t>(last->weight_bytes(Placed::kDevice));
  EXPECT_GT(weights_last, 0);
  EXPECT_EQ(device_bytes(*last, kv_bytes, config->n_layer), weights_last + 1000);
  auto all = plan_placement(**file, *config, "cuda", PlacementOptions{});
  ASSERT_TRUE(all);
  EXPECT_GT(static_cast<int64_t>(all->weight_bytes(Placed::kDevice)), weights_last);
  EXPECT_EQ(device_bytes(*all, kv_bytes, config->n_layer), static_cast<int64_t>(all->weight_bytes(Placed::kDevice)) + kv_bytes);
  PlacementOptions none;
  none.gpu_layers = 0;
  auto cpu_only = plan_placement(**file, *config, "cuda", none);
  ASSERT_TRUE(cpu_only);
  EXPECT_EQ(device_bytes(*cpu_only, kv_bytes, config->n_layer), 0);
}

TEST(MemoryNeed, ContextBeyondTrainingWarns) {
  ModelConfig c;
  c.arch_name = "llama";
  c.n_ctx_train = 512;
  EXPECT_FALSE(context_warning(c, 512, MemoryWording{}));
  auto w = context_warning(c, 513, MemoryWording{});
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("-c 513 is more than the 512 tokens the model was trained on (llama.context_length)"), std::string::npos) << *w;
}

TEST(MemoryNeed, EngineRefusesWhatCannotFit) {
  const std::string path = synth_path("llama");
  const Expected<HostMemory> host = read_host_memory();
  ASSERT_TRUE(host);
  // 477 GiB of KV cache for the tiny model: more than a test machine has, but say so if not.
  if (host->available_bytes > (uint64_t{477} << 30)) GTEST_SKIP() << "this machine has the memory";
  auto engine = Engine::create(engine_options(path, 999999999, 1));
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(engine.status().message().find("n_ctx 999999999 needs"), std::string::npos) << engine.status().message();
  // Past int32 block ids (and 2^63 bytes for any layout): refused before any allocation.
  auto overflow = Engine::create(engine_options(path, INT64_MAX, 4));
  ASSERT_FALSE(overflow);
  EXPECT_EQ(overflow.status().code(), ErrorCode::kOutOfRange);
}

}  // namespace
}  // namespace fathom
