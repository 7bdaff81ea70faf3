// Continuous batching against the single-process Engine: many concurrent requests batched
// together (with chunked prefill, prefix caching and preemption by recompute) must each produce
// the tokens the Engine produces for that prompt alone. Also: cancellation frees blocks, the
// waiting queue is bounded, bad requests are refused, and a failed group fails every request.
#include "worker/serving_engine.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/test_env.h"
#include "gtest/gtest.h"
#include "model/weight_source.h"
#include "worker/comm/local_communicator.h"
#include "worker/engine.h"

namespace shardserve {
namespace {

std::unique_ptr<WeightSource> Open(const std::string& family) {
  auto w = OpenWeightSource(TestRunfile("tests/fixtures/tiny/" + family + "/model.gguf"));
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : nullptr;
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

// KV bytes per token of the tiny models: 2 layers x 2 KV heads x 16 dims x (K, V) x 2 bytes (F16).
constexpr int64_t kTinyKvBytesPerToken = 2 * 2 * 16 * 2 * 2;

EngineOptions Options(int64_t num_blocks) {
  EngineOptions o;
  o.num_threads = 1;
  o.block_size = 16;
  o.kv_cache_dtype = DType::kF16;  // kTinyKvBytesPerToken's element size
  o.kv_cache_bytes = num_blocks * 16 * kTinyKvBytesPerToken;
  return o;
}

std::vector<int32_t> Prompt(int index, int length) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back((index * 37 + i * 11 + 5) % 290 + 3);
  return p;
}

std::vector<int32_t> Reference(const WeightSource* weights, const std::vector<int32_t>& prompt,
                               int max_tokens) {
  auto engine = Engine::Create(weights, Options(64));
  EXPECT_TRUE(engine.ok()) << engine.status();
  auto r = (*engine)->Generate(prompt, Greedy(max_tokens), [](int32_t) { return true; });
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->token_ids : std::vector<int32_t>{};
}

struct Outcome {
  std::vector<int32_t> tokens;
  FinishReason last_finish = FinishReason::kNone;
  absl::Status status;
};

Outcome Drain(ServingRequest& r, absl::Duration timeout = absl::Seconds(60)) {
  Outcome o;
  TokenEvent e;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const ServingRequest::NextResult next = r.Next(&e, absl::Milliseconds(100));
    if (next == ServingRequest::kDone) {
      o.status = r.status();
      return o;
    }
    if (next == ServingRequest::kEvent) {
      o.tokens.push_back(e.token_id);
      o.last_finish = e.finish;
    }
  }
  o.status = absl::DeadlineExceededError("the request did not finish in time");
  return o;
}

// A one-rank group (no communicators).
std::unique_ptr<GroupEngine> SingleRank(const WeightSource* weights, int64_t num_blocks) {
  auto shard = MakeShardSpec(weights->config(), ParallelLayout{1, 1, 1}, 0, 0);
  EXPECT_TRUE(shard.ok()) << shard.status();
  auto engine = GroupEngine::Create(weights, *shard, GroupComms{}, Options(num_blocks));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

// A TP=2 group in one process: LocalCommunicators for the control and tensor-parallel groups,
// one GroupEngine per rank (rank 0 leads).
struct TwoRanks {
  void Start(const WeightSource* weights, const ParallelLayout& layout, absl::Duration timeout) {
    control = LocalCommunicator::CreateGroup(2, timeout);
    tp = LocalCommunicator::CreateGroup(2, timeout);
    for (int r = 0; r < 2; ++r) {
      auto shard = MakeShardSpec(weights->config(), layout, r, 0);
      ASSERT_TRUE(shard.ok()) << shard.status();
      GroupComms comms;
      comms.control = control[r].get();
      comms.decoder.tp = tp[r].get();
      auto engine = GroupEngine::Create(weights, *shard, comms, Options(64));
      ASSERT_TRUE(engine.ok()) << engine.status();
      ranks.push_back(std::move(*engine));
    }
  }

  std::vector<std::unique_ptr<LocalCommunicator>> control;
  std::vector<std::unique_ptr<LocalCommunicator>> tp;
  std::vector<std::unique_ptr<GroupEngine>> ranks;
};

ServingOptions Serving(int max_num_seqs, int budget, int max_waiting = 256) {
  ServingOptions o;
  o.scheduler.max_num_seqs = max_num_seqs;
  o.scheduler.max_num_batched_tokens = budget;
  o.scheduler.max_waiting = max_waiting;
  o.ping_interval = absl::Milliseconds(100);
  return o;
}

// Submits every prompt at once and checks each output against the Engine's.
void ExpectConcurrentMatchesReference(const WeightSource* weights, GroupEngine* group,
                                      const ServingOptions& options, int num_requests,
                                      int max_tokens, int64_t* preemptions) {
  auto serving = ServingEngine::Create(group, options);
  ASSERT_TRUE(serving.ok()) << serving.status();
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<ServingRequest>> requests;
  for (int i = 0; i < num_requests; ++i) {
    // Shared 16-token prefixes between pairs of requests exercise the prefix cache.
    std::vector<int32_t> p = Prompt(i / 2, 16);
    const std::vector<int32_t> tail = Prompt(i, 3 + (i * 7) % 29);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
    auto r = (*serving)->Submit(p, Greedy(max_tokens), absl::StrCat("r", i));
    ASSERT_TRUE(r.ok()) << r.status();
    requests.push_back(*r);
  }
  for (int i = 0; i < num_requests; ++i) {
    const Outcome o = Drain(*requests[i]);
    ASSERT_TRUE(o.status.ok()) << "request " << i << ": " << o.status;
    EXPECT_EQ(o.tokens, Reference(weights, prompts[i], max_tokens)) << "request " << i;
    EXPECT_EQ(o.last_finish, FinishReason::kLength) << "request " << i;
  }
  const ServingLoad load = (*serving)->Load();
  EXPECT_EQ(load.running, 0);
  EXPECT_EQ(load.waiting, 0);
  EXPECT_EQ(load.free_kv_blocks, load.num_kv_blocks);
  EXPECT_GT(load.prefix_cache_hit_tokens, 0);
  *preemptions = load.preemptions;
  (*serving)->Shutdown();
}

TEST(ServingEngineTest, ConcurrentRequestsMatchTheEngineAlone) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  auto group = SingleRank(weights.get(), 64);
  ASSERT_NE(group, nullptr);
  int64_t preemptions = 0;
  // A 24-token budget splits most prompts over several steps, mixed with decodes.
  ExpectConcurrentMatchesReference(weights.get(), group.get(), Serving(8, 24), 12, 20,
                                   &preemptions);
  EXPECT_EQ(preemptions, 0);
}

TEST(ServingEngineTest, ManyRequestsSharingAFirstBlockAdmittedInOneStep) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  auto group = SingleRank(weights.get(), 128);
  ASSERT_NE(group, nullptr);
  auto serving = ServingEngine::Create(group.get(), Serving(64, 96));
  ASSERT_TRUE(serving.ok()) << serving.status();
  const std::vector<int32_t> shared = Prompt(7, 16);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<ServingRequest>> requests;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p = shared;
    p.push_back(10 + i);
    p.push_back(200 - i);
    prompts.push_back(p);
    auto r = (*serving)->Submit(p, Greedy(8), absl::StrCat("s", i));
    ASSERT_TRUE(r.ok()) << r.status();
    requests.push_back(*r);
  }
  for (int i = 0; i < 32; ++i) {
    const Outcome o = Drain(*requests[i]);
    ASSERT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.tokens, Reference(weights.get(), prompts[i], 8)) << "request " << i;
  }
}

