// Conformance of the chat-template renderer with python's jinja2 (configured like transformers'
// apply_chat_template, see render_jinja.py): every template the project ships or reads renders
// the same bytes for a set of conversations, and fails where python fails. Also
// apply_chat_template and ReasoningSplitter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tool_calls.h"

namespace fathom {
namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A python with jinja2: Debian's /usr/bin/python3 first (the reference the project names),
// then whatever python3 is on PATH.
std::optional<std::string> probe_python() {
  for (const char* candidate : {"/usr/bin/python3", "python3"}) {
    const std::string probe = std::string(candidate) + " -c 'import jinja2' >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return std::string(candidate);
  }
  return std::nullopt;
}

// Probed once per test binary: each probe starts a python process.
const std::optional<std::string>& find_python() {
  static const std::optional<std::string> python = probe_python();
  return python;
}

struct Reference {
  bool ok = false;      // python rendered without an exception
  std::string output;   // the rendering when ok
  std::string error;    // "ExceptionType: message" otherwise
};

// Renders all requests in one python process (render_jinja.py batch mode).
std::vector<Reference> render_with_python(const std::string& python, const ojson& requests) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string input_path = dir + "/fathom_jinja_in_" + std::to_string(getpid()) + ".json";
  {
    std::ofstream out(input_path, std::ios::binary);
    out << ojson{{"cases", requests}}.dump();
  }
  const std::string script = std::string(FATHOM_SOURCE_DIR) + "/tests/tokenizer/render_jinja.py";
  const std::string command = python + " '" + script + "' < '" + input_path + "'";
  std::string text;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) text.append(buffer, n);
    pclose(pipe);
  }
  std::filesystem::remove(input_path);
  std::vector<Reference> results;
  const ojson parsed = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return results;
  for (const auto& r : parsed) {
    results.push_back({r.at("ok").get<bool>(), r.at("output").get<std::string>(), r.at("error").get<std::string>()});
  }
  return results;
}

// ---- conversations ------------------------------------------------------------------------

const char* const kBos = "<｜begin▁of▁sentence｜>";
const char* const kEos = "<｜end▁of▁sentence｜>";

ojson msg(const std::string& role, const ojson& content) { return ojson{{"role", role}, {"content", content}}; }

ojson weather_tools() {
  return ojson::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
      "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}
  ])");
}

// An assistant turn calling tools; `string_arguments` uses OpenAI's JSON-string arguments,
// otherwise dicts (what transformers documents).
ojson tool_call_message(bool string_arguments, const ojson& content) {
  const ojson args1 = {{"city", "Paris"}, {"unit", "celsius"}};
  const ojson args2 = {{"a", 2}, {"b", 3.5}};
  const auto call = [&](const char* id, const char* name, const ojson& args) {
    return ojson{{"id", id}, {"type", "function"},
                 {"function", {{"name", name}, {"arguments", string_arguments ? ojson(args.dump()) : args}}}};
  };
  ojson m = msg("assistant", content);
  m["tool_calls"] = ojson::array({call("call_1", "get_weather", args1), call("call_2", "add", args2)});
  return m;
}

ojson tool_result(const char* id, const std::string& content) {
  ojson m = msg("tool", content);
  m["tool_call_id"] = id;
  return m;
}

