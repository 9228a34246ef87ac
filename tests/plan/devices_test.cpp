#include "plan/devices.h"

#include <gtest/gtest.h>

namespace fathom::plan {
namespace {

TEST(Devices, CpuDetectionIsSane) {
  const CpuInfo c = detect_cpu();
  EXPECT_GE(c.logical_cores, 1);
  EXPECT_GE(c.physical_cores, 1);
  EXPECT_LE(c.physical_cores, c.logical_cores);
  EXPECT_FALSE(c.model_name.empty());
#ifdef __AVX2__
  // The build targets this machine (-march=native), so what the compiler saw CPUID must see.
  EXPECT_TRUE(c.isa.avx2);
  EXPECT_TRUE(c.isa.avx);
#endif
#ifdef __AVX512F__
  EXPECT_TRUE(c.isa.avx512f);
#endif
#ifdef __FMA__
  EXPECT_TRUE(c.isa.fma);
#endif
  EXPECT_NE(isa_string(c.isa).find(c.isa.avx2 ? "AVX2" : ""), std::string::npos);
}

TEST(Devices, MemoryInfo) {
  Expected<MemoryInfo> m = parse_meminfo("MemTotal:       16318744 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->total_bytes, 16318744ull * 1024);
  EXPECT_EQ(m->available_bytes, 8000000ull * 1024);
  EXPECT_FALSE(parse_meminfo("garbage").has_value());
  Expected<MemoryInfo> local = detect_memory();
  ASSERT_TRUE(local.has_value()) << local.status().to_string();
  EXPECT_GT(local->total_bytes, 0u);
  EXPECT_LE(local->available_bytes, local->total_bytes);
  EXPECT_GE(local->numa_nodes, 1);
}

TEST(Devices, BandwidthMeasurementIsPositive) {
  const double gbs = measure_read_bandwidth(size_t{16} << 20, 0.05, 2);
  EXPECT_GT(gbs, 0.1);
  EXPECT_LT(gbs, 10000);
}

TEST(Devices, ProbesAndBackendChoiceNeverFail) {
  DeviceReport r = detect_devices(/*run_bandwidth_bench=*/false);
  EXPECT_TRUE(r.opencl.available || !r.opencl.reason.empty());
  EXPECT_TRUE(r.cuda.available || !r.cuda.reason.empty());
  EXPECT_TRUE(r.backend == "cpu" || r.backend == "cuda" || r.backend == "opencl");
  EXPECT_FALSE(r.backend_reason.empty());
  const HardwareSpec local = local_hardware_spec(r);
  EXPECT_GT(local.bandwidth_gbs, 0);
  EXPECT_GT(local.memory_gb, 0);
}

}  // namespace
}  // namespace fathom::plan
