// The command line as llama.cpp users type it: every bad numeric flag is a one-line usage error
// (exit 2) naming the flag and its range, help fits 100 columns, llama.cpp's spellings work
// (-c, -f -, --no-mmap, --mlock, -r), and `fathom chat` takes its commands from piped input.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../cli_util.h"
#include "tools/args.h"
#include "tools/cli.h"

namespace fathom {
namespace {

using test::CmdResult;
using test::run_fathom;

const std::string kStories = std::string(FATHOM_SHARED_DIR) + "/models/tinyllamas-stories-260k-f32.gguf";
const std::string kQwenVocab = std::string(FATHOM_SHARED_DIR) + "/testdata/vocab/ggml-vocab-qwen2.gguf";

std::string fathom_bin() {
  const char* bin = std::getenv("FATHOM_BIN");
  return bin ? bin : FATHOM_BIN_PATH;
}

// `fathom WORDS...` through the binary's dispatch, in this process (no quoting: words split at
// spaces): the parse errors and --help need no model, and a process per case would cost more
// than the cases. Output is stdout followed by stderr.
CmdResult run_in_process(const std::string& command_line) {
  std::vector<std::string> words = {"fathom"};
  std::istringstream in(command_line);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  CmdResult r;
  r.code = tools::main(static_cast<int>(argv.size()), argv.data());
  r.output = ::testing::internal::GetCapturedStdout();
  r.output += ::testing::internal::GetCapturedStderr();
  return r;
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Code points, not bytes: help text has "—" and "±".
size_t columns(const std::string& line) {
  size_t n = 0;
  for (unsigned char c : line) n += (c & 0xC0) != 0x80;
  return n;
}

TEST(CliFlags, BadValuesAreOneLineUsageErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"run -t 0", "fathom run: -t must be from 1 to 1024, got 0"},
      {"run -t -1", "fathom run: -t must be from 1 to 1024, got -1"},
      {"run -c 0", "fathom run: -c must be from 1 to 2147483647, got 0"},
      {"run --ctx-size -4", "fathom run: --ctx-size must be from 1 to 2147483647, got -4"},
      {"run --temp -1", "fathom run: --temp must be from 0 to 100, got -1"},
      {"run --temp nan", "fathom run: --temp expects a number, got 'nan'"},
      {"run --temp inf", "fathom run: --temp expects a number, got 'inf'"},
      {"run --top-p 2", "fathom run: --top-p must be from 0 to 1, got 2"},
      {"run --top-k -3", "fathom run: --top-k must be from 0 to 16777216, got -3"},
      {"run --min-p 1.5", "fathom run: --min-p must be from 0 to 1, got 1.5"},
      {"run --repeat-penalty 0", "fathom run: --repeat-penalty must be above 0 and at most 100, got 0"},
      {"run --presence-penalty 3", "fathom run: --presence-penalty must be from -2 to 2, got 3"},
      {"run -n -2", "fathom run: -n must be from 0 to 2147483647, got -2"},
      {"run -ngl -1", "fathom run: -ngl must be from 0 to 65536, got -1"},
      {"run -t 2x", "fathom run: -t expects an integer, got '2x'"},
      {"chat -n 0", "fathom chat: -n must be from 1 to 2147483647, got 0"},
      {"plan --ram -1", "fathom plan: --ram must be above 0 and at most 1048576, got -1"},
      {"plan -c 0", "fathom plan: -c must be from 1 to 2147483647, got 0"},
      {"logits --top 0", "fathom logits: --top must be from 1 to 1048576, got 0"},
      {"bench --bw-mib -5", "fathom bench: --bw-mib must be from 0 to 1048576, got -5"},
      {"bench -r 0", "fathom bench: -r must be from 1 to 1000, got 0"},
      {"bench load --qps 0", "fathom bench load: --qps must be above 0 and at most 1000000, got 0"},
      {"synth --layers 0", "fathom synth: --layers must be from 1 to 1024, got 0"},
      {"serve --port 70000", "fathom serve: --port must be from 0 to 65535, got 70000"},
      {"serve --context-shift=-1", "fathom serve: --context-shift must be from 0 to 2147483647, got -1"},
      {"serve --context-shift=x", "fathom serve: --context-shift expects an integer, got 'x'"},
      {"perplexity --ctx 1", "fathom perplexity: --ctx must be from 2 to 2147483647, got 1"},
      {"imatrix --chunks 0", "fathom imatrix: --chunks must be from 1 to 1073741824, got 0"},
      {"inspect --max-items -1", "fathom inspect: --max-items must be from 0 to 1073741824, got -1"},
      {"run --frobnicate", "fathom run: unknown option '--frobnicate'"},
      {"run -m a.gguf b.gguf -p hi", "fathom run: MODEL given both as -m and as an argument; pass it once"},
      {"run -m a.gguf", "fathom run: no prompt; pass -p TEXT or -f FILE"},
      {"tokenize -m a.gguf", "fathom tokenize: no text; pass TEXT or -f FILE"},
      {"plan -q q4_0", "fathom plan: unknown option '-q'"},
  };
  for (const auto& [command, message] : cases) {
    const CmdResult r = run_in_process(command);
    EXPECT_EQ(r.code, 2) << command << "\n" << r.output;
    EXPECT_EQ(r.output.rfind(message, 0), 0u) << command << "\n" << r.output;
    EXPECT_EQ(count_lines(r.output), 1u) << command << "\n" << r.output;
  }
}

TEST(CliFlags, EveryHelpFitsInOneHundredColumns) {
  const std::vector<std::string> commands = {"", "run", "chat", "tokenize", "detokenize", "logits", "inspect", "synth",
                                             "serve", "bench", "bench load", "plan", "devices", "quantize", "convert",
                                             "imatrix", "perplexity", "kl-divergence"};
  for (const std::string& command : commands) {
    const CmdResult r = run_in_process(command + " --help");
    ASSERT_EQ(r.code, 0) << command << "\n" << r.output;
    std::istringstream lines(r.output);
    std::string line;
    while (std::getline(lines, line)) EXPECT_LE(columns(line), 100u) << "fathom " << command << " --help:\n" << line;
  }
}

TEST(CliFlags, ThreadsAboveTheCoresWarn) {
  const CmdResult r = run_in_process("run -t 1024");
  EXPECT_EQ(r.code, 2) << r.output;  // no prompt: the warning came first
  EXPECT_NE(r.output.find("fathom run: warning: -t 1024 is more than the"), std::string::npos) << r.output;
}

TEST(CliFlags, RuntimeFailuresExitOneAndSayWhy) {
  const CmdResult dir = run_fathom("run -m " + kStories + " -f " + std::string(FATHOM_TEST_TMP));
  EXPECT_EQ(dir.code, 1) << dir.output;
  EXPECT_NE(dir.output.find("is a directory, not a file"), std::string::npos) << dir.output;
  const CmdResult device = run_fathom("run -m " + kStories + " -p hi --device opencl:5");
  EXPECT_EQ(device.code, 1) << device.output;
  EXPECT_EQ(device.output.rfind("fathom run: --device opencl:5: ", 0), 0u) << device.output;
  const CmdResult cuda = run_fathom("logits -m " + kStories + " -p hi --device cuda:7");
  EXPECT_EQ(cuda.code, 1) << cuda.output;
  EXPECT_EQ(cuda.output.rfind("fathom logits: --device cuda:7: ", 0), 0u) << cuda.output;
}

TEST(CliFlags, LlamaCppSpellingsDoWhatTheySay) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << "no " << kStories;
  const std::string base = "run -q -n 12 --temp 0 -t 2 ";
  const CmdResult reference = run_fathom(base + "-m " + kStories + " -p 'Once upon a time'", false);
  ASSERT_EQ(reference.code, 0) << reference.output;
  ASSERT_FALSE(reference.output.empty());
  // The model as the argument, the prompt from stdin, the file read instead of mapped.
  const CmdResult positional = run_fathom(base + kStories + " -p 'Once upon a time'", false);
  EXPECT_EQ(positional.output, reference.output);
  const CmdResult from_stdin = test::run_command("printf 'Once upon a time' | " + fathom_bin() + " " + base + "-m " +
                                                 kStories + " -f -");
  EXPECT_EQ(from_stdin.output, reference.output);
  const CmdResult no_mmap = run_fathom(base + "--no-mmap -m " + kStories + " -p 'Once upon a time'", false);
  EXPECT_EQ(no_mmap.output, reference.output);
  // --mlock: locked (the limit allows it, or the process may lock anyway), or the limit named.
  const CmdResult mlock = test::run_command("ulimit -l 0; " + fathom_bin() + " " + base + "--mlock -m " + kStories +
                                            " -p 'Once upon a time' 2>&1");
  if (mlock.code == 0) {
    EXPECT_EQ(mlock.output, reference.output);
  } else {
    EXPECT_EQ(mlock.code, 1) << mlock.output;
    EXPECT_NE(mlock.output.find("locked-memory limit 0 KiB"), std::string::npos) << mlock.output;
  }
  // -r / --stop ends the text before the stop string.
  const std::string cut = reference.output.substr(4, 6);
  const CmdResult stopped = run_fathom(base + "-m " + kStories + " -p 'Once upon a time' -r '" + cut + "'", false);
  EXPECT_EQ(stopped.output, reference.output.substr(0, reference.output.find(cut)) + "\n") << cut;
}