struct Conversation {
  std::string name;  // shown when a case fails
  ojson context;     // template variables
};

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  const auto add = [&](const std::string& name, ojson messages, ojson extra = ojson::object()) {
    ojson context = {{"messages", std::move(messages)}, {"bos_token", kBos}, {"eos_token", kEos}};
    if (!extra.contains("add_generation_prompt_absent")) context["add_generation_prompt"] = true;
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      if (it.key() != "add_generation_prompt_absent") context[it.key()] = it.value();
    }
    out.push_back({name, std::move(context)});
  };
  const ojson user_hello = msg("user", "Hello!");
  add("single_user", {user_hello});
  add("single_user_no_prompt", {user_hello}, {{"add_generation_prompt", false}});
  add("add_generation_prompt_undefined", {user_hello}, {{"add_generation_prompt_absent", true}});
  add("system_user", {msg("system", "You are a helpful assistant."), user_hello});
  add("two_systems", {msg("system", "Rule one."), msg("system", "Rule two."), user_hello});
  add("multi_turn", {msg("system", "Be brief."), msg("user", "What is 2+2?"), msg("assistant", "4."),
                     msg("user", "And 3+3?")});
  add("multi_turn_ending_with_assistant",
      {msg("user", "What is 2+2?"), msg("assistant", "4."), msg("user", "Thanks"), msg("assistant", "You're welcome.")},
      {{"add_generation_prompt", false}});
  add("assistant_with_think_tags",
      {msg("user", "What is 2+2?"), msg("assistant", "<think>\nSimple arithmetic: 2+2=4.\n</think>\n\nThe answer is 4."),
       msg("user", "Are you sure?")});
  ojson reasoning_turn = msg("assistant", "The answer is 4.");
  reasoning_turn["reasoning_content"] = "2 plus 2 makes 4.";
  add("reasoning_content_field", {msg("user", "What is 2+2?"), reasoning_turn, msg("user", "Why?")});
  add("reasoning_content_thinking", {msg("user", "What is 2+2?"), reasoning_turn, msg("user", "Why?")},
      {{"thinking", true}});
  add("reasoning_last_turn_thinking", {msg("user", "What is 2+2?"), reasoning_turn},
      {{"thinking", true}, {"add_generation_prompt", false}});
  add("thinking_enabled", {user_hello}, {{"thinking", true}});
  add("enable_thinking_true", {user_hello}, {{"enable_thinking", true}});
  add("enable_thinking_false", {user_hello}, {{"enable_thinking", false}});
  add("non_ascii",
      {msg("system", "Répondez en français. 日本語もOK。"), msg("user", "你好，世界！ Ünïcödé 🚀 tab\there\u3000end"),
       msg("assistant", "こんにちは 👋"), msg("user", "Ελληνικά και русский")});
  add("template_like_and_escapes",
      {msg("user", "Render {{ this }} and {% that %} literally; quotes ' \" and backslash \\n."),
       msg("assistant", "Line1\nLine2\r\n\ttabbed")});
  add("empty_assistant_content", {msg("user", "Say nothing."), msg("assistant", ""), msg("user", "Ok")});
  add("empty_messages", ojson::array());
  ojson prefix_turn = msg("assistant", "<think>Partial");
  prefix_turn["prefix"] = true;
  add("assistant_prefix", {msg("user", "Continue"), prefix_turn}, {{"thinking", true}, {"add_generation_prompt", false}});
  add("developer_role", {msg("developer", "Developer instructions."), user_hello});

  // Tools.
  const ojson tools = weather_tools();
  add("tools_offered", {msg("system", "You can use tools."), msg("user", "Weather in Paris?")}, {{"tools", tools}});
  add("tools_offered_no_system", {msg("user", "Weather in Paris?")}, {{"tools", tools}});
  for (bool string_args : {false, true}) {
    const std::string suffix = string_args ? "_string_arguments" : "_dict_arguments";
    add("tool_round_trip" + suffix,
        {msg("system", "You can use tools."), msg("user", "Weather in Paris, and 2+3.5?"),
         tool_call_message(string_args, nullptr), tool_result("call_1", "{\"temperature\": 18, \"sky\": \"cloudy\"}"),
         tool_result("call_2", "5.5"), msg("assistant", "It is 18°C and cloudy; 2+3.5 = 5.5.")},
        {{"tools", tools}, {"add_generation_prompt", false}});
    add("tool_results_pending" + suffix,
        {msg("user", "Weather in Paris, and 2+3.5?"), tool_call_message(string_args, nullptr),
         tool_result("call_1", "{\"temperature\": 18}"), tool_result("call_2", "5.5")},
        {{"tools", tools}});
    add("tool_call_with_content" + suffix,
        {msg("user", "Weather in Paris?"), tool_call_message(string_args, "Let me check."),
         tool_result("call_1", "sunny"), tool_result("call_2", "5.5"), msg("assistant", "Sunny.")},
        {{"tools", tools}, {"thinking", true}, {"add_generation_prompt", false}});
    add("tool_calls_without_tools_list" + suffix,
        {msg("user", "Weather?"), tool_call_message(string_args, nullptr), tool_result("call_1", "rain"),
         tool_result("call_2", "5.5"), msg("user", "Thanks")});
  }
  ojson no_arg_call = msg("assistant", nullptr);
  no_arg_call["tool_calls"] = ojson::parse(R"([{"type": "function", "function": {"name": "now", "arguments": {}}}])");
  add("tool_call_without_arguments", {msg("user", "Time?"), no_arg_call, tool_result("x", "12:00")}, {{"tools", tools}});
  add("v4_reasoning_effort_max", {user_hello}, {{"thinking", true}, {"reasoning_effort", "max"}});
  add("v4_response_format", {user_hello},
      {{"response_format", ojson::parse(R"({"type": "json_object", "schema": {"answer": "string"}})")}});
  add("v4_keep_thinking", {msg("user", "Q1"), reasoning_turn, msg("user", "Q2")},
      {{"thinking", true}, {"drop_thinking", false}});
  return out;
}

