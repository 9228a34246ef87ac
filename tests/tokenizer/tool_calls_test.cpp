// The tool-call formats of the chat templates: detection, the forced-call prefixes, and the
// incremental parser (each format whole and split at every byte boundary, several calls, calls
// after reasoning text, malformed calls returned as content).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tokenizer/tool_calls.h"

namespace fathom {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string shared_template(const std::string& name) {
  return read_file(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/" + name);
}

struct Parsed {
  std::string content;
  std::vector<ToolCallParser::Call> calls;
};

// What a parser is built with besides its format.
struct ParserSetup {
  std::vector<std::string> tool_names;  // offered functions (empty: any)
  size_t max_calls = SIZE_MAX;
};

Parsed run(ToolCallFormat format, const std::vector<std::string>& pieces, const std::string& forced_prefix = "",
           const std::string& forced_name = "", const ParserSetup& setup = {}) {
  ToolCallParser p(format, 1 << 16, setup.tool_names, setup.max_calls);
  if (!forced_prefix.empty()) p.begin_forced(forced_prefix, forced_name);
  Parsed all;
  auto take = [&](ToolCallParser::Output o) {
    all.content += o.content;
    for (auto& c : o.calls) all.calls.push_back(std::move(c));
  };
  for (const std::string& piece : pieces) take(p.push(piece));
  take(p.finish());
  return all;
}

// The same result whole, split in two at every byte, and byte by byte.
Parsed run_every_split(ToolCallFormat format, const std::string& text, const std::string& forced_prefix = "",
                       const std::string& forced_name = "", const ParserSetup& setup = {}) {
  const Parsed whole = run(format, {text}, forced_prefix, forced_name, setup);
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const Parsed split = run(format, {text.substr(0, cut), text.substr(cut)}, forced_prefix, forced_name, setup);
    EXPECT_EQ(split.content, whole.content) << "cut at " << cut;
    EXPECT_EQ(split.calls.size(), whole.calls.size()) << "cut at " << cut;
    for (size_t i = 0; i < std::min(split.calls.size(), whole.calls.size()); ++i) {
      EXPECT_EQ(split.calls[i].name, whole.calls[i].name) << "cut at " << cut;
      EXPECT_EQ(split.calls[i].arguments, whole.calls[i].arguments) << "cut at " << cut;
    }
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  const Parsed by_byte = run(format, bytes, forced_prefix, forced_name, setup);
  EXPECT_EQ(by_byte.content, whole.content);
  EXPECT_EQ(by_byte.calls.size(), whole.calls.size());
  return whole;
}

const std::string kR1Two =
    "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
    "{\"city\": \"Paris\", \"unit\": \"celsius\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n"
    "```json\n{\"a\": 2, \"b\": 3.5}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

TEST(ToolCallFormat, DetectedFromTheTemplates) {
  EXPECT_EQ(detect_tool_call_format(shared_template("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja")), ToolCallFormat::kDeepSeekR1);
  EXPECT_EQ(detect_tool_call_format(shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")), ToolCallFormat::kDeepSeekR1);
  EXPECT_EQ(detect_tool_call_format(shared_template("deepseek-ai-DeepSeek-V3.1.jinja")), ToolCallFormat::kDeepSeekV31);
  EXPECT_EQ(detect_tool_call_format(shared_template("deepseek-ai-DeepSeek-V3.2.jinja")), ToolCallFormat::kDsmlV32);
  EXPECT_EQ(detect_tool_call_format(shared_template("deepseek-ai-DeepSeek-V4.jinja")), ToolCallFormat::kDsmlV4);
  EXPECT_EQ(detect_tool_call_format(shared_template("Qwen-Qwen2.5-7B-Instruct.jinja")), ToolCallFormat::kQwen);
  const std::string v3 = read_file(std::string(FATHOM_SHARED_DIR) + "/testdata/deepseek-v3/tokenizer_config.json");
  const std::string v3_template = nlohmann::json::parse(v3).at("chat_template").get<std::string>();
  EXPECT_EQ(detect_tool_call_format(v3_template), ToolCallFormat::kDeepSeekR1);
  EXPECT_FALSE(template_takes_object_arguments(v3_template));
  EXPECT_FALSE(template_takes_object_arguments(shared_template("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja")));
  EXPECT_TRUE(template_takes_object_arguments(shared_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")));
  EXPECT_TRUE(template_takes_object_arguments(shared_template("deepseek-ai-DeepSeek-V3.1.jinja")));
  EXPECT_TRUE(template_takes_object_arguments(shared_template("Qwen-Qwen2.5-7B-Instruct.jinja")));
  EXPECT_EQ(detect_tool_call_format("{{ messages[0]['content'] }}"), ToolCallFormat::kNone);
}

// What a template renders for an assistant's calls is what the parser reads back.
TEST(ToolCallParser, ReadsWhatTheTemplatesRender) {
  struct Case {
    const char* file;
    ToolCallFormat format;
  };
  for (const Case& c : {Case{"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ToolCallFormat::kDeepSeekR1},
                        Case{"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", ToolCallFormat::kDeepSeekR1},
                        Case{"deepseek-ai-DeepSeek-V3.1.jinja", ToolCallFormat::kDeepSeekV31},
                        Case{"deepseek-ai-DeepSeek-V3.2.jinja", ToolCallFormat::kDsmlV32},
                        Case{"deepseek-ai-DeepSeek-V4.jinja", ToolCallFormat::kDsmlV4},
                        Case{"Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat::kQwen}}) {
    SCOPED_TRACE(c.file);
    const std::string source = shared_template(c.file);
    ChatTurn user{{"user", "Weather in Paris, and 2+3.5?", ""}, false, {}, ""};
    ChatTurn calls{{"assistant", "", ""}, true, {{"call_1", "get_weather", "{\"city\": \"Paris\"}"}, {"call_2", "add", "{\"a\": 2, \"b\": 3.5}"}}, ""};
    nlohmann::ordered_json context;
    context["messages"] = chat_messages_json({user, calls}, template_takes_object_arguments(source));
    context["add_generation_prompt"] = false;
    context["bos_token"] = "";
    context["eos_token"] = "";
    const Expected<std::string> rendered = render_template(source, context);
    ASSERT_TRUE(rendered.has_value()) << rendered.status().to_string();
    // The assistant's part: from the first call marker on.
    const char* opener = c.format == ToolCallFormat::kQwen     ? "<tool_call>"
                         : c.format == ToolCallFormat::kDsmlV32 ? "<｜DSML｜function_calls>"
                         : c.format == ToolCallFormat::kDsmlV4  ? "<｜DSML｜tool_calls>"
                                                                 : "<｜tool▁calls▁begin｜>";
    const size_t at = rendered->find(opener);
    ASSERT_NE(at, std::string::npos) << *rendered;
    const Parsed p = run_every_split(c.format, rendered->substr(at));
    ASSERT_EQ(p.calls.size(), 2u) << *rendered;
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments), nlohmann::json::parse("{\"city\": \"Paris\"}"));
    EXPECT_EQ(p.calls[1].name, "add");
    EXPECT_EQ(nlohmann::json::parse(p.calls[1].arguments), nlohmann::json::parse("{\"a\": 2, \"b\": 3.5}"));
    // Only the end-of-sentence/turn markers the template adds after the calls remain.
    EXPECT_TRUE(p.content.find("tool") == std::string::npos) << p.content;
  }
}

TEST(ToolCallParser, DeepSeekR1SeveralCallsAfterText) {
  const Parsed p = run_every_split(ToolCallFormat::kDeepSeekR1, kR1Two);
  EXPECT_EQ(p.content, "Let me check.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\": \"Paris\", \"unit\": \"celsius\"}");
  EXPECT_EQ(p.calls[1].name, "add");
  EXPECT_EQ(p.calls[1].arguments, "{\"a\": 2, \"b\": 3.5}");
}

TEST(ToolCallParser, DeepSeekV31) {
  const std::string text =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
      "<｜tool▁call▁begin｜>add<｜tool▁sep｜>{\"a\": 1}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const Parsed p = run_every_split(ToolCallFormat::kDeepSeekV31, text);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(p.calls[1].name, "add");
}

TEST(ToolCallParser, QwenCallsAndTextAround) {
  const std::string text =
      "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2}}\n</tool_call>";
  const Parsed p = run_every_split(ToolCallFormat::kQwen, text);
  EXPECT_EQ(p.content, "Checking.");  // the newline before the call is layout
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\":\"Paris\",\"unit\":\"celsius\"}");  // key order kept
  EXPECT_EQ(p.calls[1].arguments, "{\"a\":2}");
}

// What looks like the start of a marker is held, then released as text when it is not one.
TEST(ToolCallParser, PartialMarkersBecomeContent) {
  const Parsed a = run_every_split(ToolCallFormat::kQwen, "a <tool_ca b </tool_call> <tool_c");
  EXPECT_EQ(a.content, "a <tool_ca b </tool_call> <tool_c");
  EXPECT_TRUE(a.calls.empty());
  ToolCallParser p(ToolCallFormat::kDeepSeekR1, 1 << 16);
  EXPECT_EQ(p.push("x<｜tool▁calls").content, "x");  // held: may become the marker
  EXPECT_EQ(p.push(" no").content, "<｜tool▁calls no");
}

TEST(ToolCallParser, MalformedCallsAreContent) {
  // Arguments that are not JSON, a missing separator, a bad name, an unterminated call.
  for (const std::string& text : {
           std::string("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{oops\n```<｜tool▁call▁end｜>"),
           std::string("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function f {}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
           std::string("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>bad name!\n```json\n{}\n```<｜tool▁call▁end｜>"),
           std::string("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": 1"),
           std::string("<｜tool▁calls▁begin｜>just text"),
       }) {
    SCOPED_TRACE(text);
    const Parsed p = run_every_split(ToolCallFormat::kDeepSeekR1, text);
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, text);
  }
  const Parsed q = run_every_split(ToolCallFormat::kQwen, "Hm. \n<tool_call>\n{\"name\": \"f\"}\n</tool_call>tail ");
  EXPECT_TRUE(q.calls.empty());
  EXPECT_EQ(q.content, "Hm. \n<tool_call>\n{\"name\": \"f\"}\n</tool_call>tail ");
}

// A good call followed by a broken one: the first is kept, the second is text.
TEST(ToolCallParser, GoodThenBrokenCall) {
  const std::string text =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
      "<｜tool▁call▁begin｜>add<｜tool▁sep｜>{nope}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const Parsed p = run_every_split(ToolCallFormat::kDeepSeekV31, text);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.content, "<｜tool▁call▁begin｜>add<｜tool▁sep｜>{nope}<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
}

TEST(ToolCallParser, OversizedCallIsContent) {
  ToolCallParser p(ToolCallFormat::kQwen, 16);
  std::string content = p.push("<tool_call>{\"name\": \"f\", \"arguments\": {\"long\": 1}}").content;
  content += p.push("</tool_call>").content;
  content += p.finish().content;
  EXPECT_EQ(content, "<tool_call>{\"name\": \"f\", \"arguments\": {\"long\": 1}}</tool_call>");
}

TEST(ToolCallParser, DsmlParametersBecomeAJsonObject) {
  const std::string text =
      "I will look.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Paris, \"FR\"</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">[1, 2]</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"now\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  const Parsed p = run_every_split(ToolCallFormat::kDsmlV32, text);
  EXPECT_EQ(p.content, "I will look.");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "{\"city\":\"Paris, \\\"FR\\\"\",\"days\":[1,2]}");
  EXPECT_EQ(p.calls[1].name, "now");
  EXPECT_EQ(p.calls[1].arguments, "{}");
  // A non-JSON value where string="false" says JSON: not a call.
  const std::string bad = "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"n\" string=\"false\">"
                          "many</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  const Parsed q = run_every_split(ToolCallFormat::kDsmlV4, bad);
  EXPECT_TRUE(q.calls.empty());
  EXPECT_EQ(q.content, bad);
  // Forced: the prompt opened the invoke with the name.
  const std::string prefix = forced_call_prefix(ToolCallFormat::kDsmlV4, "<｜Assistant｜></think>", "f");
  EXPECT_EQ(prefix, "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n");
  const Parsed f = run_every_split(ToolCallFormat::kDsmlV4,
                                   "<｜DSML｜parameter name=\"n\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>", prefix, "f");
  ASSERT_EQ(f.calls.size(), 1u);
  EXPECT_EQ(f.calls[0].arguments, "{\"n\":3}");
}

TEST(ToolCallParser, FormatsWithoutMarkersPassEverythingThrough) {
  const Parsed p = run(ToolCallFormat::kNone, {"<tool_call>{}</tool_call>"});
  EXPECT_EQ(p.content, "<tool_call>{}</tool_call>");
}

// tool_choice named/required: the prompt opened the call; the output is its continuation.
TEST(ToolCallParser, ForcedCallPrefixes) {
  const std::string r1_prompt = "<｜User｜>hi<｜Assistant｜><think>\n";
  const std::string r1 = forced_call_prefix(ToolCallFormat::kDeepSeekR1, r1_prompt, "get_weather");
  EXPECT_EQ(r1, "</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n");
  const Parsed a = run_every_split(ToolCallFormat::kDeepSeekR1,
                                   "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", r1, "get_weather");
  ASSERT_EQ(a.calls.size(), 1u);
  EXPECT_EQ(a.calls[0].name, "get_weather");
  EXPECT_EQ(a.calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(a.content, "");

  const std::string v31 = forced_call_prefix(ToolCallFormat::kDeepSeekV31, "<｜Assistant｜><think></think>", "");
  EXPECT_EQ(v31, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
  const Parsed b = run_every_split(ToolCallFormat::kDeepSeekV31, "add<｜tool▁sep｜>{\"a\": 1}<｜tool▁call▁end｜>", v31, "");
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(b.calls[0].name, "add");

  const std::string qwen = forced_call_prefix(ToolCallFormat::kQwen, "<|im_start|>assistant\n", "add");
  EXPECT_EQ(qwen, "<tool_call>\n{\"name\": \"add\", \"arguments\": ");
  const Parsed c = run_every_split(ToolCallFormat::kQwen, "{\"a\": 1}}\n</tool_call>", qwen, "add");
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.calls[0].arguments, "{\"a\":1}");
}

// Without the grammar engine a forced call may not parse; it still comes back as the call,
// with the name asked for and the arguments as the model wrote them.
TEST(ToolCallParser, ForcedCallIsReadLeniently) {
  const std::string prefix = forced_call_prefix(ToolCallFormat::kDeepSeekR1, "", "get_weather");
  const Parsed p = run_every_split(ToolCallFormat::kDeepSeekR1, "noise {not json", prefix, "get_weather");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, "noise {not json");
  EXPECT_EQ(p.content, "");
  const std::string qwen = forced_call_prefix(ToolCallFormat::kQwen, "", "add");
  const Parsed q = run_every_split(ToolCallFormat::kQwen, "{\"a\": 1", qwen, "add");
  ASSERT_EQ(q.calls.size(), 1u);
  EXPECT_EQ(q.calls[0].name, "add");
  EXPECT_EQ(q.calls[0].arguments, "{\"a\": 1");
}

// A call of a function that was not offered is text that looks like a call (vLLM and OpenAI
// never return one); in a group of calls, the text from there on is content.
TEST(ToolCallParser, CallsOfFunctionsNotOfferedAreContent) {
  const Parsed only_add = run_every_split(ToolCallFormat::kDeepSeekR1, kR1Two, "", "", {{"add"}});
  EXPECT_TRUE(only_add.calls.empty());
  EXPECT_EQ(only_add.content, kR1Two);
  const Parsed both = run_every_split(ToolCallFormat::kDeepSeekR1, kR1Two, "", "", {{"add", "get_weather"}});
  ASSERT_EQ(both.calls.size(), 2u);
  EXPECT_EQ(both.content, "Let me check.");
}

// parallel_tool_calls false: the first call only, as vLLM returns it.
TEST(ToolCallParser, MaxCallsDropsLaterCalls) {
  const Parsed p = run_every_split(ToolCallFormat::kDeepSeekR1, kR1Two, "", "", {{}, 1});
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.content, "Let me check.");
}

// The forced prefix, then what the grammar makes the model write (the frame around the
// arguments), parses back into exactly that call and nothing else, in every format, with the
// name in the prefix (named function) and after it (tool_choice "required", the model picks).
TEST(ToolCallParser, ForcedCallFramesParseBack) {
  for (ToolCallFormat format : {ToolCallFormat::kDeepSeekR1, ToolCallFormat::kDeepSeekV31, ToolCallFormat::kQwen,
                                ToolCallFormat::kDsmlV32, ToolCallFormat::kDsmlV4}) {
    for (bool name_in_prefix : {true, false}) {
      const std::string prompt = "<think>\n";
      const std::string prefix = forced_call_prefix(format, prompt, name_in_prefix ? "add" : "");
      const ForcedCallFrame frame = forced_call_frame(format, "add", name_in_prefix);
      const std::string arguments = frame.dsml_arguments
          ? "<｜DSML｜parameter name=\"a\" string=\"false\">1</｜DSML｜parameter>\n<｜DSML｜parameter name=\"s\" "
            "string=\"true\">x y</｜DSML｜parameter>\n"
          : "{\"a\": 1, \"s\": \"x y\"}";
      const std::string text = frame.before_arguments + arguments + frame.after_arguments;
      SCOPED_TRACE(std::string(tool_call_format_name(format)) + (name_in_prefix ? " named" : " required") + ": " + text);
      const Parsed p = run_every_split(format, text, prefix, name_in_prefix ? "add" : "", {{"add", "other"}});
      ASSERT_EQ(p.calls.size(), 1u);
      EXPECT_EQ(p.calls[0].name, "add");
      EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments), nlohmann::json::parse(R"({"a": 1, "s": "x y"})"));
      EXPECT_EQ(p.content, "");
    }
  }
}

}  // namespace
}  // namespace fathom
