// Reading an OpenAI streaming response: an incremental text/event-stream parser (bytes arrive
// in arbitrary pieces, an event can straddle reads) and the interpretation of each event's data
// as a completions or chat-completions chunk.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fathom::loadgen {

// Per the HTML server-sent events spec, reduced to what OpenAI streams use: "data:" lines
// accumulate, a blank line ends the event; comments (":...") and other fields are ignored;
// lines end with \n, \r\n or \r.
class SseParser {
 public:
  // Consumes bytes; appends the data of each event they complete to `events`.
  void feed(std::string_view bytes, std::vector<std::string>& events);
  // The data of an event the stream ended without a blank line after, if any; "" otherwise.
  std::string finish();

 private:
  void line(std::string_view text, std::vector<std::string>& events);
  std::string partial_line_;   // bytes after the last line ending
  std::string data_;           // data lines of the event being read, joined by '\n'
  bool has_data_ = false;      // a data line has been seen since the last event ended
  bool pending_cr_ = false;    // the last byte was '\r': a following '\n' belongs to it
};

struct StreamChunk {
  enum class Type {
    kContent,    // carries generated text (content, reasoning_content or text)
    kEmpty,      // valid chunk without text: role-only delta, finish_reason, usage
    kDone,       // the "[DONE]" sentinel
    kError,      // {"error": ...}
    kMalformed,  // not JSON, or JSON without choices/usage/error
  };
  Type type = Type::kEmpty;
  std::string text;               // generated text of a content chunk
  int64_t prompt_tokens = -1;     // usage.prompt_tokens, -1 when absent
  int64_t completion_tokens = -1; // usage.completion_tokens, -1 when absent
  std::string message;            // why malformed, or the error's message
  bool finished = false;          // a choice carried a non-null finish_reason
};

// `chat`: chunks of /v1/chat/completions (choices[].delta) rather than /v1/completions
// (choices[].text). Both shapes are accepted either way, since servers vary.
StreamChunk interpret_chunk(std::string_view data, bool chat);

}  // namespace fathom::loadgen