// ---- templates ----------------------------------------------------------------------------

struct TemplateCase {
  std::string name;  // gtest parameter name
  std::string path;  // file holding the template; tokenizer_config.json files hold it in chat_template
};

std::vector<TemplateCase> templates() {
  const std::string shared = std::string(FATHOM_SHARED_DIR) + "/testdata/";
  const std::string data = std::string(FATHOM_SOURCE_DIR) + "/tests/tokenizer/data/";
  return {
      {"R1DistillLlama", shared + "templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"},
      {"R1DistillQwen", shared + "templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"},
      {"V3_1", shared + "templates/deepseek-ai-DeepSeek-V3.1.jinja"},
      {"V3_2", shared + "templates/deepseek-ai-DeepSeek-V3.2.jinja"},
      {"V4", shared + "templates/deepseek-ai-DeepSeek-V4.jinja"},
      {"Qwen2_5", shared + "templates/Qwen-Qwen2.5-7B-Instruct.jinja"},
      {"V3TokenizerConfig", shared + "deepseek-v3/tokenizer_config.json"},
      {"DeepSeekLlmChat", data + "deepseek-llm-7b-chat.jinja"},
      {"DeepSeekCoderInstruct", data + "deepseek-coder-6.7b-instruct.jinja"},
  };
}

std::string load_template(const TemplateCase& t) {
  const std::string text = read_file(t.path);
  if (t.path.size() >= 5 && t.path.substr(t.path.size() - 5) == ".json") {
    return ojson::parse(text).at("chat_template").get<std::string>();
  }
  return text;
}

class ChatTemplateConformance : public ::testing::TestWithParam<TemplateCase> {};

TEST_P(ChatTemplateConformance, MatchesPythonJinja2) {
  const auto python = find_python();
  if (!python) GTEST_SKIP() << "python3 with jinja2 not available";
  const std::string source = load_template(GetParam());
  ASSERT_FALSE(source.empty()) << GetParam().path;
  const std::vector<Conversation> cases = conversations();
  ojson requests = ojson::array();
  for (const auto& c : cases) requests.push_back({{"template", source}, {"context", c.context}});
  const std::vector<Reference> expected = render_with_python(*python, requests);
  ASSERT_EQ(expected.size(), cases.size()) << "render_jinja.py failed";
  int rendered = 0, errors = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(GetParam().name + " / " + cases[i].name);
    const Expected<std::string> got = render_template(source, cases[i].context);
    if (!expected[i].ok) {
      EXPECT_FALSE(got.has_value()) << "python failed with " << expected[i].error << " but fathom rendered:\n"
                                    << got.value();
      if (!got.has_value()) ++errors;
      continue;
    }
    ASSERT_TRUE(got.has_value()) << got.status().to_string();
    EXPECT_EQ(got.value(), expected[i].output);
    if (got.value() == expected[i].output) ++rendered;
  }
  std::printf("[ conformance ] %s: %d renderings identical, %d errors matched, of %zu conversations\n",
              GetParam().name.c_str(), rendered, errors, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateConformance, ::testing::ValuesIn(templates()),
                         [](const auto& info) { return info.param.name; });

