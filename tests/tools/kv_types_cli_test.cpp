// -ctk/--cache-type-k and -ctv/--cache-type-v as a user passes them: every command that builds a
// KV cache takes them, an unknown type or a row the type cannot store is a clear error, and
// `fathom plan` prints the bytes the engine allocates for the chosen types.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "../cli_util.h"
#include "model/synth.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

std::string synth_qwen2() {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/kv-types-cli-qwen2.gguf";
  SynthOptions o;
  o.arch = "qwen2";
  o.dtype = DType::Q8_0;
  EXPECT_TRUE(synth_model(o, path).is_ok());
  return path;
}

TEST(KvTypesCli, EveryCacheBuildingCommandTakesTheTypes) {
  const std::string path = synth_qwen2();
  const std::string types = " -ctk q8_0 --cache-type-v q4_0 -t 2";
  CmdResult r = run_fathom("run -q -m " + path + " -p hello -n 4 --temp 0" + types);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_fathom("bench -m " + path + " -p 8 -n 2 -d 16 -r 1 --bw-mib 0 --json" + types);
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string text = std::string(FATHOM_TEST_TMP) + "/kv-types-cli.txt";
  std::ofstream(text) << "hello world, this is a short text for a perplexity run over a few chunks of tokens. "
                         "it repeats: hello world, this is a short text for a perplexity run over a few chunks.";
  r = run_fathom("perplexity -m " + path + " -f " + text + " -c 16 --chunks 1" + types);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_fathom("kl-divergence --base " + path + " -m " + path + " -f " + text + " -c 16 --chunks 1 --base-cache-type-k f32 --base-cache-type-v f32" + types);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_fathom("run --help");
  EXPECT_NE(r.output.find("-ctk, --cache-type-k TYPE"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("-ctv, --cache-type-v TYPE"), std::string::npos) << r.output;
}

TEST(KvTypesCli, UnknownTypesAndUnstorableRowsAreClearErrors) {
  const std::string path = synth_qwen2();
  for (const char* command : {"run -p hi -n 1", "chat", "serve", "bench", "perplexity -f /dev/null"}) {
    const CmdResult r = run_fathom(std::string(command) + " -m " + path + " -ctk q5_x");
    EXPECT_EQ(r.code, 2) << command << ": " << r.output;
    EXPECT_NE(r.output.find("--cache-type-k: unknown KV cache type 'q5_x'; use f16, bf16, q8_0, q4_0 or f32"), std::string::npos)
        << command << ": " << r.output;
  }
  const CmdResult k_quant = run_fathom("run -m " + path + " -p hi -n 1 -ctv q4_K");
  EXPECT_EQ(k_quant.code, 2) << k_quant.output;
  EXPECT_NE(k_quant.output.find("--cache-type-v: unknown KV cache type 'q4_K'"), std::string::npos) << k_quant.output;
  // deepseek2 tiny caches a 48-value latent row, not whole 32-value blocks.
  const std::string ds2 = std::string(FATHOM_TEST_TMP) + "/kv-types-cli-ds2.gguf";
  SynthOptions o;
  o.arch = "deepseek2";
  ASSERT_TRUE(synth_model(o, ds2).is_ok());
  const CmdResult latent = run_fathom("run -m " + ds2 + " -p hi -n 1 -ctk q8_0");
  EXPECT_EQ(latent.code, 1) << latent.output;
  EXPECT_NE(latent.output.find("a q8_0 K cache stores rows of whole 32-value blocks; this model's K rows have 48 values"),
            std::string::npos) << latent.output;
}

TEST(KvTypesCli, PlanPrintsTheEngineBytesForTheTypes) {
  // R1-Distill-Qwen-1.5B: 28 layers x 2 KV heads x 128, K q8_0 (34 B per 32) + V f16 (2 B).
  const CmdResult r = run_fathom("plan --arch-preset deepseek-r1-distill-qwen-1.5b -c 4096 -ctk q8_0 -d cpu-ddr5-2ch --json");
  ASSERT_EQ(r.code, 0) << r.output;
  const uint64_t per_token = 28ull * 2 * 128 * 34 / 32 + 28ull * 2 * 128 * 2;
  EXPECT_NE(r.output.find("\"kv_bytes_per_token\": " + std::to_string(per_token)), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"kv_bytes_total\": " + std::to_string(per_token * 4096)), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"cache_type_k\": \"q8_0\""), std::string::npos) << r.output;
  EXPECT_EQ(run_fathom("plan --arch-preset deepseek-r1-distill-qwen-1.5b -ctv q3_K").code, 2);
}

}  // namespace
}  // namespace fathom
