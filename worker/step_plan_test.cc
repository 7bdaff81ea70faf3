#include "worker/step_plan.h"

#include <string>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

constexpr StepPlanLimits kLimits{/*num_blocks=*/8, /*block_size=*/4, /*vocab_size=*/100};

// Two sequences: a prefill chunk of 3 tokens in blocks {2, 5} after 4 cached tokens, and one
// decode token in block 7.
StepPlan TwoSequences() {
  StepPlan p;
  p.token_ids = {11, 12, 13, 99};
  p.positions = {4, 5, 6, 2};
  p.slot_mapping = {20, 21, 22, 30};
  p.qo_indptr = {0, 3, 4};
  p.kv_indptr = {0, 2, 3};
  p.kv_indices = {2, 5, 7};
  p.kv_lens = {7, 3};
  p.logits_rows = {2, 3};
  return p;
}

TEST(StepPlanTest, RoundTrips) {
  const StepPlan p = TwoSequences();
  auto got = ParseStepPlan(SerializeStepPlan(p), kLimits);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->command, StepPlan::Command::kRun);
  EXPECT_EQ(got->token_ids, p.token_ids);
  EXPECT_EQ(got->positions, p.positions);
  EXPECT_EQ(got->slot_mapping, p.slot_mapping);
  EXPECT_EQ(got->qo_indptr, p.qo_indptr);
  EXPECT_EQ(got->kv_indptr, p.kv_indptr);
  EXPECT_EQ(got->kv_indices, p.kv_indices);
  EXPECT_EQ(got->kv_lens, p.kv_lens);
  EXPECT_EQ(got->logits_rows, p.logits_rows);
  const ForwardBatch b = got->AsForwardBatch();
  EXPECT_EQ(b.num_tokens(), 4);
  EXPECT_EQ(b.attention.kv_indices.size(), 3u);
  EXPECT_EQ(b.logits_rows[1], 3);
}

TEST(StepPlanTest, CommandsWithoutBatch) {
  for (StepPlan::Command c : {StepPlan::Command::kStop, StepPlan::Command::kPing}) {
    StepPlan p;
    p.command = c;
    auto got = ParseStepPlan(SerializeStepPlan(p), kLimits);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->command, c);
  }
}

TEST(StepPlanTest, KvWorkRoundTripsWithAndWithoutABatch) {
  StepPlan p = TwoSequences();
  p.kv_work = std::string("\x01\x02\x00kv", 5);
  auto got = ParseStepPlan(SerializeStepPlan(p), kLimits);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kv_work, p.kv_work);
  EXPECT_EQ(got->token_ids, p.token_ids);

  // KV work alone: a RUN plan without tokens or sequences.
  StepPlan only;
  only.qo_indptr = {0};
  only.kv_indptr = {0};
  only.kv_work = "work";
  got = ParseStepPlan(SerializeStepPlan(only), kLimits);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kv_work, "work");
  EXPECT_TRUE(got->token_ids.empty());

  // Without tokens the batch must be empty too, and a plan with neither is refused.
  only.kv_lens = {3};
  EXPECT_EQ(ParseStepPlan(SerializeStepPlan(only), kLimits).status().code(),
            absl::StatusCode::kInvalidArgument);
  StepPlan nothing;
  EXPECT_EQ(ParseStepPlan(SerializeStepPlan(nothing), kLimits).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StepPlanTest, RejectsEveryTruncation) {
  const std::string bytes = SerializeStepPlan(TwoSequences());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(ParseStepPlan(bytes.substr(0, n), kLimits).status().code(),
              absl::StatusCode::kInvalidArgument)
        << n;
  }
  EXPECT_FALSE(ParseStepPlan(bytes + "x", kLimits).ok());
}

TEST(StepPlanTest, RejectsBadHeader) {
  std::string bytes = SerializeStepPlan(TwoSequences());
  std::string bad_magic = bytes;
  bad_magic[0] ^= 1;
  EXPECT_FALSE(ParseStepPlan(bad_magic, kLimits).ok());
  std::string bad_command = bytes;
  bad_command[4] = 9;
  EXPECT_FALSE(ParseStepPlan(bad_command, kLimits).ok());
}

TEST(StepPlanTest, RejectsInconsistentOrOutOfRangeBatches) {
  struct Case {
    const char* what;
    void (*mutate)(StepPlan&);
  };
  const Case cases[] = {
      {"block outside the cache", [](StepPlan& p) { p.kv_indices[1] = 8; }},
      {"negative block", [](StepPlan& p) { p.kv_indices[0] = -1; }},
      {"slot outside the cache", [](StepPlan& p) { p.slot_mapping[0] = 32; }},
      {"token outside the vocabulary", [](StepPlan& p) { p.token_ids[0] = 100; }},
      {"positions shorter", [](StepPlan& p) { p.positions.pop_back(); }},
      {"qo_indptr not ending at num_tokens", [](StepPlan& p) { p.qo_indptr[2] = 3; }},
      {"qo_indptr decreasing",
       [](StepPlan& p) {
         p.qo_indptr = {0, 5, 4};
       }},
      {"kv_indptr wrong length",
       [](StepPlan& p) {
         p.kv_indptr = {0, 3};
       }},
      {"kv_len beyond its blocks", [](StepPlan& p) { p.kv_lens[1] = 5; }},
      {"kv_len below its queries", [](StepPlan& p) { p.kv_lens[0] = 2; }},
      {"logits row outside the batch", [](StepPlan& p) { p.logits_rows[1] = 4; }},
      {"no tokens", [](StepPlan& p) { p = StepPlan(); }},
  };
  for (const Case& c : cases) {
    StepPlan p = TwoSequences();
    c.mutate(p);
    EXPECT_EQ(ValidateStepPlan(p, kLimits).code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_FALSE(ParseStepPlan(SerializeStepPlan(p), kLimits).ok()) << c.what;
  }
  EXPECT_TRUE(ValidateStepPlan(TwoSequences(), kLimits).ok());
}

}  // namespace
}  // namespace shardserve