// The conversation as the server builds it from an OpenAI request (chat_messages_json: calls-only
// assistant turns with null content, arguments as the template wants them, tool_call_id),
// through every template, against python.
TEST_P(ChatTemplateConformance, ToolHistoryAsTheServerBuildsIt) {
  const auto python = find_python();
  if (!python) GTEST_SKIP() << "python3 with jinja2 not available";
  const std::string source = load_template(GetParam());
  const bool object_arguments = template_takes_object_arguments(source);
  const ChatTurn system{{"system", "You can use tools.", ""}, false, {}, ""};
  const ChatTurn user{{"user", "Weather in Paris, and 2+3.5?", ""}, false, {}, ""};
  const std::vector<ToolCall> two_calls = {{"call_1", "get_weather", "{\"city\": \"Lutetia\", \"unit\": \"celsius\"}"},
                                           {"call_2", "add", "{\"a\": 2, \"b\": 3.5}"}};
  const ChatTurn calls{{"assistant", "", ""}, true, two_calls, ""};
  const ChatTurn calls_with_text{{"assistant", "Let me check.", "The user wants two things."}, false, two_calls, ""};
  const ChatTurn one_call{{"assistant", "", ""}, true, {two_calls[0]}, ""};
  const ChatTurn result1{{"tool", "{\"temperature\": 18, \"sky\": \"cloudy\"}", ""}, false, {}, "call_1"};
  const ChatTurn result2{{"tool", "5.5", ""}, false, {}, "call_2"};
  const ChatTurn answer{{"assistant", "It is 18°C and cloudy; 2+3.5 = 5.5.", ""}, false, {}, ""};
  const ChatTurn follow_up{{"user", "And in Rome?", ""}, false, {}, ""};
  const std::vector<std::pair<std::string, std::vector<ChatTurn>>> histories = {
      {"calls_pending_results", {system, user, calls}},
      {"results_pending_answer", {system, user, calls, result1, result2}},
      {"full_round_trip", {system, user, calls, result1, result2, answer, follow_up}},
      {"calls_with_content_and_reasoning", {user, calls_with_text, result1, result2, answer, follow_up}},
      {"one_call_one_result", {user, one_call, result1}},
      {"two_rounds", {user, one_call, result1, answer, follow_up, one_call, result1}},
  };
  ojson requests = ojson::array();
  std::vector<ojson> contexts;
  for (const auto& [name, turns] : histories) {
    for (bool with_tools : {true, false}) {
      ojson context = {{"messages", chat_messages_json(turns, object_arguments)}, {"add_generation_prompt", true},
                       {"bos_token", kBos}, {"eos_token", kEos}};
      if (with_tools) context["tools"] = weather_tools();
      requests.push_back({{"template", source}, {"context", context}});
      contexts.push_back(std::move(context));
    }
  }
  const std::vector<Reference> expected = render_with_python(*python, requests);
  ASSERT_EQ(expected.size(), contexts.size()) << "render_jinja.py failed";
  int rendered = 0;
  for (size_t i = 0; i < contexts.size(); ++i) {
    SCOPED_TRACE(GetParam().name + " / " + histories[i / 2].first + (i % 2 == 0 ? " (tools)" : " (no tools)"));
    const Expected<std::string> got = render_template(source, contexts[i]);
    if (!expected[i].ok) {
      EXPECT_FALSE(got.has_value()) << "python failed with " << expected[i].error;
      continue;
    }
    ASSERT_TRUE(got.has_value()) << got.status().to_string();
    EXPECT_EQ(got.value(), expected[i].output);
    // The calls reach the prompt (R1-Distill-Llama renders calls only when content is null).
    if (GetParam().path.find("testdata") != std::string::npos && histories[i / 2].first != "calls_with_content_and_reasoning") {
      EXPECT_NE(got.value().find("Lutetia"), std::string::npos) << got.value();
    }
    rendered += got.value() == expected[i].output;
  }
  std::printf("[ conformance ] %s: %d tool histories identical of %zu\n", GetParam().name.c_str(), rendered, contexts.size());
}

// Non-chat-mode rendering (jinja2 defaults, no trim/lstrip) of a whitespace-heavy template.
TEST(ChatTemplateConformanceDefaults, WhitespaceWithoutChatMode) {
  const auto python = find_python();
  if (!python) GTEST_SKIP() << "python3 with jinja2 not available";
  const std::string source = read_file(std::string(FATHOM_SOURCE_DIR) + "/tests/tokenizer/data/deepseek-coder-6.7b-instruct.jinja");
  const ojson context = conversations()[3].context;
  const std::vector<Reference> expected =
      render_with_python(*python, ojson::array({{{"template", source}, {"context", context}, {"hf_chat_mode", false}}}));
  ASSERT_EQ(expected.size(), 1u);
  ASSERT_TRUE(expected[0].ok) << expected[0].error;
  const Expected<std::string> got = render_template(source, context, /*hf_chat_mode=*/false);
  ASSERT_TRUE(got.has_value()) << got.status().to_string();
  EXPECT_EQ(got.value(), expected[0].output);
}

