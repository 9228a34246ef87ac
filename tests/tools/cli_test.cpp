// The fathom binary as a user runs it: help, exit codes, clear errors for bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "../cli_util.h"
#include "model/synth.h"
#include "tools/args.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";

TEST(Cli, HelpListsCommands) {
  CmdResult r = run_fathom("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* cmd : {"run", "chat", "tokenize", "logits", "inspect", "synth", "bench"})
    EXPECT_NE(r.output.find(cmd), std::string::npos) << cmd;
  r = run_fathom("run --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("--temp"), std::string::npos);
  EXPECT_EQ(run_fathom("frobnicate").code, 2);
  EXPECT_EQ(run_fathom("run --no-such-option").code, 2);
}

TEST(Cli, RunStreamsStoryAndReportsSpeed) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << kStories << " is missing (the shared test data)";
  CmdResult r = run_fathom("run -m " + kStories + " -p 'Once upon a time' -n 24 --temp 0 -t 2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("Once upon a time", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("tok/s"), std::string::npos) << r.output;
  // Deterministic under --seed with sampling on.
  const std::string sampled = "run -q -m " + kStories + " -p 'Once upon a time' -n 24 --temp 0.9 --seed 5 -t 2";
  EXPECT_EQ(run_fathom(sampled).output, run_fathom(sampled).output);
}

TEST(Cli, BadFilesAreClearErrors) {
  CmdResult missing = run_fathom("run -m /nonexistent/model.gguf -p hi");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/model.gguf"), std::string::npos) << missing.output;
  const std::string junk = std::string(FATHOM_TEST_TMP) + "/junk.gguf";
  std::ofstream(junk) << "GGUF this is not a model";
  CmdResult bad = run_fathom("run -m " + junk + " -p hi");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find("junk.gguf: GGUF version"), std::string::npos) << bad.output;
  std::ofstream(junk, std::ios::binary) << std::string("GGUF\3\0\0\0", 8) << "truncated";
  CmdResult truncated = run_fathom("run -m " + junk + " -p hi");
  EXPECT_EQ(truncated.code, 1);
  EXPECT_NE(truncated.output.find("invalid file"), std::string::npos) << truncated.output;
}

TEST(Cli, LogitsPrintsTopIds) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << kStories << " is missing (the shared test data)";
  CmdResult r = run_fathom("logits -m " + kStories + " -p 'Once upon a time' --top 3 --json");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("\"id\": 432"), std::string::npos) << r.output;
}

TEST(Cli, SynthThenRunAndBench) {
  const std::string path = std::string(FATHOM_TEST_TMP) + "/cli-synth.gguf";
  CmdResult s = run_fathom("synth --arch qwen2 --preset tiny --type q4_0 -o " + path);
  ASSERT_EQ(s.code, 0) << s.output;
  CmdResult r = run_fathom("run -m " + path + " -p hello -n 8 --temp 0");
  EXPECT_EQ(r.code, 0) << r.output;
  CmdResult b = run_fathom("bench -m " + path + " -p 16 -n 4 -r 1 --json");
  EXPECT_EQ(b.code, 0) << b.output;
  EXPECT_NE(b.output.find("tokens_per_second"), std::string::npos) << b.output;
}

TEST(Cli, QuantizeToTwoBitIQuantsNeedsAnImatrix) {
  // llama.cpp's rule: refused before anything is written, naming the tensor; exit 2 as for other
  // bad arguments. (qwen2 small: its 256-wide rows hold IQ2 blocks.)
  const std::string src = std::string(FATHOM_TEST_TMP) + "/cli-iq2-src.gguf";
  const std::string out = std::string(FATHOM_TEST_TMP) + "/cli-iq2-out.gguf";
  ASSERT_EQ(run_fathom("synth --arch qwen2 --preset small --layers 1 --type f16 -o " + src).code, 0);
  std::remove(out.c_str());
  CmdResult q = run_fathom("quantize " + src + " " + out + " iq2_xxs -q");
  EXPECT_EQ(q.code, 2) << q.output;
  EXPECT_NE(q.output.find("blk.0.attn_k.weight needs an importance matrix for iq2_xxs (give --imatrix FILE"),
            std::string::npos)
      << q.output;
  EXPECT_FALSE(std::ifstream(out).good());
  CmdResult p = run_fathom("plan -m " + src + " --no-bench");
  ASSERT_EQ(p.code, 0) << p.output;
  for (const char* t : {"iq2_m", "iq2_s", "iq2_xs", "iq2_xxs"}) EXPECT_NE(p.output.find(t), std::string::npos) << t;
}

