// The command line side of the OpenCL backend: `--device` on a generation command, and what
// `fathom devices` says about OpenCL devices.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "../cli_util.h"
#include "opencl_test_util.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

std::string tiny_model() {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/opencl-cli-qwen2-tiny-q4_0.gguf";
  const CmdResult r = run_fathom("synth --arch qwen2 --preset tiny --type q4_0 -q -t 2 -o " + path);
  EXPECT_EQ(r.code, 0) << r.output;
  return path;
}

TEST(OpenClCli, LogitsOnOpenClMatchCpu) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  const std::string model = tiny_model();
  const CmdResult cpu = run_fathom("logits -m " + model + " -p 'hello world' --top 3 -t 2 --json --device cpu");
  const CmdResult ocl = run_fathom("logits -m " + model + " -p 'hello world' --top 3 -t 2 --json --device opencl");
  ASSERT_EQ(cpu.code, 0) << cpu.output;
  ASSERT_EQ(ocl.code, 0) << ocl.output;
  EXPECT_EQ(ocl.output.find("falling back"), std::string::npos) << ocl.output;
  // The same top tokens in the same order (the logits differ in the last digits: the CPU
  // rounds activations to 8 bits).
  const auto top_ids = [](const std::string& out) {
    const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')));
    std::vector<int> ids;
    for (const auto& t : j["positions"][0]["top"]) ids.push_back(t["id"].get<int>());
    return ids;
  };
  EXPECT_EQ(top_ids(ocl.output), top_ids(cpu.output)) << "cpu:\n" << cpu.output << "opencl:\n" << ocl.output;
}

// `run --device opencl` on a synth model of every matrix in `type`: its output.
CmdResult run_synth_on_opencl(const std::string& arch, const std::string& preset, const std::string& type) {
  const std::string model = std::string(FATHOM_TEST_TMP) + "/opencl-cli-" + arch + "-" + preset + "-" + type + ".gguf";
  const CmdResult synth = run_fathom("synth --arch " + arch + " --preset " + preset + " --type " + type + " -q -t 2 -o " + model);
  EXPECT_EQ(synth.code, 0) << synth.output;
  const CmdResult r = run_fathom("run -m " + model + " -p hello -n 2 -t 2 --seed 1 --device opencl");
  EXPECT_EQ(r.code, 0) << r.output;
  return r;
}

// Weights of a type the OpenCL matmul kernels do not take run on the CPU, and `run` says which.
TEST(OpenClCli, RunNamesWeightsThatMultiplyOnTheCpu) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  ASSERT_FALSE((*probe)->on_device(Op::kMatmul, DType::Q5_0));
  probe->reset();
  const CmdResult r = run_synth_on_opencl("qwen2", "tiny", "q5_0");
  // 2 layers x 7 matrices + output.weight, all q5_0.
  EXPECT_NE(r.output.find("15 q5_0 matrices (blk.0."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("multiply on the CPU: the opencl backend has no q5_0 matmul kernel"), std::string::npos) << r.output;
}

// The iq4 types have kernels: a model of them multiplies every matrix on the device, and the
// report names none (iq4_xs on the small preset, whose rows are whole super-blocks).
TEST(OpenClCli, RunMultipliesIq4WeightsOnTheDevice) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  for (const auto& [arch, preset, type] : {std::tuple{"qwen2", "tiny", "iq4_nl"}, std::tuple{"llama", "small", "iq4_xs"}}) {
    const CmdResult r = run_synth_on_opencl(arch, preset, type);
    EXPECT_NE(r.output.find("opencl"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("falling back"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("multiply on the CPU"), std::string::npos) << type << ":\n" << r.output;
  }
}

// The KV cache types the attention kernels read (f32, f16, q8_0) keep attention on the device:
// `run` says nothing about the cache then, and names only the types that attend on the CPU.
TEST(OpenClCli, RunNamesKvCacheTypesThatAttendOnTheCpu) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  probe->reset();
  const std::string model = tiny_model();
  const std::string run = "run -m " + model + " -p hello -n 2 -t 2 --seed 1 --device opencl";
  for (const char* types : {"", " -ctk f16 -ctv q8_0", " -ctk f32 -ctv f16"}) {
    const CmdResult r = run_fathom(run + types);
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(r.output.find("attention runs on the CPU"), std::string::npos) << types << "\n" << r.output;
  }
  const CmdResult both = run_fathom(run + " -ctk bf16 -ctv q4_0");
  EXPECT_EQ(both.code, 0) << both.output;
  EXPECT_NE(both.output.find("KV cache K bf16, V q4_0: attention runs on the CPU (the opencl attention kernels read f32, "
                             "f16, q8_0 caches; -ctk f16 -ctv f16 keeps it on the device)"),
            std::string::npos)
      << both.output;
  const CmdResult v_only = run_fathom(run + " -ctk q8_0 -ctv bf16");
  EXPECT_EQ(v_only.code, 0) << v_only.output;
  EXPECT_NE(v_only.output.find("KV cache V bf16: attention runs on the CPU"), std::string::npos) << v_only.output;
}

// A device named by index must exist: an error naming how many there are, not a silent CPU run.
TEST(OpenClCli, MissingDeviceIsAnErrorNamingTheDevices) {
  const std::string model = tiny_model();
  const CmdResult r = run_fathom("run -m " + model + " -p hello -n 2 -t 2 --seed 1 --device opencl:999");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--device opencl:999"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("falling back to cpu"), std::string::npos) << r.output;
}

TEST(OpenClCli, UnknownDeviceIsAClearError) {
  const std::string model = tiny_model();
  const CmdResult r = run_fathom("run -m " + model + " -p hello -n 2 --device tpu");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("unknown device 'tpu'"), std::string::npos) << r.output;
}

TEST(OpenClCli, DevicesListsOpenClCapabilities) {
  auto probe = test::make_test_backend();
  FATHOM_OPENCL_OR_SKIP(probe);
  const CmdResult r = run_fathom("devices --no-bench");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find((*probe)->device().name), std::string::npos) << r.output;
  for (const char* field : {"compute units", "fp16 ", "int8 dot ", "subgroups ", "memory shared with the host"})
    EXPECT_NE(r.output.find(field), std::string::npos) << field << "\n" << r.output;
}

}  // namespace
}  // namespace fathom
