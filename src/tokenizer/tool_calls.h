// Tool calls in the chat templates' own formats: the conversation (assistant turns that call
// tools, tool results) in the shape the templates read, which text a template's model writes
// for a call, and an incremental parser that turns that text back into calls.
//
// Formats, as the templates render an assistant's calls:
//   kDeepSeekR1  (R1, R1-Distill, V3):  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
//                                       ```json\nARGS\n```<｜tool▁call▁end｜>[\n<｜tool▁call▁begin｜>...]<｜tool▁calls▁end｜>
//   kDeepSeekV31 (V3.1):                <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   kQwen        (Qwen2.5):             <tool_call>\n{"name": NAME, "arguments": ARGS}\n</tool_call>[\n<tool_call>...]
//   kDsmlV32     (V3.2):                \n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="NAME">\n<｜DSML｜parameter name="KEY"
//                                       string="true|false">VALUE</｜DSML｜parameter>\n...</｜DSML｜invoke>\n...</｜DSML｜function_calls>
//   kDsmlV4      (V4):                  the same with <｜DSML｜tool_calls> blocks
// (DSML arguments are read back as a JSON object: string="true" values as strings, the others as JSON.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace fathom {

struct ToolCall {
  std::string id;         // "call_..." (the client's id in a history; ours in a response)
  std::string name;       // function name
  std::string arguments;  // the arguments as JSON text (an object)
};

// One message of a conversation that may involve tools.
struct ChatTurn {
  ChatMessage message;              // role, content, reasoning_content
  bool content_null = false;        // content was null or absent (an assistant turn of calls only)
  std::vector<ToolCall> tool_calls; // assistant: the calls it made
  std::string tool_call_id;         // tool: the call this result answers
};

enum class ToolCallFormat { kNone, kDeepSeekR1, kDeepSeekV31, kQwen, kDsmlV32, kDsmlV4 };
const char* tool_call_format_name(ToolCallFormat format);  // "deepseek-r1", ...

// The format a chat template renders an assistant's tool calls in (kNone: it renders none).
ToolCallFormat detect_tool_call_format(const std::string& template_source);

// Whether a template wants `function.arguments` as an object (it applies `tojson` to it, or
// parses strings itself with from_json) rather than the OpenAI JSON string it concatenates.
bool template_takes_object_arguments(const std::string& template_source);

// The `messages` variable in the shape transformers passes it (what the templates read):
// {role, content (null for a calls-only assistant turn), reasoning_content?, tool_calls?:
// [{id, type: "function", function: {name, arguments}}], tool_call_id?}. Arguments are the
// JSON string, or the parsed object when `object_arguments`.
nlohmann::ordered_json chat_messages_json(const std::vector<ChatTurn>& turns, bool object_arguments);

// The text that opens an assistant's call in `format`, to append to a rendered prompt (that
// ends with the generation prompt) so that the model's continuation is a call: with a name,
// up to where the arguments begin; without, up to where the name begins. A prompt left inside
// <think> is closed first. Empty for kNone.
std::string forced_call_prefix(ToolCallFormat format, const std::string& rendered_prompt, const std::string& name);

// Splits model output into content and tool calls, incrementally and independently of how the
// text is chunked: text that may begin a call marker is held back until decided; a call is
// returned whole once its end marker arrives and it parses (a name, arguments that are a JSON
// object); a call that does not parse is returned as content, as it was written.
class ToolCallParser {
 public:
  struct Call {
    std::string name;       // function name
    std::string arguments;  // JSON text of an object
  };
  struct Output {
    std::string content;      // text that is not a call
    std::vector<Call> calls;  // calls completed by this push, in order
  };

  // Calls of functions not in `tool_names` are not calls: they come back as content, as written
  // (an empty list accepts any name). After `max_calls` calls, later ones are dropped
  // (parallel_tool_calls false: vLLM returns the first call only).
  ToolCallParser(ToolCallFormat format, size_t max_call_bytes, std::vector<std::string> tool_names = {},
                 size_t max_calls = SIZE_MAX);
  // tool_choice required or named: the prompt ended with forced_call_prefix(format, ..., name),
  // so the output begins inside a call. That first call cannot fall back to content: if its
  // text does not parse, it is read leniently (the name given, or the text before the
  // separator; the arguments as written, valid JSON or not) — the grammar engine will make it parse.
  void begin_forced(const std::string& prefix, const std::string& name);
  Output push(std::string_view text);
  Output finish();  // end of generation: releases what is held

 private:
  enum class State { kText, kBlock, kCall, kAfterCalls };
  void step(Output& out);  // consumes pending_ as far as it can be decided
  void emit(Output& out, Call call);  // returns the call unless max_calls_ were returned
  std::optional<Call> parse_body(const std::string& body, bool lenient) const;

  ToolCallFormat format_;
  size_t max_call_bytes_;        // a call longer than this is not a call (released as content)
  std::vector<std::string> tool_names_;  // the functions offered (empty: any name)
  size_t max_calls_;             // calls returned at most; later ones are dropped
  size_t n_calls_ = 0;           // calls returned so far
  std::string block_begin_;      // opens a group of calls ("" when calls are not grouped)
  std::string block_end_;        // closes it
  std::string call_begin_;       // opens one call
  std::string call_end_;         // closes it
  State state_ = State::kText;
  std::string pending_;          // received, not yet decided
  std::string unresolved_;       // markers consumed since the last call was returned (content if it fails)
  int calls_in_block_ = 0;       // calls returned since the block opened
  bool forced_ = false;          // the current call was opened by the prompt
  std::string forced_name_;      // its name, when named
};

// What the model writes after forced_call_prefix(format, ..., name) to complete one call of
// `name`: the name and separator when the prefix left the name out (`name_in_prefix` false),
// then the arguments, then the markers that close the call and its group of calls. The
// grammar engine constrains the arguments to the function's schema between the two.
struct ForcedCallFrame {
  std::string before_arguments;  // text between the prefix and the arguments
  std::string after_arguments;   // text from the arguments' end to the end of the calls
  bool dsml_arguments = false;   // the arguments are DSML parameters, not a JSON object
};
ForcedCallFrame forced_call_frame(ToolCallFormat format, const std::string& name, bool name_in_prefix);

}  // namespace fathom