const std::string kQwenVocab = std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf";

TEST(Cli, TokenizeAndDetokenizeRoundTrip) {
  if (!std::ifstream(kQwenVocab).good()) GTEST_SKIP() << kQwenVocab << " is missing (the shared test data)";
  CmdResult t = run_fathom("tokenize -m " + kQwenVocab + " --no-bos 'Hello world'");
  ASSERT_EQ(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("[9707,1879]"), std::string::npos) << t.output;
  CmdResult d = run_fathom("detokenize -m " + kQwenVocab + " 9707 1879");
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_NE(d.output.find("Hello world"), std::string::npos) << d.output;
  EXPECT_EQ(run_fathom("detokenize -m " + kQwenVocab + " 99999999").code, 1);
}

TEST(Cli, InspectShowsMetadataTensorsAndKvSize) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << kStories << " is missing (the shared test data)";
  CmdResult r = run_fathom("inspect " + kStories);
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* want : {"llama.block_count", "token_embd.weight", "kv cache", "f32"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want;
  // 5 layers x 4 kv heads x (8 + 8) = 320 values per token.
  EXPECT_NE(r.output.find("320 values/token"), std::string::npos) << r.output;
}

TEST(Cli, ChatUsesTheModelTemplateAndEndsOnEof) {
  if (!std::ifstream(kQwenVocab).good()) GTEST_SKIP() << kQwenVocab << " is missing (the shared test data)";
  const std::string path = std::string(FATHOM_TEST_TMP) + "/cli-chat.gguf";
  ASSERT_EQ(run_fathom("synth --arch qwen2 --preset tiny --vocab " + kQwenVocab + " -o " + path).code, 0);
  CmdResult r = run_fathom("chat -m " + path + " -n 6 --seed 1 < /dev/null");
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string input = std::string(FATHOM_TEST_TMP) + "/chat-input.txt";
  std::ofstream(input) << "Hi\nHow are you?\n";
  CmdResult two = run_fathom("chat -m " + path + " -n 6 --seed 1 --system 'Be brief.' < " + input);
  EXPECT_EQ(two.code, 0) << two.output;
  EXPECT_EQ(two.output.find("error"), std::string::npos) << two.output;
}

TEST(Cli, PlanAndDevices) {
  CmdResult p = run_fathom("plan --arch-preset deepseek-r1 --quant q4_k_m --device h100");
  ASSERT_EQ(p.code, 0) << p.output;
  EXPECT_NE(p.output.find("GiB"), std::string::npos);
  CmdResult d = run_fathom("devices --no-bench");
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_NE(d.output.find("cpu"), std::string::npos);
}

// On this machine's CPU the prefill bound divides fathom's measured matmul throughput, and says
// so; --no-bench falls back to the assumed peak, and says that.
TEST(Cli, PlanPrefillBoundFromMeasuredMatmulThroughput) {
  const std::string stories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";
  if (!std::ifstream(stories).good()) GTEST_SKIP() << "no " << stories;
  const CmdResult measured = run_fathom("plan -m " + stories + " --device auto --ram 4");
  ASSERT_EQ(measured.code, 0) << measured.output;
  const bool on_cpu = measured.output.find("local-cpu") != std::string::npos;
  if (!on_cpu) GTEST_SKIP() << "a CUDA device is the local target here";
  // The default quantization is a quantized one: its dots are integer, bounded by the q8_0 kernel.
  EXPECT_NE(measured.output.find(" TOPS (q8_0 matmul measured here) / (2 x"), std::string::npos) << measured.output;
  const CmdResult assumed = run_fathom("plan -m " + stories + " --device auto --ram 4 --no-bench");
  ASSERT_EQ(assumed.code, 0) << assumed.output;
  EXPECT_NE(assumed.output.find(" INT8 TOPS / (2 x"), std::string::npos) << assumed.output;
  EXPECT_EQ(assumed.output.find("measured here"), std::string::npos) << assumed.output;
}

