#include "plan/hardware.h"

#include <gtest/gtest.h>

namespace fathom::plan {
namespace {

TEST(Hardware, TableCoversRequiredDevicesWithSaneFigures) {
  const std::vector<HardwareSpec> table = builtin_hardware();
  for (const char* name : {"intel-uhd-730", "intel-uhd-770", "intel-iris-xe-96eu", "intel-arc-a770-16gb",
                           "amd-radeon-680m", "amd-radeon-780m", "amd-vega-8", "nvidia-mx550", "nvidia-rtx-3090",
                           "nvidia-rtx-4090", "nvidia-rtx-a4000", "nvidia-t4", "nvidia-a100-40gb", "nvidia-a100-80gb",
                           "nvidia-h100-sxm-80gb", "nvidia-h200", "nvidia-jetson-agx-orin-64gb", "cpu-ddr4-2ch",
                           "cpu-ddr5-2ch", "cpu-ddr5-8ch", "cpu-ddr5-12ch"}) {
    Expected<HardwareSpec> h = find_hardware(table, name);
    ASSERT_TRUE(h.has_value()) << name << ": " << h.status().to_string();
    EXPECT_GT(h->memory_gb, 0) << name;
    EXPECT_GT(h->bandwidth_gbs, 0) << name;
    EXPECT_GT(h->fp16_tflops, 0) << name;
    EXPECT_GT(h->int8_tops, 0) << name;
    EXPECT_GT(h->price_usd, 0) << name;
    EXPECT_FALSE(h->source.empty()) << name;
    EXPECT_EQ(h->shared_memory, h->kind != DeviceKind::kDgpu) << name;
  }
  // CPU bandwidth = channels x MT/s x 8 bytes.
  EXPECT_DOUBLE_EQ(find_hardware(table, "cpu-ddr5-12ch")->bandwidth_gbs, 12 * 4800 * 8 / 1000.0);
  EXPECT_DOUBLE_EQ(find_hardware(table, "cpu-ddr4-2ch")->bandwidth_gbs, 2 * 3200 * 8 / 1000.0);
}

TEST(Hardware, FuzzyLookup) {
  const std::vector<HardwareSpec> table = builtin_hardware();
  EXPECT_EQ(find_hardware(table, "4090")->name, "nvidia-rtx-4090");
  EXPECT_EQ(find_hardware(table, "RTX 4090")->name, "nvidia-rtx-4090");
  EXPECT_EQ(find_hardware(table, "H100")->name, "nvidia-h100-sxm-80gb");
  EXPECT_EQ(find_hardware(table, "uhd 770")->name, "intel-uhd-770");
  Expected<HardwareSpec> ambiguous = find_hardware(table, "a100");
  ASSERT_FALSE(ambiguous.has_value());
  EXPECT_NE(ambiguous.status().message().find("nvidia-a100-40gb"), std::string::npos);
  EXPECT_NE(ambiguous.status().message().find("nvidia-a100-80gb"), std::string::npos);
  EXPECT_EQ(find_hardware(table, "voodoo5").status().code(), ErrorCode::kNotFound);
}

TEST(Hardware, JsonExtendsAndOverrides) {
  std::vector<HardwareSpec> table = builtin_hardware();
  const size_t before = table.size();
  const char* json = R"({"devices": [
      {"name": "NVIDIA-RTX-4090", "price_usd": 1800},
      {"name": "my-npu", "kind": "soc", "memory_gb": 32, "bandwidth_gbs": 120, "fp16_tflops": 20, "int8_tops": 40}
  ]})";
  ASSERT_TRUE(merge_hardware_json_text(json, "test.json", &table).is_ok());
  EXPECT_EQ(table.size(), before + 1);
  const HardwareSpec rtx = *find_hardware(table, "4090");
  EXPECT_DOUBLE_EQ(rtx.price_usd, 1800);
  EXPECT_DOUBLE_EQ(rtx.bandwidth_gbs, 1008);  // untouched fields keep the built-in value
  const HardwareSpec npu = *find_hardware(table, "my-npu");
  EXPECT_EQ(npu.kind, DeviceKind::kSoc);
  EXPECT_TRUE(npu.shared_memory);

  EXPECT_FALSE(merge_hardware_json_text("{", "bad.json", &table).is_ok());
  EXPECT_FALSE(merge_hardware_json_text(R"([{"name": "x", "memory_gb": "lots"}])", "bad.json", &table).is_ok());
  EXPECT_FALSE(merge_hardware_json_text(R"([{"name": "new-without-bandwidth"}])", "bad.json", &table).is_ok());
  EXPECT_FALSE(merge_hardware_json_text(R"([{"name": "x", "kind": "fpga", "memory_gb": 1, "bandwidth_gbs": 1}])",
                                        "bad.json", &table).is_ok());
}

}  // namespace
}  // namespace fathom::plan
