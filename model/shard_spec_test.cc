#include "model/shard_spec.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

ModelConfig SmolLm2() {
  ModelConfig c;
  c.vocab_size = 49152;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_layers = 30;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  return c;
}

ModelConfig SmallMoe() {
  ModelConfig c;
  c.arch = Architecture::kQwen2Moe;
  c.vocab_size = 101;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 3;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 4;
  c.num_experts = 5;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 30;
  c.shared_expert_intermediate_size = 45;
  return c;
}

IndexRange R(int64_t b, int64_t e) { return IndexRange{b, e}; }

TEST(EvenSplitTest, LargerPartsFirstAndCoverEverything) {
  EXPECT_EQ(EvenSplit(3, 2, 0), R(0, 2));
  EXPECT_EQ(EvenSplit(3, 2, 1), R(2, 3));
  EXPECT_EQ(EvenSplit(10, 4, 0), R(0, 3));
  EXPECT_EQ(EvenSplit(10, 4, 1), R(3, 6));
  EXPECT_EQ(EvenSplit(10, 4, 2), R(6, 8));
  EXPECT_EQ(EvenSplit(10, 4, 3), R(8, 10));
  EXPECT_EQ(EvenSplit(0, 3, 2), R(0, 0));
  for (int64_t n = 0; n < 40; ++n) {
    for (int parts = 1; parts <= 7; ++parts) {
      int64_t next = 0;
      for (int i = 0; i < parts; ++i) {
        const IndexRange r = EvenSplit(n, parts, i);
        EXPECT_EQ(r.begin, next);
        EXPECT_GE(r.size(), n / parts);
        EXPECT_LE(r.size(), n / parts + 1);
        next = r.end;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ShardSpecTest, SingleRankHoldsEverything) {
  auto s = MakeShardSpec(SmolLm2(), ParallelLayout{}, 0, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kv_heads, R(0, 3));
  EXPECT_EQ(s->q_heads, R(0, 9));
  EXPECT_EQ(s->mlp_columns, R(0, 1536));
  EXPECT_EQ(s->layers, R(0, 30));
  EXPECT_EQ(s->vocab, R(0, 49152));
  EXPECT_EQ(s->experts, R(0, 0));
  EXPECT_TRUE(s->first_stage());
  EXPECT_TRUE(s->last_stage());
  EXPECT_EQ(s->group_rank(), 0);
}

TEST(ShardSpecTest, SmolLm2UnevenTp2) {
  ParallelLayout layout{2, 1, 1};
  auto s0 = MakeShardSpec(SmolLm2(), layout, 0, 0);
  auto s1 = MakeShardSpec(SmolLm2(), layout, 1, 0);
  ASSERT_TRUE(s0.ok() && s1.ok());
  EXPECT_EQ(s0->kv_heads, R(0, 2));
  EXPECT_EQ(s0->q_heads, R(0, 6));
  EXPECT_EQ(s1->kv_heads, R(2, 3));
  EXPECT_EQ(s1->q_heads, R(6, 9));
  EXPECT_EQ(s0->mlp_columns, R(0, 768));
  EXPECT_EQ(s1->mlp_columns, R(768, 1536));
  EXPECT_EQ(s1->vocab, R(24576, 49152));
  EXPECT_EQ(s1->layers, R(0, 30));
}

TEST(ShardSpecTest, SmolLm2Tp3) {
  for (int r = 0; r < 3; ++r) {
    auto s = MakeShardSpec(SmolLm2(), ParallelLayout{3, 1, 1}, r, 0);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->kv_heads, R(r, r + 1));
    EXPECT_EQ(s->q_heads, R(3 * r, 3 * r + 3));
    EXPECT_EQ(s->mlp_columns, R(512 * r, 512 * (r + 1)));
  }
}

TEST(ShardSpecTest, PipelineStagesSplitLayersAndGroupRankIsStageMajor) {
  ParallelLayout layout{2, 4, 1};
  auto s = MakeShardSpec(SmolLm2(), layout, 1, 2);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->layers, R(16, 23));  // 30 over 4: 8, 8, 7, 7
  EXPECT_EQ(s->group_rank(), 5);
  EXPECT_FALSE(s->first_stage());
  EXPECT_FALSE(s->last_stage());
  auto last = MakeShardSpec(SmolLm2(), layout, 0, 3);
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(last->last_stage());
  EXPECT_EQ(last->layers, R(23, 30));
}

TEST(ShardSpecTest, ExpertParallelHoldsWholeExperts) {
  ParallelLayout layout{2, 1, 2};
  auto s0 = MakeShardSpec(SmallMoe(), layout, 0, 0);
  auto s1 = MakeShardSpec(SmallMoe(), layout, 1, 0);
  ASSERT_TRUE(s0.ok() && s1.ok());
  EXPECT_EQ(s0->experts, R(0, 3));
  EXPECT_EQ(s1->experts, R(3, 5));
  EXPECT_EQ(s0->expert_columns, R(0, 30));
  EXPECT_EQ(s1->expert_columns, R(0, 30));
  EXPECT_EQ(s0->shared_expert_columns, R(0, 23));
  EXPECT_EQ(s1->shared_expert_columns, R(23, 45));
}

TEST(ShardSpecTest, TensorParallelExpertsSliceColumns) {
  ParallelLayout layout{2, 1, 1};
  auto s1 = MakeShardSpec(SmallMoe(), layout, 1, 0);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(s1->experts, R(0, 5));
  EXPECT_EQ(s1->expert_columns, R(15, 30));
  EXPECT_EQ(s1->vocab, R(51, 101));
}

TEST(ShardSpecTest, RefusesLayoutsItCannotShard) {
  auto refused = [](const ModelConfig &c, ParallelLayout l) {
    absl::Status s = ValidateLayout(c, l);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EXPECT_THAT(refused(SmolLm2(), {4, 1, 1}), HasSubstr("tp_size 4 exceeds num_kv_heads 3"));
  EXPECT_THAT(refused(SmallMoe(), {4, 1, 2}),
              HasSubstr("ep_size 2 must be 1 or equal to tp_size 4"));
  ModelConfig few_experts = SmallMoe();
  few_experts.num_experts = 2;
  few_experts.num_experts_per_tok = 1;
  EXPECT_THAT(refused(few_experts, {4, 1, 4}), HasSubstr("ep_size 4 exceeds num_experts 2"));
  EXPECT_THAT(refused(SmolLm2(), {2, 1, 2}), HasSubstr("num_experts 0"));
  EXPECT_THAT(refused(SmolLm2(), {1, 31, 1}), HasSubstr("pp_size 31 exceeds num_layers 30"));
  EXPECT_THAT(refused(SmolLm2(), {0, 1, 1}), HasSubstr("positive"));
  EXPECT_TRUE(ValidateLayout(SmolLm2(), {3, 30, 1}).ok());
  EXPECT_TRUE(ValidateLayout(SmallMoe(), {4, 1, 4}).ok());
}

TEST(ShardSpecTest, RefusesRanksOutsideTheLayout) {
  EXPECT_FALSE(MakeShardSpec(SmolLm2(), {2, 1, 1}, 2, 0).ok());
  EXPECT_FALSE(MakeShardSpec(SmolLm2(), {2, 2, 1}, 0, 2).ok());
  EXPECT_FALSE(MakeShardSpec(SmolLm2(), {2, 2, 1}, -1, 0).ok());
}

TEST(ShardSpecTest, DebugStringNamesTheRanges) {
  auto s = MakeShardSpec(SmolLm2(), {2, 1, 1}, 1, 0);
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(s->DebugString(), HasSubstr("kv_heads [2,3)"));
}

}  // namespace
}  // namespace shardserve
