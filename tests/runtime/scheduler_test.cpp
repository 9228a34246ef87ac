// The scheduler in tokens: budgets, decode-first order, admission, preemption order.
#include <gtest/gtest.h>

#include "runtime/scheduler.h"

namespace fathom {
namespace {

KvCacheShape shape() {
  KvCacheShape s;
  s.n_layer = 1;
  s.k_width = 1;
  s.v_width = 1;
  s.block_size = 4;
  s.n_ctx_max = 1024;
  return s;
}

SchedSequence make_seq(int32_t id, int64_t n_prompt) {
  SchedSequence s;
  s.seq_id = id;
  s.tokens.assign(static_cast<size_t>(n_prompt), 1);
  return s;
}

// Applies a plan as the engine does: reserve, advance, append a sampled token when a chunk completes.
void apply_plan(KvCache& kv, const std::vector<ScheduledChunk>& chunks) {
  for (const ScheduledChunk& c : chunks) {
    ASSERT_TRUE(kv.reserve(c.seq->seq_id, c.seq->n_computed + c.n_tokens).is_ok());
    c.seq->n_computed += c.n_tokens;
    if (c.seq->pending() == 0) c.seq->tokens.push_back(2);
  }
}

TEST(Scheduler, LongPromptIsChunkedUnderTheBudget) {
  KvCache kv(shape(), 64);
  SchedulerOptions o;
  o.step_token_budget = 10;
  Scheduler s(o);
  SchedSequence a = make_seq(1, 25);
  s.enqueue(&a);
  std::vector<SchedSequence*> pre;
  auto plan = s.schedule(kv, &pre);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].n_tokens, 10);
  apply_plan(kv, plan);
  plan = s.schedule(kv, &pre);
  EXPECT_EQ(plan[0].n_tokens, 10);
  apply_plan(kv, plan);
  plan = s.schedule(kv, &pre);
  EXPECT_EQ(plan[0].n_tokens, 5);
  apply_plan(kv, plan);
  EXPECT_EQ(a.pending(), 1);  // sampled token waits for the next step
  plan = s.schedule(kv, &pre);
  EXPECT_EQ(plan[0].n_tokens, 1);
  EXPECT_TRUE(pre.empty());
}

TEST(Scheduler, DecodesGoFirstAndPrefillsFillTheRest) {
  KvCache kv(shape(), 64);
  SchedulerOptions o;
  o.step_token_budget = 8;
  Scheduler s(o);
  SchedSequence a = make_seq(1, 3), b = make_seq(2, 20);
  s.enqueue(&a);
  std::vector<SchedSequence*> pre;
  apply_plan(kv, s.schedule(kv, &pre));  // a prefilled
  s.enqueue(&b);
  auto plan = s.schedule(kv, &pre);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].seq, &a);  // the decode
  EXPECT_EQ(plan[0].n_tokens, 1);
  EXPECT_EQ(plan[1].seq, &b);  // a chunk of the new prompt with the remaining budget
  EXPECT_EQ(plan[1].n_tokens, 7);
}

TEST(Scheduler, PreemptsTheNewestSequenceWhenBlocksRunOut) {
  KvCache kv(shape(), 4);  // 16 tokens in all
  SchedulerOptions o;
  o.step_token_budget = 64;
  Scheduler s(o);
  SchedSequence a = make_seq(1, 8), b = make_seq(2, 8);
  s.enqueue(&a);
  s.enqueue(&b);
  std::vector<SchedSequence*> pre;
  auto plan = s.schedule(kv, &pre);
  ASSERT_EQ(plan.size(), 2u);
  apply_plan(kv, plan);  // both hold 2 blocks, each has 1 pending token at position 8 -> a third block each
  EXPECT_EQ(kv.pool().n_free(), 0);
  plan = s.schedule(kv, &pre);
  ASSERT_EQ(pre.size(), 1u);
  EXPECT_EQ(pre[0], &b);  // the most recently admitted
  EXPECT_EQ(b.n_computed, 0);
  EXPECT_FALSE(kv.has_sequence(2));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].seq, &a);
  EXPECT_EQ(s.n_waiting(), 1u);
}

TEST(Scheduler, WaitingSequenceWaitsForBlocks) {
  KvCache kv(shape(), 3);
  SchedulerOptions o;
  o.step_token_budget = 64;
  Scheduler s(o);
  SchedSequence a = make_seq(1, 8), b = make_seq(2, 8);
  s.enqueue(&a);
  std::vector<SchedSequence*> pre;
  apply_plan(kv, s.schedule(kv, &pre));
  s.enqueue(&b);
  auto plan = s.schedule(kv, &pre);
  ASSERT_EQ(plan.size(), 1u);  // only a's decode; b needs 2 blocks and only 0 are left after a's
  EXPECT_EQ(plan[0].seq, &a);
  s.remove(&a);
  kv.free_sequence(1);
  plan = s.schedule(kv, &pre);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].seq, &b);
}

}  // namespace
}  // namespace fathom