TEST(CliFlags, RunChecksTheContextBeforeEchoingAndSaysWhereItStopped) {
  if (!std::ifstream(kStories).good()) GTEST_SKIP() << "no " << kStories;
  const std::string long_prompt = "Once upon a time there was a little girl who lived in a village near the forest";
  const CmdResult too_long = run_fathom("run -m " + kStories + " -c 8 -t 2 -p '" + long_prompt + "'");
  EXPECT_EQ(too_long.code, 1) << too_long.output;
  EXPECT_NE(too_long.output.find("the context holds 8"), std::string::npos) << too_long.output;
  EXPECT_EQ(too_long.output.find(long_prompt), std::string::npos) << too_long.output;
  const CmdResult at_end = run_fathom("run -m " + kStories + " -c 16 -n 100 -t 2 --temp 0 --ignore-eos -p 'Once upon a time'");
  EXPECT_EQ(at_end.code, 0) << at_end.output;
  EXPECT_NE(at_end.output.find("fathom run: stopped at the end of the context (16 tokens)"), std::string::npos)
      << at_end.output;
}

TEST(CliFlags, ChatCommandsFromPipedInput) {
  if (!std::ifstream(kQwenVocab).good()) GTEST_SKIP() << "no " << kQwenVocab;
  const std::string dir = FATHOM_TEST_TMP;
  const std::string model = dir + "/flags-chat.gguf";
  ASSERT_EQ(run_fathom("synth --arch qwen2 --preset tiny --vocab " + kQwenVocab + " -q -o " + model).code, 0);
  const std::string saved = dir + "/flags-chat-1.json", resaved = dir + "/flags-chat-2.json";
  std::remove(saved.c_str());
  std::remove(resaved.c_str());
  const std::string chat = fathom_bin() + " chat -m " + model + " -n 4 -t 2 --seed 3 ";
  const CmdResult first = test::run_command("printf '/set temperature 0\\n/set system Be brief.\\nHi\\n/save " + saved +
                                            "\\n/bye\\nnever read\\n' | " + chat + "2>&1");
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_NE(first.output.find("(temperature 0)"), std::string::npos) << first.output;
  std::ifstream in(saved);
  std::stringstream doc;
  doc << in.rdbuf();
  EXPECT_NE(doc.str().find("\"system\": \"Be brief.\""), std::string::npos) << doc.str();
  EXPECT_NE(doc.str().find("\"role\": \"user\""), std::string::npos) << doc.str();
  EXPECT_NE(doc.str().find("\"role\": \"assistant\""), std::string::npos) << doc.str();
  // /load then /save writes the same conversation back.
  const CmdResult second = test::run_command("printf '/load " + saved + "\\n/save " + resaved + "\\n/frob\\n' | " + chat + "2>&1");
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_NE(second.output.find("unknown command /frob"), std::string::npos) << second.output;
  std::ifstream in2(resaved);
  std::stringstream doc2;
  doc2 << in2.rdbuf();
  EXPECT_EQ(doc2.str(), doc.str());
  // --chat-template-file replaces the model's template.
  const std::string tmpl = dir + "/flags-chat-template.jinja";
  std::ofstream(tmpl) << "{{ raise_exception('the file template ran') }}";
  const CmdResult custom = test::run_command("printf 'Hi\\n' | " + chat + "--chat-template-file " + tmpl + " 2>&1");
  EXPECT_NE(custom.output.find("the file template ran"), std::string::npos) << custom.output;
  const CmdResult inline_template =
      test::run_command("printf 'Hi\\n' | " + chat + "--chat-template \"{{ raise_exception('the inline template ran') }}\" 2>&1");
  EXPECT_NE(inline_template.output.find("the inline template ran"), std::string::npos) << inline_template.output;
}