// Every command that computes with the weights takes --mlock and --no-mmap; a command that reads
// only the metadata rejects them by name.
TEST(Cli, MapFlagsWhereTheWeightsAreRead) {
  const std::string stories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";
  if (!std::ifstream(stories).good()) GTEST_SKIP() << "no " << stories;
  for (const std::string command : {"run", "chat", "serve", "bench", "bench load", "logits", "perplexity", "kl-divergence",
                                    "imatrix", "quantize"}) {
    const CmdResult help = run_fathom(command + " --help");
    EXPECT_NE(help.output.find("--no-mmap"), std::string::npos) << command;
    EXPECT_NE(help.output.find("--mlock"), std::string::npos) << command;
  }
  const CmdResult logits = run_fathom("logits --no-mmap -m " + stories + " -p hi --top 3 --json", false);
  const CmdResult mapped = run_fathom("logits -m " + stories + " -p hi --top 3 --json", false);
  EXPECT_EQ(logits.code, 0) << logits.output;
  EXPECT_EQ(logits.output, mapped.output);
  for (const std::string& command : {"plan -m " + stories, "inspect " + stories}) {
    const CmdResult r = run_fathom(command + " --no-mmap");
    EXPECT_EQ(r.code, 2) << command << ": " << r.output;
    EXPECT_NE(r.output.find("'--no-mmap'"), std::string::npos) << command << ": " << r.output;
  }
}

TEST(ArgParser, ParsesTypedOptionsAndRejectsBadOnes) {
  std::string model;
  int n = 0;
  double t = 0;
  bool flag = false;
  std::string pos;
  tools::ArgParser p("x", "y");
  p.add_string("-m,--model", "FILE", "", &model);
  p.add_int("-n", "N", "", &n, tools::Range::any());
  p.add_float("--temp", "T", "", &t, tools::Range::at_least(0));
  p.add_flag("--flag", "", &flag);
  p.add_positional("POS", "", &pos);
  EXPECT_FALSE(p.parse({"-m", "a.gguf", "-n", "-5", "--temp=0.5", "--flag", "rest"}).has_value());
  EXPECT_EQ(model, "a.gguf");
  EXPECT_EQ(n, -5);
  EXPECT_DOUBLE_EQ(t, 0.5);
  EXPECT_TRUE(flag);
  EXPECT_EQ(pos, "rest");
  tools::ArgParser q("x", "y");
  int m = 0;
  q.add_int("-n", "N", "", &m, tools::Range::any());
  EXPECT_EQ(q.parse({"-n", "abc"}), 2);
  EXPECT_EQ(q.parse({"-n"}), 2);
}

TEST(ArgParser, OptionalIntTakesItsValueOnlyAfterEquals) {
  int64_t keep = -1;
  std::string pos;
  tools::ArgParser p("x", "y");
  p.add_optional_int("--shift", "N", "", &keep, 4, tools::Range::at_least(0));
  p.add_positional("POS", "", &pos, /*required=*/false);
  EXPECT_FALSE(p.parse({"--shift", "9"}).has_value());
  EXPECT_EQ(keep, 4);
  EXPECT_EQ(pos, "9");
  EXPECT_FALSE(p.parse({"--shift=9"}).has_value());
  EXPECT_EQ(keep, 9);
  EXPECT_EQ(p.parse({"--shift=-2"}), 2);
  EXPECT_NE(p.help().find("--shift[=N]"), std::string::npos);
}

}  // namespace
}  // namespace fathom
