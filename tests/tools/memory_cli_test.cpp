// Memory is checked before it is taken: a context that cannot fit is a one-line error and exit 1
// from every command that builds a KV cache (serve: before its port opens), never std::bad_alloc
// or the OOM killer; a context past the model's training warns; a normal run is unaffected.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "../cli_util.h"
#include "core/process.h"
#include "model/synth.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

// Tiny llama (trained context 512): -c 999999999 needs 238.4 GiB of f16 KV cache.
const std::string& tiny_model() {
  static const std::string path = [] {
    const std::string p = std::string(FATHOM_TEST_TMP) + "/memory-cli-llama.gguf";
    SynthOptions o;
    o.arch = "llama";
    o.preset = "tiny";
    o.dtype = DType::Q8_0;
    EXPECT_TRUE(synth_model(o, p).is_ok());
    return p;
  }();
  return path;
}

bool machine_lacks_477_gib() {
  const Expected<HostMemory> host = read_host_memory();
  return host && host->available_bytes < (uint64_t{477} << 30);
}

void expect_clean_refusal(const CmdResult& r, const std::string& prefix) {
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find(prefix), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("of memory is available; lower "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(the model was trained on 512 tokens)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("bad_alloc"), std::string::npos) << r.output;
}

TEST(MemoryCli, RunRefusesAContextThatCannotFit) {
  if (!machine_lacks_477_gib()) GTEST_SKIP() << "this machine has the memory";
  expect_clean_refusal(run_fathom("run -m " + tiny_model() + " -c 999999999 -p hi -n 4"),
                       "fathom run: the KV cache for -c 999999999 needs 238.4 GiB (plus ");
}

TEST(MemoryCli, ServeRefusesBeforeListening) {
  if (!machine_lacks_477_gib()) GTEST_SKIP() << "this machine has the memory";
  // timeout: were the check missing, serve would listen until killed.
  const CmdResult r = test::run_command("timeout 20 " + std::string(FATHOM_BIN_PATH) + " serve -m " + tiny_model() +
                                        " -c 999999999 -np 2 --port 0 2>&1");
  expect_clean_refusal(r, "fathom serve: the KV cache for -c 999999999 x -np 2 needs 476.8 GiB (plus ");
  EXPECT_NE(r.output.find("lower -c/--ctx-size or -np/--parallel"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening"), std::string::npos) << r.output;
}

TEST(MemoryCli, BenchRefusesAPromptThatCannotFit) {
  if (!machine_lacks_477_gib()) GTEST_SKIP() << "this machine has the memory";
  expect_clean_refusal(run_fathom("bench -m " + tiny_model() + " -p 999999999 -n 4 -r 1 --bw-mib 0"),
                       "fathom bench: the KV cache for -p 999999999 needs 238.4 GiB (plus ");
}

TEST(MemoryCli, PerplexityRefusesAChunkThatCannotFit) {
  if (!machine_lacks_477_gib()) GTEST_SKIP() << "this machine has the memory";
  const std::string text = std::string(FATHOM_TEST_TMP) + "/memory-cli.txt";
  std::ofstream(text) << "Once upon a time there was a little model that wanted more memory than the machine had.\n";
  expect_clean_refusal(run_fathom("perplexity -m " + tiny_model() + " -f " + text + " -c 999999999"),
                       "fathom perplexity: the KV cache for -c 999999999 needs 238.4 GiB (plus ");
}

TEST(MemoryCli, ContextPastTrainingWarnsAndRuns) {
  const CmdResult r = run_fathom("run -m " + tiny_model() + " -c 1024 -p hi -n 2 --temp 0");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("fathom run: warning: -c 1024 is more than the 512 tokens the model was trained on "
                          "(llama.context_length)"),
            std::string::npos)
      << r.output;
}

TEST(MemoryCli, NormalRunIsUnaffected) {
  const CmdResult r = run_fathom("run -m " + tiny_model() + " -c 512 -p hi -n 2 --temp 0");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("memory is available"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tok/s"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fathom
