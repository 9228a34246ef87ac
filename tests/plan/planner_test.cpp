#include "plan/planner.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fathom::plan {
namespace {

ModelDesc preset(const char* name) {
  Expected<ModelDesc> m = model_from_preset(name);
  EXPECT_TRUE(m.has_value()) << m.status().to_string();
  return *m;
}

HardwareSpec device(const char* name) { return *find_hardware(builtin_hardware(), name); }

TEST(Planner, BitsPerWeightFromBlockFormats) {
  EXPECT_DOUBLE_EQ(bits_per_weight(DType::Q4_K), 4.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(DType::Q6_K), 6.5625);
  EXPECT_DOUBLE_EQ(bits_per_weight(DType::Q8_0), 8.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(DType::Q4_0), 4.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(DType::F16), 16.0);
}

TEST(Planner, PresetParameterCountsMatchPublishedSizes) {
  PlanOptions o;
  o.quant = *parse_quant("bf16");
  const ModelSizing v3 = size_model(preset("deepseek-v3"), o);
  EXPECT_NEAR(static_cast<double>(v3.n_params) / 1e9, 671.0, 4.0);
  EXPECT_NEAR(static_cast<double>(v3.n_params_active) / 1e9, 37.0, 1.5);
  EXPECT_NEAR(static_cast<double>(size_model(preset("deepseek-v2-lite"), o).n_params) / 1e9, 15.7, 0.3);
  EXPECT_NEAR(static_cast<double>(size_model(preset("deepseek-v2"), o).n_params) / 1e9, 236.0, 3.0);
  EXPECT_NEAR(static_cast<double>(size_model(preset("deepseek-r1-distill-qwen-7b"), o).n_params) / 1e9, 7.6, 0.1);
  EXPECT_NEAR(static_cast<double>(size_model(preset("deepseek-r1-distill-llama-70b"), o).n_params) / 1e9, 70.6, 0.3);
}

// Published DeepSeek-R1 Q4_K_M GGUF: 404 GB (decimal) = 376.6 GiB.
TEST(Planner, DeepSeekR1Q4KMWeightsAbout377GiB) {
  PlanOptions o;
  o.quant = *parse_quant("q4_k_m");
  const ModelSizing z = size_model(preset("deepseek-r1"), o);
  const double gib = static_cast<double>(z.weight_bytes) / kGiB;
  EXPECT_NEAR(gib, 377.0, 377.0 * 0.03) << gib;
  // The mix: most bytes Q4_K, a large share Q6_K (ffn_down in half the layers, output head).
  ASSERT_GE(z.by_type.size(), 3u);
  EXPECT_EQ(z.by_type[0].dtype, DType::Q4_K);
  EXPECT_EQ(z.by_type[1].dtype, DType::Q6_K);
}

TEST(Planner, MlaKvBytesPerToken) {
  const ModelDesc v3 = preset("deepseek-v3");
  EXPECT_EQ(kv_bytes_per_token(v3.shape, {DType::F16, DType::F16}), 61u * (512 + 64) * 2);
  EXPECT_EQ(kv_bytes_per_token(v3.shape, {DType::Q8_0, DType::Q8_0}), 61u * (512 + 64) * 34 / 32);
  EXPECT_EQ(kv_bytes_per_token(v3.shape, {DType::Q4_0, DType::F32}), 61u * (512 + 64) * 18 / 32);  // no V rows
  // GQA: 2 (K and V) x 4 kv heads x 128 x 28 layers x 2 bytes.
  EXPECT_EQ(kv_bytes_per_token(preset("deepseek-r1-distill-qwen-7b").shape, {DType::F16, DType::F16}), 2u * 4 * 128 * 28 * 2);
  EXPECT_EQ(kv_bytes_per_token(preset("deepseek-r1-distill-qwen-7b").shape, {DType::Q8_0, DType::Q4_0}),
            4u * 128 * 28 * (34 + 18) / 32);
  PlanOptions o;
  o.ctx = 8192;
  o.concurrency = 4;
  const ModelSizing z = size_model(v3, o);
  EXPECT_EQ(z.kv_bytes_total, uint64_t{61} * 576 * 2 * 8192 * 4);  // f16, the engine's default cache type
  EXPECT_EQ(z.total_bytes, z.weight_bytes + z.kv_bytes_total + z.scratch_bytes);
  // The engine's pool: whole 16-token blocks per sequence.
  o.ctx = 8190;
  EXPECT_EQ(size_model(v3, o).kv_bytes_total, 61u * 576 * 2 * 8192 * 4);
}

TEST(Planner, DistillQwen7BQ4KMFitsAn8GBGpuAt8K) {
  PlanOptions o;
  o.quant = *parse_quant("q4_k_m");
  o.ctx = 8192;
  const Plan p = make_plan(preset("deepseek-r1-distill-qwen-7b"), o, device("rtx-4060-8gb"), device("cpu-ddr5-2ch"));
  EXPECT_EQ(p.placement.mode, PlacementMode::kAllOnDevice) << p.placement.advice;
  EXPECT_NEAR(static_cast<double>(p.sizing.weight_bytes) / 1e9, 4.68, 0.2);  // published file: 4.68 GB
  // Decode bound = bandwidth / bytes per token: 272 GB/s over ~4.2 GB (embedding rows are not read).
  EXPECT_GT(p.speed.decode_tps_start, 50);
  EXPECT_LT(p.speed.decode_tps_start, 80);
  EXPECT_GT(p.speed.prefill_tps, 1000);
  EXPECT_FALSE(p.recommended_quant.empty());
}

TEST(Planner, Distill15BFitsUhd770SharedMemory) {
  PlanOptions o;
  o.quant = *parse_quant("q4_k_m");
  o.ctx = 8192;
  o.ram_gib = 16;
  const Plan p = make_plan(preset("deepseek-r1-distill-qwen-1.5b"), o, device("uhd 770"), device("cpu-ddr5-2ch"));
  EXPECT_EQ(p.placement.mode, PlacementMode::kAllOnDevice) << p.placement.advice;
  EXPECT_EQ(p.placement.device_capacity, static_cast<uint64_t>(8 * kGiB));  // half of 16 GiB
  EXPECT_NEAR(static_cast<double>(p.sizing.weight_bytes) / 1e9, 1.12, 0.08);  // published file: 1.12 GB
}

TEST(Planner, R1OnH100OffloadsExpertsToHost) {
  PlanOptions o;
  o.quant = *parse_quant("q4_k_m");
  o.ctx = 8192;
  const Plan p = make_plan(preset("deepseek-r1"), o, device("h100"), device("cpu-ddr5-12ch"));
  EXPECT_EQ(p.placement.mode, PlacementMode::kCpuMoe) << p.placement.advice;
  EXPECT_LE(p.placement.device_bytes, p.placement.device_capacity);
  EXPECT_EQ(p.placement.device_bytes + p.placement.host_bytes, p.sizing.total_bytes);
  // Experts in host RAM make the host the bottleneck: slower than all-VRAM would be, but well
  // above the host-only bound.
  const double host_only = 460.8e9 / static_cast<double>(p.sizing.decode_read_bytes);
  EXPECT_GT(p.speed.decode_tps_start, host_only);
  EXPECT_LT(p.speed.decode_tps_start, 3350e9 / static_cast<double>(p.sizing.decode_read_bytes));
  // On an H200 Q4_K_M still does not fit whole; the tiny device with a desktop host cannot run it at all.
  const Plan small = make_plan(preset("deepseek-r1"), o, device("mx550"), device("cpu-ddr5-2ch"));
  EXPECT_EQ(small.placement.mode, PlacementMode::kDoesNotFit);
  EXPECT_EQ(small.speed.decode_tps_start, 0.0);  // no speed for what does not run
  EXPECT_EQ(small.speed.prefill_tps, 0.0);
}

TEST(Planner, RecommendationWeighsSpeedAndMemory) {
  PlanOptions o;
  o.ctx = 4096;
  const ModelDesc m = preset("deepseek-r1-distill-qwen-7b");
  // 24 GB holds even f16 (15.2 GB), but q8_0 fits too and its decode bound is about twice f16's.
  const Plan big = make_plan(m, o, device("rtx-4090"), device("cpu-ddr5-2ch"));
  EXPECT_EQ(big.recommended_quant, "q8_0") << big.recommendation;
  EXPECT_NE(big.recommendation.find("16-bit weights would read twice"), std::string::npos) << big.recommendation;
  double f16_tps = 0, q8_tps = 0;
  for (const QuantOption& q : big.options_by_quant) {
    if (q.sizing.quant == "f16") f16_tps = q.speed.decode_tps_start;
    if (q.sizing.quant == "q8_0") q8_tps = q.speed.decode_tps_start;
  }
  EXPECT_GT(q8_tps, 1.8 * f16_tps);
  // 8 GB (7.5 GiB usable) at 4096: q8_0 (8.1 GB) does not fit, q6_k does with room (84%).
  EXPECT_EQ(make_plan(m, o, device("rtx-4060-8gb"), device("cpu-ddr5-2ch")).recommended_quant, "q6_k");
  // At 16384 q6_k still fits but fills more than 90% of it, so q5_k_m, which leaves room, is
  // the pick, and the text says why.
  o.ctx = 16384;
  const Plan p = make_plan(m, o, device("rtx-4060-8gb"), device("cpu-ddr5-2ch"));
  EXPECT_EQ(p.recommended_quant, "q5_k_m") << p.recommendation;
  EXPECT_NE(p.recommendation.find("q6_k fits too but leaves less than 10% free"), std::string::npos) << p.recommendation;
  for (size_t i = 1; i < p.options_by_quant.size(); ++i)
    EXPECT_GE(p.options_by_quant[i - 1].sizing.weight_bytes, p.options_by_quant[i].sizing.weight_bytes);
}

TEST(Planner, QuantParsing) {
  EXPECT_EQ(quant_name(*parse_quant("Q4_K_M")), "q4_k_m");
  EXPECT_EQ(quant_name(*parse_quant("bf16")), "bf16");
  EXPECT_EQ(quant_name(*parse_quant("Q3_K_S")), "q3_k_s");
  EXPECT_EQ(quant_name(*parse_quant("FILE")), "file");
  EXPECT_FALSE(parse_quant("q3_k_xl").has_value());
  EXPECT_FALSE(parse_quant("f32").has_value());  // never worth planning: f16 holds the same model
  ModelDesc m = preset("deepseek-v2-lite");
  // Expert rows of 1408 values are not a multiple of 256: K-quants fall back to 32-blocks.
  TensorShape down;
  down.name = "blk.5.ffn_down_exps.weight";
  down.ne = {1408, 2048, 64, 1};
  down.n_dims = 3;
  TensorShape gate = down;
  gate.name = "blk.5.ffn_gate_exps.weight";
  gate.ne = {2048, 1408, 64, 1};
  m.tensors = {gate, down};
  const std::vector<DType> d = tensor_dtypes(*parse_quant("q4_k_m"), m);
  EXPECT_EQ(d[0], DType::Q4_K);
  EXPECT_EQ(d[1], DType::Q8_0) << dtype_name(d[1]);  // layer 5 of 27 gets Q6_K, whose fallback is Q8_0
}

TEST(Planner, RoiArithmetic) {
  RoiInputs in;
  in.cloud_usd_per_hour = 2.0;
  in.hw_price_usd = 30000;
  in.power_w = 700;
  in.usd_per_kwh = 0.15;
  in.hours_per_day = 24;
  const RoiResult r = compute_roi(in);
  const double hours = 24 * 365.25 / 12;
  EXPECT_NEAR(r.cloud_usd_per_month, 2.0 * hours, 1e-9);
  EXPECT_NEAR(r.power_usd_per_month, 0.7 * hours * 0.15, 1e-9);
  EXPECT_NEAR(r.break_even_months, 30000 / (2.0 * hours - 0.7 * hours * 0.15), 1e-9);
  EXPECT_NE(r.formula.find("break-even"), std::string::npos);
  in.cloud_usd_per_hour = 0.05;  // cheaper than the electricity
  EXPECT_TRUE(std::isinf(compute_roi(in).break_even_months));
}

TEST(Planner, PresetsListedAndUnknownRejected) {
  EXPECT_GE(list_presets().size(), 15u);
  Expected<ModelDesc> bad = model_from_preset("gpt-5");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.status().message().find("deepseek-r1"), std::string::npos);
}

}  // namespace
}  // namespace fathom::plan