// The quantized model on the integer matmul path: a batched row must be computed exactly as a
// row alone (kernels/cpu/matmul_test checks the kernels; this checks the whole step).
TEST(ServingEngineTest, QuantizedModelBatchedEqualsAlone) {
  const char* path = std::getenv("SHARDSERVE_TEST_GGUF");
  if (path == nullptr) GTEST_SKIP() << "SHARDSERVE_TEST_GGUF is not set";
  auto opened = OpenWeightSource(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<WeightSource> weights = std::move(*opened);
  auto shard = MakeShardSpec(weights->config(), ParallelLayout{1, 1, 1}, 0, 0);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EngineOptions options;
  options.num_threads = 1;
  auto group = GroupEngine::Create(weights.get(), *shard, GroupComms{}, options);
  ASSERT_TRUE(group.ok()) << group.status();
  auto serving = ServingEngine::Create(group->get(), Serving(64, 96));
  ASSERT_TRUE(serving.ok()) << serving.status();
  auto reference = Engine::Create(weights.get(), options);
  ASSERT_TRUE(reference.ok()) << reference.status();
  constexpr int kRequests = 16;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<ServingRequest>> requests;
  for (int i = 0; i < kRequests; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 16; ++t) p.push_back(1000 + 97 * t + (i % 2) * 5);
    p.push_back(500 + i);
    p.push_back(2000 - i);
    prompts.push_back(p);
    auto r = (*serving)->Submit(p, Greedy(12), absl::StrCat("q", i));
    ASSERT_TRUE(r.ok()) << r.status();
    requests.push_back(*r);
  }
  for (int i = 0; i < kRequests; ++i) {
    const Outcome o = Drain(*requests[i]);
    ASSERT_TRUE(o.status.ok()) << o.status;
    auto alone = (*reference)->Generate(prompts[i], Greedy(12), [](int32_t) { return true; });
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ(o.tokens, alone->token_ids) << "request " << i;
  }
}

