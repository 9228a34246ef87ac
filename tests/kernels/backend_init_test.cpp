#include "backend/backend_init.h"

#include <gtest/gtest.h>

namespace fathom {
namespace {

using std::chrono::milliseconds;

struct Recorder {
  std::vector<milliseconds> sleeps;  // requested delays, in order
  std::vector<std::string> lines;    // log lines, in order
  RetryHooks hooks() {
    return {[this](milliseconds d) { sleeps.push_back(d); }, [this](const std::string& l) { lines.push_back(l); }};
  }
};

TEST(BackendInit, RetriesWithGrowingDelayThenSucceeds) {
  Recorder rec;
  int calls = 0;
  auto flaky = [&] { return ++calls < 3 ? error(ErrorCode::kUnavailable, "device busy") : Status::ok(); };
  EXPECT_TRUE(try_init_with_retries("cuda", flaky, 3, milliseconds(100), rec.hooks()).is_ok());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(rec.sleeps, (std::vector<milliseconds>{milliseconds(100), milliseconds(200)}));
  ASSERT_EQ(rec.lines.size(), 2u);
  EXPECT_NE(rec.lines[0].find("device busy"), std::string::npos);
}

TEST(BackendInit, MissingRuntimeIsNotRetried) {
  Recorder rec;
  int calls = 0;
  auto absent = [&] { ++calls; return error(ErrorCode::kNotFound, "libcuda.so.1 could not be loaded"); };
  const Status st = try_init_with_retries("cuda", absent, 3, milliseconds(100), rec.hooks());
  EXPECT_EQ(st.code(), ErrorCode::kNotFound);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(rec.sleeps.empty());
}

TEST(BackendInit, GivesUpAfterAttemptsAndFallsBack) {
  Recorder rec;
  int cuda_calls = 0, opencl_calls = 0, cpu_calls = 0;
  std::vector<BackendCandidate> candidates = {
      {"cuda", [&] { ++cuda_calls; return error(ErrorCode::kUnavailable, "cuInit: no CUDA-capable device"); }},
      {"opencl", [&] { ++opencl_calls; return error(ErrorCode::kUnavailable, "no OpenCL platforms"); }},
      {"cpu", [&] { ++cpu_calls; return Status::ok(); }},
  };
  Expected<size_t> chosen = init_with_fallback(candidates, 3, milliseconds(50), rec.hooks());
  ASSERT_TRUE(chosen.has_value());
  EXPECT_EQ(*chosen, 2u);
  EXPECT_EQ(cuda_calls, 3);
  EXPECT_EQ(opencl_calls, 3);
  EXPECT_EQ(cpu_calls, 1);
  EXPECT_EQ(rec.sleeps.size(), 4u);  // two retries each for cuda and opencl
  bool logged_fallback = false;
  for (const std::string& l : rec.lines)
    if (l.find("cuda unavailable") != std::string::npos && l.find("falling back to opencl") != std::string::npos &&
        l.find("no CUDA-capable device") != std::string::npos)
      logged_fallback = true;
  EXPECT_TRUE(logged_fallback);
}

TEST(BackendInit, AllFailingReportsEveryReason) {
  Recorder rec;
  std::vector<BackendCandidate> candidates = {
      {"cuda", [] { return error(ErrorCode::kUnavailable, "reason-a"); }},
      {"cpu", [] { return error(ErrorCode::kUnavailable, "reason-b"); }},
  };
  Expected<size_t> chosen = init_with_fallback(candidates, 1, milliseconds(10), rec.hooks());
  ASSERT_FALSE(chosen.has_value());
  EXPECT_EQ(chosen.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(chosen.status().message().find("reason-a"), std::string::npos);
  EXPECT_NE(chosen.status().message().find("reason-b"), std::string::npos);
  EXPECT_TRUE(rec.sleeps.empty());
}

}  // namespace
}  // namespace fathom
