// Server-sent events arrive in arbitrary pieces; the parser must give the same events however
// the bytes are split, and the chunk interpreter must tell content, usage, errors and junk apart.
#include <gtest/gtest.h>

#include <algorithm>

#include "loadgen/progress.h"
#include "loadgen/sse.h"
#include "loadgen/workload.h"

namespace fathom::loadgen {
namespace {

TEST(SseParser, SameEventsForEverySplit) {
  const std::string stream =
      ": keep-alive\r\n\r\n"
      "data: {\"a\":1}\n\n"
      "event: message\r\ndata: line one\r\ndata: line two\r\n\r\n"
      "data:[DONE]\r\r";
  const std::vector<std::string> expected = {"{\"a\":1}", "line one\nline two", "[DONE]"};
  for (size_t split = 0; split <= stream.size(); ++split) {
    SseParser p;
    std::vector<std::string> events;
    p.feed(std::string_view(stream).substr(0, split), events);
    p.feed(std::string_view(stream).substr(split), events);
    EXPECT_EQ(events, expected) << "split at " << split;
    EXPECT_EQ(p.finish(), "");
  }
  // Byte by byte.
  SseParser p;
  std::vector<std::string> events;
  for (char c : stream) p.feed(std::string_view(&c, 1), events);
  EXPECT_EQ(events, expected);
}

TEST(SseParser, UnterminatedEventIsReturnedByFinish) {
  SseParser p;
  std::vector<std::string> events;
  p.feed("data: [DONE]", events);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(p.finish(), "[DONE]");
}

TEST(InterpretChunk, Kinds) {
  using T = StreamChunk::Type;
  EXPECT_EQ(interpret_chunk("[DONE]", false).type, T::kDone);
  const StreamChunk text = interpret_chunk(R"({"choices":[{"index":0,"text":"hi","finish_reason":null}]})", false);
  EXPECT_EQ(text.type, T::kContent);
  EXPECT_EQ(text.text, "hi");
  EXPECT_FALSE(text.finished);
  const StreamChunk delta = interpret_chunk(R"({"choices":[{"delta":{"reasoning_content":"th","content":"ok"}}]})", true);
  EXPECT_EQ(delta.type, T::kContent);
  EXPECT_EQ(delta.text, "thok");
  const StreamChunk role = interpret_chunk(R"({"choices":[{"delta":{"role":"assistant"}}]})", true);
  EXPECT_EQ(role.type, T::kEmpty);
  const StreamChunk fin = interpret_chunk(R"({"choices":[{"delta":{},"finish_reason":"length"}]})", true);
  EXPECT_EQ(fin.type, T::kEmpty);
  EXPECT_TRUE(fin.finished);
  const StreamChunk usage = interpret_chunk(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}})", false);
  EXPECT_EQ(usage.type, T::kEmpty);
  EXPECT_EQ(usage.prompt_tokens, 5);
  EXPECT_EQ(usage.completion_tokens, 9);
  EXPECT_EQ(interpret_chunk(R"({"usage":{"completion_tokens":3}})", false).completion_tokens, 3);
  const StreamChunk err = interpret_chunk(R"({"error":{"message":"overloaded"}})", false);
  EXPECT_EQ(err.type, T::kError);
  EXPECT_EQ(err.message, "overloaded");
  EXPECT_EQ(interpret_chunk("{\"choices\": [{\"text\": \"unterminated", false).type, T::kMalformed);
  EXPECT_EQ(interpret_chunk(R"({"object":"text_completion"})", false).type, T::kMalformed);
  EXPECT_EQ(interpret_chunk("[1,2]", false).type, T::kMalformed);
}

TEST(Workload, SyntheticIsSeededPerRequest) {
  const Workload w = Workload::synthetic(*plan::LengthDistribution::parse("uniform:4:12"),
                                         *plan::LengthDistribution::parse("16"), 9);
  const WorkItem a = w.item(3), b = w.item(3), c = w.item(4);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_NE(a.prompt, c.prompt);
  EXPECT_GE(a.prompt_tokens, 4);
  EXPECT_LE(a.prompt_tokens, 12);
  EXPECT_EQ(a.max_tokens, 16);
  // One word per wanted token.
  EXPECT_EQ(static_cast<int64_t>(std::count(a.prompt.begin(), a.prompt.end(), ' ')) + 1, a.prompt_tokens);
}

TEST(Workload, DatasetLines) {
  const std::string text =
      "{\"prompt\": \"Once upon a time\", \"max_tokens\": 7}\n"
      "\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n";
  auto w = Workload::from_jsonl_text(text, "mem.jsonl", *plan::LengthDistribution::parse("5"), 1);
  ASSERT_TRUE(w) << w.status().to_string();
  EXPECT_EQ(w->item(0).prompt, "Once upon a time");
  EXPECT_EQ(w->item(0).max_tokens, 7);
  EXPECT_EQ(w->item(1).max_tokens, 5);  // sampled from --output-len
  EXPECT_EQ(w->item(1).messages[0]["content"], "hi");
  EXPECT_EQ(w->item(2).prompt, "Once upon a time");  // cycles
  EXPECT_EQ(messages_to_text(w->item(1).messages), "user: hi\n");

  auto bad = Workload::from_jsonl_text("{\"prompt\": 1}\n", "bad.jsonl", *plan::LengthDistribution::parse("5"), 1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("bad.jsonl line 1"), std::string::npos);
  EXPECT_FALSE(Workload::from_jsonl_text("not json\n", "x", *plan::LengthDistribution::parse("5"), 1));
  EXPECT_FALSE(Workload::from_jsonl_text("\n", "x", *plan::LengthDistribution::parse("5"), 1));
}

TEST(Progress, Lines) {
  ProgressSnapshot s;
  s.done = 3;
  s.total = 12;
  s.errors = 1;
  s.in_flight = 2;
  s.elapsed_s = 1.5;
  EXPECT_EQ(ProgressPrinter::format(s, "offline", false), "offline 3/12 done, 1 errors, 2 in flight, 1.5 s");
  EXPECT_EQ(ProgressPrinter::format(s, "offline", true).substr(0, 36), "offline [######..................] 3");
}

}  // namespace
}  // namespace fathom::loadgen