// fathom serve takes the same template options as chat, with the same errors.
TEST(CliFlags, ServeChatTemplateOptions) {
  const CmdResult both = run_fathom("serve -m " + kStories + " --chat-template x --chat-template-file y");
  EXPECT_EQ(both.code, 2) << both.output;
  EXPECT_NE(both.output.find("--chat-template and --chat-template-file exclude each other"), std::string::npos) << both.output;
  const CmdResult missing = run_fathom("serve -m " + kStories + " --chat-template-file /nonexistent/template.jinja");
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_EQ(missing.output.rfind("fathom serve: --chat-template-file: cannot open '/nonexistent/template.jinja'", 0), 0u)
      << missing.output;
}

TEST(ArgParser, RangesDescribeThemselves) {
  EXPECT_EQ(tools::Range::at_least(1).describe(), "at least 1");
  EXPECT_EQ(tools::Range::between(0, 1).describe(), "from 0 to 1");
  EXPECT_EQ((tools::Range{0, 2, true}).describe(), "above 0 and at most 2");
  EXPECT_FALSE(tools::Range::any().contains(std::nan("")));
  EXPECT_FALSE((tools::Range{0, 2, true}).contains(0));
  EXPECT_TRUE((tools::Range{0, 2, true}).contains(2));
}

}  // namespace
}  // namespace fathom
