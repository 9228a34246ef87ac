// The placement flags on the command line: --gpu-layers, --cpu-moe, --n-cpu-moe and
// --override-tensor are checked before the model runs (clear errors, exit 1), and with an
// accelerator `fathom run` prints where each part of the model went and its memory.
#include <gtest/gtest.h>

#include <string>

#include "../cli_util.h"
#include "backend/opencl/opencl_backend.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

std::string tiny_moe_model() {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/placement-cli-deepseek2-tiny.gguf";
  const CmdResult r = run_fathom("synth --arch deepseek2 --preset tiny -q -t 2 -o " + path);
  EXPECT_EQ(r.code, 0) << r.output;
  return path;
}

TEST(PlacementCli, BadPlacementIsAClearErrorBeforeAnythingRuns) {
  const std::string model = tiny_moe_model();
  struct Case {
    std::string flags, message;
  };
  for (const Case& c : {Case{"--gpu-layers 2", "--gpu-layers needs an accelerator; add --device cuda or --device opencl"},
                        Case{"--cpu-moe", "--cpu-moe needs an accelerator"},
                        Case{"--device opencl -ot 'ffn_(=cpu'", "bad regular expression"},
                        Case{"--device opencl -ot ffn_up_exps", "expected REGEX=TARGET"},
                        Case{"--device opencl -ot ffn=npu", "unknown target 'npu'"},
                        Case{"--device opencl -ot ffn=cuda", "the device in use is opencl, not cuda"}}) {
    const CmdResult r = run_fathom("run -m " + model + " -p hi -n 2 -t 2 " + c.flags);
    EXPECT_EQ(r.code, 1) << c.flags << ": " << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.flags << ": " << r.output;
    EXPECT_EQ(r.output.find("attempt 1/3"), std::string::npos) << "placement is checked before the device is tried: " << r.output;
  }
}

TEST(PlacementCli, RunPrintsThePlacementPerDevice) {
  OpenClOptions probe_options;
  probe_options.n_threads = 2;
  auto probe = create_opencl_backend(probe_options);
  if (!probe) GTEST_SKIP() << "no OpenCL device here (" << probe.status().message() << ")";
  probe->reset();
  const std::string model = tiny_moe_model();
  const CmdResult r = run_fathom("run -m " + model + " -p hi -n 4 -t 2 --temp 0 --device opencl --cpu-moe");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("placement opencl "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("KV cache (3 layers): layers 0-2 except ffn_down_exps, ffn_gate_exps, ffn_up_exps of 1-2"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("cpu    "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ffn_down_exps, ffn_gate_exps, ffn_up_exps of layers 1-2; token_embd"), std::string::npos) << r.output;
  // The same greedy text as all on the CPU.
  const CmdResult cpu = run_fathom("run -m " + model + " -p hi -n 4 -t 2 --temp 0 -q", /*merge_stderr=*/false);
  const CmdResult hybrid = run_fathom("run -m " + model + " -p hi -n 4 -t 2 --temp 0 -q --device opencl --n-cpu-moe 2", false);
  ASSERT_EQ(cpu.code, 0);
  ASSERT_EQ(hybrid.code, 0);
  EXPECT_EQ(hybrid.output, cpu.output);
}

}  // namespace
}  // namespace fathom
