#include "plan/devices.h"

#include <gtest/gtest.h>

#include <chrono>

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

TEST(Devices, MatmulThroughputIsMeasuredQuicklyAndBelowAnyCoresPeak) {
  for (DType type : {DType::Q8_0, DType::F16}) {
    const auto start = std::chrono::steady_clock::now();
    const double tops = measure_cpu_matmul_tops(type, 0.05, 2);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GT(tops, 1e-4) << dtype_name(type);
    // Two threads, none past 5 GHz x 2 FMA units x 16 f32 lanes x 2 ops, x 4 for int8 dot products.
    EXPECT_LT(tops, 2 * 5e9 * 2 * 16 * 2 * 4 / 1e12) << dtype_name(type);
    EXPECT_LT(seconds, 2.0) << dtype_name(type);  // `fathom plan` measures two of these (0.1 s each, unloaded)
  }
}

TEST(Devices, MeasuredMatmulThroughputReplacesTheAssumedPeak) {
  DeviceReport r;
  r.cpu = detect_cpu();
  r.measured_bandwidth_gbs = 20;
  r.measured_q8_0_tops = 0.5;
  r.measured_f16_tops = 0.25;
  HardwareSpec h = local_host_spec(r);
  EXPECT_TRUE(h.compute_measured);
  EXPECT_EQ(h.int8_tops, 0.5);
  EXPECT_EQ(h.fp16_tflops, 0.25);
  r.measured_q8_0_tops = r.measured_f16_tops = 0;  // --no-bench
  h = local_host_spec(r);
  EXPECT_FALSE(h.compute_measured);
  EXPECT_GT(h.int8_tops, 0);
  EXPECT_GT(h.fp16_tflops, 0);
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
