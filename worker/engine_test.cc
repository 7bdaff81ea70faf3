#include "worker/engine.h"

#include <string>
#include <vector>

#include "common/testing/test_env.h"
#include "gtest/gtest.h"
#include "model/weight_source.h"

namespace shardserve {
namespace {

std::string TinyModel(const std::string& family) {
  return TestRunfile("tests/fixtures/tiny/" + family);
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto w = OpenWeightSource(TinyModel("qwen2moe"));
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
  }
  std::unique_ptr<Engine> MakeEngine(EngineOptions options) {
    auto e = Engine::Create(weights_.get(), options);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  std::unique_ptr<WeightSource> weights_;
};

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

std::vector<int32_t> Prompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(32 + (i * 37) % 200);
  return ids;
}

auto KeepGoing() {
  return [](int32_t) { return true; };
}

TEST_F(EngineTest, ChunkingAndPrefixCacheDoNotChangeGreedyOutput) {
  EngineOptions whole;
  whole.max_num_batched_tokens = 512;
  auto a = MakeEngine(whole);
  auto reference = a->Generate(Prompt(70), Greedy(12), KeepGoing());
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ(reference->cached_tokens, 0);
  ASSERT_EQ(reference->token_ids.size(), 12u);

  EngineOptions chunked;
  chunked.max_num_batched_tokens = 16;
  chunked.block_size = 8;
  auto b = MakeEngine(chunked);
  auto first = b->Generate(Prompt(70), Greedy(12), KeepGoing());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->token_ids, reference->token_ids);
  // The same prompt again: its full blocks come from the prefix cache.
  auto second = b->Generate(Prompt(70), Greedy(12), KeepGoing());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->cached_tokens, 64);  // 8 full blocks of 8; the last token is recomputed
  EXPECT_EQ(second->token_ids, reference->token_ids);
}

TEST_F(EngineTest, CallbackStopsGeneration) {
  auto e = MakeEngine({});
  int calls = 0;
  auto r = e->Generate(Prompt(5), Greedy(50), [&](int32_t) { return ++calls < 3; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token_ids.size(), 3u);
}

TEST_F(EngineTest, RejectsBadInputWithClearErrors) {
  auto e = MakeEngine({});
  auto empty = e->Generate({}, Greedy(4), KeepGoing());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);

  auto bad_id = e->Generate({1, 2, 100000}, Greedy(4), KeepGoing());
  EXPECT_EQ(bad_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_id.status().message().find("100000"), std::string::npos);

  SamplingParams bad = Greedy(4);
  bad.top_p = 1.5f;
  auto bad_params = e->Generate(Prompt(3), bad, KeepGoing());
  EXPECT_EQ(bad_params.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_params.status().message().find("top_p"), std::string::npos);

  // The tiny model's context window is 256 tokens.
  auto too_long = e->Generate(Prompt(250), Greedy(10), KeepGoing());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("context window of 256"), std::string::npos);

  // The engine is still healthy afterwards.
  auto ok = e->Generate(Prompt(3), Greedy(4), KeepGoing());
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(EngineTest, SmallKvCacheLimitsTheContextAndFreesBlocks) {
  EngineOptions small;
  small.block_size = 16;
  // Room for exactly 4 blocks (64 tokens) of this model's KV in F16, the default.
  const ModelConfig& c = weights_->config();
  small.kv_cache_bytes = 4 * 16 * c.num_layers * 2 * c.num_kv_heads * c.head_dim * 2;
  auto e = MakeEngine(small);
  EXPECT_EQ(e->max_context_tokens(), 64);
  auto too_long = e->Generate(Prompt(60), Greedy(10), KeepGoing());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  // Requests that fit run one after another: each frees its blocks when it ends.
  for (int i = 0; i < 3; ++i) {
    auto r = e->Generate(Prompt(40 + i), Greedy(20), KeepGoing());
    EXPECT_TRUE(r.ok()) << r.status();
  }
}

// kv_cache_bytes buys blocks at the cache dtype's size: an F16 cache has twice the blocks (and
// twice the context) of an F32 cache of the same bytes. F16 is the default.
TEST_F(EngineTest, F16CacheHoldsTwiceTheBlocksOfF32) {
  EXPECT_EQ(EngineOptions{}.kv_cache_dtype, DType::kF16);
  const ModelConfig& c = weights_->config();
  EngineOptions f32;
  f32.block_size = 16;
  f32.kv_cache_dtype = DType::kF32;
  // Room for exactly 3 blocks (48 tokens) of this model's KV in F32.
  f32.kv_cache_bytes = 3 * 16 * c.num_layers * 2 * c.num_kv_heads * c.head_dim * 4;
  EngineOptions f16 = f32;
  f16.kv_cache_dtype = DType::kF16;
  auto a = MakeEngine(f32);
  auto b = MakeEngine(f16);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->num_kv_blocks(), 3);
  EXPECT_EQ(b->num_kv_blocks(), 6);
  EXPECT_EQ(a->max_context_tokens(), 48);
  EXPECT_EQ(b->max_context_tokens(), 96);
  // 60 + 10 tokens fit the F16 cache only.
  EXPECT_EQ(a->Generate(Prompt(60), Greedy(10), KeepGoing()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(b->Generate(Prompt(60), Greedy(10), KeepGoing()).ok());
}

TEST_F(EngineTest, RejectsKvCacheDTypesOtherThanF16AndF32) {
  EngineOptions bf16;
  bf16.kv_cache_dtype = DType::kBF16;
  auto e = Engine::Create(weights_.get(), bf16);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("bf16"), std::string::npos) << e.status();
}

}  // namespace
}  // namespace shardserve