TEST(ServingEngineTest, PreemptionByRecomputeKeepsOutputsExact) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  // 8 blocks hold two requests' 16 + up to 31 prompt tokens and 40 outputs, not six.
  auto group = SingleRank(weights.get(), 8);
  ASSERT_NE(group, nullptr);
  int64_t preemptions = 0;
  ExpectConcurrentMatchesReference(weights.get(), group.get(), Serving(6, 64), 6, 40, &preemptions);
  EXPECT_GT(preemptions, 0);
}

TEST(ServingEngineTest, TwoRankGroupMatchesTheEngineAlone) {
  auto weights = Open("qwen2moe");
  ASSERT_NE(weights, nullptr);
  TwoRanks group;
  ASSERT_NO_FATAL_FAILURE(group.Start(weights.get(), ParallelLayout{2, 1, 2}, absl::Seconds(30)));
  auto& ranks = group.ranks;
  absl::Status follower;
  std::thread t([&] { follower = ranks[1]->ServeFollower(); });
  int64_t preemptions = 0;
  ExpectConcurrentMatchesReference(weights.get(), ranks[0].get(), Serving(8, 32), 8, 12,
                                   &preemptions);
  EXPECT_TRUE(ranks[0]->Stop().ok());
  t.join();
  EXPECT_TRUE(follower.ok()) << follower;
}

TEST(ServingEngineTest, CancelFreesTheBlocksAndEndsTheStream) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  auto group = SingleRank(weights.get(), 16);
  ASSERT_NE(group, nullptr);
  auto serving = ServingEngine::Create(group.get(), Serving(4, 32));
  ASSERT_TRUE(serving.ok()) << serving.status();
  auto r = (*serving)->Submit(Prompt(1, 40), Greedy(200), "long");
  ASSERT_TRUE(r.ok()) << r.status();
  TokenEvent e;
  ASSERT_EQ((*r)->Next(&e, absl::Seconds(30)), ServingRequest::kEvent);
  EXPECT_GT((*serving)->Load().kv_usage, 0);
  (*r)->Cancel();
  const Outcome o = Drain(**r, absl::Seconds(30));
  EXPECT_EQ(o.status.code(), absl::StatusCode::kCancelled) << o.status;
  EXPECT_LT(o.tokens.size(), 199u);
  // The load is published after the step that dropped the request.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  ServingLoad load = (*serving)->Load();
  while (load.running > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    load = (*serving)->Load();
  }
  EXPECT_EQ(load.running, 0);
  EXPECT_EQ(load.free_kv_blocks, load.num_kv_blocks);
  EXPECT_EQ(load.kv_usage, 0);
}