// ---- apply_chat_template -------------------------------------------------------------------

TEST(ApplyChatTemplate, R1DistillPrompt) {
  const std::string source =
      read_file(std::string(FATHOM_SHARED_DIR) + "/testdata/templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja");
  const std::vector<ChatMessage> messages = {
      {"system", "Be brief.", ""},
      {"user", "2+2?", ""},
      {"assistant", "<think>\nadd\n</think>\n\n4", ""},
      {"user", "3+3?", ""},
  };
  const auto got = apply_chat_template(source, messages, true, kBos, kEos);
  ASSERT_TRUE(got.has_value()) << got.status().to_string();
  EXPECT_EQ(got.value(), std::string(kBos) + "Be brief.<｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜>" +
                             "<｜User｜>3+3?<｜Assistant｜><think>\n");
}

TEST(ApplyChatTemplate, PassesReasoningContent) {
  const std::string source =
      "{% for m in messages %}{{ m.role }}:{{ m.content }}"
      "{% if m.reasoning_content is defined %}[{{ m.reasoning_content }}]{% endif %};{% endfor %}"
      "{{ add_generation_prompt }}{{ bos_token }}{{ eos_token }}";
  const auto got = apply_chat_template(source, {{"user", "q", ""}, {"assistant", "a", "r"}}, false, "<s>", "</s>");
  ASSERT_TRUE(got.has_value()) << got.status().to_string();
  EXPECT_EQ(got.value(), "user:q;assistant:a[r];False<s></s>");
}

TEST(ApplyChatTemplate, RaiseExceptionBecomesError) {
  const auto got = apply_chat_template("{{ raise_exception('Conversation roles must alternate') }}", {}, false, "", "");
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("Conversation roles must alternate"), std::string::npos);
}

// ---- ReasoningSplitter ---------------------------------------------------------------------

ReasoningSplitter::Delta push_all(ReasoningSplitter& splitter, const std::vector<std::string>& pieces) {
  ReasoningSplitter::Delta total;
  for (const auto& piece : pieces) {
    const auto d = splitter.push(piece);
    total.reasoning += d.reasoning;
    total.content += d.content;
  }
  const auto d = splitter.flush();
  total.reasoning += d.reasoning;
  total.content += d.content;
  return total;
}

TEST(ReasoningSplitter, SplitsThinkBlock) {
  ReasoningSplitter splitter;
  const auto d = push_all(splitter, {"<think>plan</think>answer"});
  EXPECT_EQ(d.reasoning, "plan");
  EXPECT_EQ(d.content, "answer");
  EXPECT_FALSE(splitter.in_reasoning());
}

TEST(ReasoningSplitter, TagSplitAcrossPushes) {
  ReasoningSplitter splitter;
  const auto first = splitter.push("<th");
  EXPECT_EQ(first.content, "");  // held back: may be a tag
  const auto d = push_all(splitter, {"ink>step 1 ", "step 2</th", "ink>", "final <", "b>"});
  EXPECT_EQ(d.reasoning, "step 1 step 2");
  EXPECT_EQ(d.content, "final <b>");
}

TEST(ReasoningSplitter, EveryByteSeparately) {
  const std::string text = "<think>a<b</thin</think>c</think";
  ReasoningSplitter splitter;
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  const auto d = push_all(splitter, bytes);
  EXPECT_EQ(d.reasoning, "a<b</thin");
  EXPECT_EQ(d.content, "c</think");  // an unfinished tag at the end is flushed as text
}

TEST(ReasoningSplitter, StartsInReasoning) {
  ReasoningSplitter splitter(/*starts_in_reasoning=*/true);
  EXPECT_TRUE(splitter.in_reasoning());
  const auto a = splitter.push("thinking...</");
  EXPECT_EQ(a.reasoning, "thinking...");
  const auto b = splitter.push("think>\n\nThe answer");
  EXPECT_EQ(b.reasoning, "");
  EXPECT_EQ(b.content, "\n\nThe answer");
  EXPECT_FALSE(splitter.in_reasoning());
}

TEST(ReasoningSplitter, NoReasoningPassesThrough) {
  ReasoningSplitter splitter;
  const auto d = push_all(splitter, {"plain ", "answer <", "not a tag"});
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "plain answer <not a tag");
}

}  // namespace
}  // namespace fathom
