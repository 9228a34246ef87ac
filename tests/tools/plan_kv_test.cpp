// `fathom plan` sizes the KV cache exactly as the engine allocates it: the same bytes per token
// (f32, K and V or the MLA latent) and the same rounding of each sequence up to whole blocks.
#include <gtest/gtest.h>

#include <string>

#include "model/synth.h"
#include "plan/model_shape.h"
#include "plan/planner.h"
#include "runtime/engine.h"

namespace fathom {
namespace {

TEST(PlanKv, BytesEqualTheEnginesCache) {
  for (const char* arch : {"qwen2", "deepseek2"}) {
    const std::string path = std::string(FATHOM_TEST_TMP) + "/plan-kv-" + arch + ".gguf";
    SynthOptions synth;
    synth.arch = arch;
    synth.preset = "tiny";
    synth.n_threads = 2;
    ASSERT_TRUE(synth_model(synth, path).is_ok()) << arch;
    for (const auto& [ctx, n_seq] : {std::pair<int64_t, int32_t>{100, 3}, {64, 1}, {17, 2}}) {
      EngineOptions eo;
      eo.model_path = path;
      eo.n_threads = 2;
      eo.n_ctx = ctx;
      eo.n_seq_max = n_seq;
      auto engine = Engine::create(eo);
      ASSERT_TRUE(engine.has_value()) << engine.status().to_string();
      auto desc = plan::model_from_gguf(path);
      ASSERT_TRUE(desc.has_value()) << desc.status().to_string();
      plan::PlanOptions po;
      po.quant = plan::QuantScheme{};  // as stored
      po.ctx = ctx;
      po.concurrency = n_seq;
      const plan::ModelSizing z = plan::size_model(*desc, po);
      EXPECT_EQ(z.kv_bytes_total, (*engine)->kv_cache().allocated_bytes()) << arch << " ctx " << ctx << " x " << n_seq;
    }
  }
}

}  // namespace
}  // namespace fathom