TEST(ServingEngineTest, RefusesBadRequestsAndBoundsTheQueue) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  auto group = SingleRank(weights.get(), 64);
  ASSERT_NE(group, nullptr);
  auto serving = ServingEngine::Create(group.get(), Serving(1, 16, /*max_waiting=*/2));
  ASSERT_TRUE(serving.ok()) << serving.status();

  auto too_long = (*serving)->Submit(Prompt(0, 250), Greedy(20), "too-long");
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("256"), std::string::npos) << too_long.status();
  SamplingParams bad = Greedy(4);
  bad.top_p = 1.5f;
  EXPECT_EQ((*serving)->Submit(Prompt(0, 4), bad, "bad").status().code(),
            absl::StatusCode::kInvalidArgument);

  // One runs at a time and two may wait: of many submitted at once, some are refused at once
  // and every accepted one completes.
  std::vector<std::shared_ptr<ServingRequest>> accepted;
  int refused = 0;
  for (int i = 0; i < 12; ++i) {
    auto r = (*serving)->Submit(Prompt(i, 8), Greedy(30), absl::StrCat("q", i));
    if (r.ok()) {
      accepted.push_back(*r);
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GE(accepted.size(), 2u);
  for (auto& r : accepted) {
    const Outcome o = Drain(*r);
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.tokens.size(), 30u);
  }
}

TEST(ServingEngineTest, StopsOnStopTokenAfterMinTokens) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  auto group = SingleRank(weights.get(), 64);
  ASSERT_NE(group, nullptr);
  const std::vector<int32_t> prompt = Prompt(3, 10);
  const std::vector<int32_t> expected = Reference(weights.get(), prompt, 12);
  ASSERT_EQ(expected.size(), 12u);
  auto serving = ServingEngine::Create(group.get(), Serving(4, 32));
  ASSERT_TRUE(serving.ok()) << serving.status();
  // Stop on the token produced at step 6 (index 5), unless it appeared earlier.
  SamplingParams p = Greedy(12);
  p.stop_token_ids = {expected[5]};
  size_t first = 0;
  while (expected[first] != expected[5]) ++first;
  auto r = (*serving)->Submit(prompt, p, "stop");
  ASSERT_TRUE(r.ok()) << r.status();
  const Outcome o = Drain(**r);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.tokens, std::vector<int32_t>(expected.begin(), expected.begin() + first + 1));
  EXPECT_EQ(o.last_finish, FinishReason::kStop);
}

TEST(ServingEngineTest, AFailedGroupFailsEveryRequest) {
  auto weights = Open("llama");
  ASSERT_NE(weights, nullptr);
  TwoRanks group;
  ASSERT_NO_FATAL_FAILURE(group.Start(weights.get(), ParallelLayout{2, 1, 1}, absl::Seconds(2)));
  auto& ranks = group.ranks;
  // The follower leaves after its first few plans, as if its process died.
  int plans = 0;
  std::thread t([&] { (void)ranks[1]->ServeFollower([&] { return ++plans >= 3; }); });
  auto serving = ServingEngine::Create(ranks[0].get(), Serving(4, 16));
  ASSERT_TRUE(serving.ok()) << serving.status();
  std::vector<std::shared_ptr<ServingRequest>> requests;
  for (int i = 0; i < 3; ++i) {
    auto r = (*serving)->Submit(Prompt(i, 20), Greedy(50), absl::StrCat("f", i));
    ASSERT_TRUE(r.ok()) << r.status();
    requests.push_back(*r);
  }
  for (auto& r : requests) {
    const Outcome o = Drain(*r, absl::Seconds(30));
    EXPECT_FALSE(o.status.ok());
    EXPECT_EQ(o.status.message().find("did not finish in time"), absl::string_view::npos)
        << o.status;
  }
  t.join();
  EXPECT_FALSE((*serving)->health().ok());
  EXPECT_FALSE((*serving)->Submit(Prompt(0, 4), Greedy(4), "late").ok());
}

}  // namespace
}  // namespace shardserve
