#include "coordinator/disagg_router.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "worker/block_allocator.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;
using GroupState = DisaggRouter::GroupState;
using Reason = DisaggRouter::Reason;

constexpr int32_t kBlockSize = 4;

GroupState Group(int32_t id, int in_flight, int32_t free_blocks = 1000, bool ready = true,
                 int32_t reserved = 0) {
  GroupState g;
  g.group_id = id;
  g.ready = ready;
  g.in_flight = in_flight;
  g.load.free_kv_blocks = free_blocks;
  g.load.num_kv_blocks = 1000;
  g.reserved_kv_blocks = reserved;
  return g;
}

// `n` token ids first, first + 1, ...
std::vector<int32_t> Tokens(int n, int32_t first) {
  std::vector<int32_t> out(n);
  for (int i = 0; i < n; ++i) out[i] = first + i;
  return out;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

DisaggRouter::Options Opts(int capacity = 65536, int max_inflight = 256) {
  DisaggRouter::Options options;
  options.prefix_index_capacity = capacity;
  options.max_inflight_per_group = max_inflight;
  return options;
}

absl::StatusOr<DisaggRouter::Decision> RoutePrompt(DisaggRouter& router,
                                                   const std::vector<GroupState>& prefill,
                                                   const std::vector<int32_t>& prompt,
                                                   int32_t max_tokens = 4) {
  const std::vector<GroupState> decode = {Group(10, 0)};
  return router.Route(prefill, decode, {prompt, max_tokens, kBlockSize});
}

// The value of the counter `name` with exactly `labels`, or -1 when there is none.
double CounterValue(prometheus::Registry& registry, const std::string& name,
                    const prometheus::Labels& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      prometheus::Labels got;
      for (const auto& pair : metric.label) got[pair.name] = pair.value;
      if (got == labels) return metric.counter.value;
    }
  }
  return -1;
}

// Prompts of the prefill tables: A is 3 full blocks, A2 its first 2 blocks plus others, B
// unrelated.
std::vector<int32_t> PromptA() { return Tokens(12, 100); }
std::vector<int32_t> PromptA2() { return Concat(Tokens(8, 100), Tokens(5, 900)); }
std::vector<int32_t> PromptB() { return Tokens(9, 500); }

struct PrefillStep {
  std::vector<int32_t> prompt;
  std::vector<GroupState> groups;
  int32_t want_group;
  Reason want_reason;
  int want_matched;
};

struct PrefillCase {
  std::string name;
  std::vector<PrefillStep> steps;
};

TEST(DisaggRouterTest, PrefillChoiceTable) {
  const std::vector<PrefillCase> cases = {
      {"affinity wins over a less loaded group",
       {{PromptA(), {Group(0, 0), Group(1, 0)}, 0, Reason::kLeastLoaded, 0},
        {PromptA(), {Group(0, 3), Group(1, 0)}, 0, Reason::kPrefixAffinity, 3},
        {PromptA2(), {Group(0, 4), Group(1, 0)}, 0, Reason::kPrefixAffinity, 2},
        {PromptB(), {Group(0, 0), Group(1, 0)}, 0, Reason::kLeastLoaded, 0}}},
      {"overloaded affinity falls back to the least loaded",
       {{PromptA(), {Group(0, 0), Group(1, 0)}, 0, Reason::kLeastLoaded, 0},
        {PromptA(), {Group(0, 5), Group(1, 0), Group(2, 1)}, 1, Reason::kAffinityOverloaded, 0},
        // Now both 0 and 1 hold A; the lower in-flight, then the lower id, wins.
        {PromptA(), {Group(0, 2), Group(1, 1)}, 1, Reason::kPrefixAffinity, 3},
        {PromptA(), {Group(0, 1), Group(1, 1)}, 0, Reason::kPrefixAffinity, 3}}},
      {"the longest prefix wins; the fallback keeps its own partial match",
       {{PromptA2(), {Group(0, 0), Group(1, 0)}, 0, Reason::kLeastLoaded, 0},
        {PromptA(), {Group(0, 9), Group(1, 0)}, 1, Reason::kAffinityOverloaded, 0},
        {PromptA2(), {Group(0, 0), Group(1, 3)}, 0, Reason::kPrefixAffinity, 3},
        {PromptA(), {Group(0, 0), Group(1, 3)}, 1, Reason::kPrefixAffinity, 3},
        {PromptA(), {Group(0, 3), Group(1, 9)}, 0, Reason::kAffinityOverloaded, 2}}},
      {"least loaded ties go to the lower id",
       {{PromptB(), {Group(2, 3), Group(1, 1), Group(0, 1)}, 0, Reason::kLeastLoaded, 0},
        {PromptA(), {Group(0, 1), Group(1, 0), Group(2, 0)}, 1, Reason::kLeastLoaded, 0}}},
      {"a full affinity group and unready groups are skipped",
       {{PromptA(), {Group(0, 0), Group(1, 0)}, 0, Reason::kLeastLoaded, 0},
        {PromptA(),
         {Group(0, 16), Group(1, 7), Group(2, 0, 1000, false)},
         1,
         Reason::kLeastLoaded,
         0}}},
  };
  for (const PrefillCase& c : cases) {
    SCOPED_TRACE(c.name);
    prometheus::Registry registry;
    DisaggRouter router(registry, Opts(/*capacity=*/65536, /*max_inflight=*/16));
    for (size_t i = 0; i < c.steps.size(); ++i) {
      SCOPED_TRACE("step " + std::to_string(i));
      const PrefillStep& step = c.steps[i];
      absl::StatusOr<DisaggRouter::Decision> d = RoutePrompt(router, step.groups, step.prompt);
      ASSERT_TRUE(d.ok()) << d.status();
      EXPECT_EQ(d->prefill_group_id, step.want_group);
      EXPECT_EQ(d->reason, step.want_reason) << DisaggRouter::ReasonName(d->reason);
      EXPECT_EQ(d->matched_prefix_blocks, step.want_matched);
    }
  }
}

TEST(DisaggRouterTest, IndexEvictsLeastRecentHashesDeepestFirst) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts(/*capacity=*/4));
  const std::vector<GroupState> one = {Group(0, 0)};
  const std::vector<int32_t> a = Tokens(8, 0), b = Tokens(8, 100), c = Tokens(8, 200),
                             d = Tokens(8, 300), e = Tokens(4, 400);
  // Per step: the prompt routed, then the index size and each prompt's matched blocks.
  struct Step {
    std::vector<int32_t> prompt;
    int want_size;
    std::vector<int> want_matched;  // a, b, c, d
  };
  const std::vector<Step> steps = {
      {a, 2, {2, 0, 0, 0}}, {b, 4, {2, 2, 0, 0}}, {c, 4, {0, 2, 2, 0}},  // a was least recent
      {b, 4, {0, 2, 2, 0}},                                              // touches b
      {d, 4, {0, 2, 0, 2}},                                              // so c goes
      {e, 4, {0, 1, 0, 2}},  // b's deeper block goes first: its first block still matches
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    ASSERT_TRUE(RoutePrompt(router, one, steps[i].prompt).ok());
    EXPECT_EQ(router.IndexSize(0), steps[i].want_size);
    const std::vector<std::vector<int32_t>> prompts = {a, b, c, d};
    for (size_t p = 0; p < prompts.size(); ++p) {
      EXPECT_EQ(router.MatchedPrefixBlocks(0, prompts[p], kBlockSize), steps[i].want_matched[p])
          << "prompt " << p;
    }
  }
}

TEST(DisaggRouterTest, GroupThatStopsBeingReadyOrLeavesForgetsItsIndex) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts());
  ASSERT_TRUE(RoutePrompt(router, {Group(0, 0), Group(1, 1)}, PromptA()).ok());
  ASSERT_TRUE(RoutePrompt(router, {Group(0, 1), Group(1, 0)}, PromptB()).ok());
  EXPECT_EQ(router.IndexSize(0), 3);
  EXPECT_EQ(router.IndexSize(1), 2);

  ASSERT_TRUE(RoutePrompt(router, {Group(0, 0, 1000, false), Group(1, 0)}, PromptB()).ok());
  EXPECT_EQ(router.IndexSize(0), 0);
  // Ready again: its cache is gone, so A goes by load alone.
  absl::StatusOr<DisaggRouter::Decision> d =
      RoutePrompt(router, {Group(0, 1), Group(1, 0)}, PromptA());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->prefill_group_id, 1);
  EXPECT_EQ(d->reason, Reason::kLeastLoaded);

  // A group missing from the candidates (another plan) is forgotten too.
  ASSERT_TRUE(RoutePrompt(router, {Group(0, 0)}, PromptB()).ok());
  EXPECT_EQ(router.IndexSize(1), 0);
  router.ForgetGroup(0);
  EXPECT_EQ(router.IndexSize(0), 0);
}

struct DecodeCase {
  std::string name;
  std::vector<GroupState> groups;
  int num_prompt_tokens;
  int32_t max_tokens;
  int32_t want_group;                        // when OK
  absl::StatusCode want_code;                // kOk or the error
  std::vector<std::string> want_substrings;  // in the error message
};

TEST(DisaggRouterTest, DecodeChoiceTable) {
  const absl::StatusCode kOk = absl::StatusCode::kOk;
  const absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;
  const std::vector<DecodeCase> cases = {
      // Scores: 100/1, 300/3, 250/2.
      {"most free blocks per request",
       {Group(0, 0, 100), Group(1, 2, 300), Group(2, 1, 250)},
       10,
       6,
       2,
       kOk,
       {}},
      {"equal score: fewer in flight", {Group(0, 1, 200), Group(1, 0, 100)}, 10, 6, 1, kOk, {}},
      {"equal score and load: lower id", {Group(3, 1, 200), Group(2, 1, 200)}, 10, 6, 2, kOk, {}},
      {"reserved blocks are not available",
       {Group(0, 0, 100, true, 90), Group(1, 0, 50)},
       10,
       6,
       1,
       kOk,
       {}},
      {"only a group with room", {Group(0, 0, 3), Group(1, 5, 4)}, 10, 6, 1, kOk, {}},
      {"unready and full groups are skipped",
       {Group(0, 0, 900, false), Group(1, 8, 900), Group(2, 7, 20)},
       10,
       6,
       2,
       kOk,
       {}},
      // 10 + 6 tokens need 4 blocks of 4.
      // No room anywhere: queued on the most available (group 2 is full of requests).
      {"no room anywhere",
       {Group(0, 0, 3), Group(1, 0, 5, true, 3), Group(2, 8, 900)},
       10,
       6,
       0,
       kOk,
       {}},
      {"every ready group full",
       {Group(0, 8), Group(1, 9)},
       10,
       6,
       0,
       kExhausted,
       {"decode pool", "max_inflight_per_group=8"}},
      {"no ready group",
       {Group(0, 0, 900, false)},
       10,
       6,
       0,
       absl::StatusCode::kUnavailable,
       {"decode pool", "0 of 1 groups ready"}},
      {"no group at all", {}, 10, 6, 0, absl::StatusCode::kUnavailable, {"decode pool"}},
  };
  for (const DecodeCase& c : cases) {
    SCOPED_TRACE(c.name);
    prometheus::Registry registry;
    DisaggRouter router(registry, Opts(/*capacity=*/65536, /*max_inflight=*/8));
    const std::vector<int32_t> prompt = Tokens(c.num_prompt_tokens, 0);
    const std::vector<GroupState> prefill = {Group(0, 0)};
    absl::StatusOr<DisaggRouter::Decision> d =
        router.Route(prefill, c.groups, {prompt, c.max_tokens, kBlockSize});
    EXPECT_EQ(d.status().code(), c.want_code) << d.status();
    if (d.ok()) {
      EXPECT_EQ(d->decode_group_id, c.want_group);
      EXPECT_EQ(d->decode_blocks_needed, 4);
      continue;
    }
    for (const std::string& s : c.want_substrings) {
      EXPECT_THAT(d.status().message(), HasSubstr(s));
    }
    // A refused request leaves no trace.
    EXPECT_EQ(router.IndexSize(0), 0);
    EXPECT_EQ(CounterValue(registry, "shardserve_router_decisions_total",
                           {{"pool", "prefill"}, {"group", "0"}, {"reason", "least_loaded"}}),
              -1);
  }
}

TEST(DisaggRouterTest, NoReadyOrAdmissiblePrefillGroup) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts(/*capacity=*/65536, /*max_inflight=*/2));
  absl::StatusOr<DisaggRouter::Decision> d =
      RoutePrompt(router, {Group(0, 0, 1000, false), Group(1, 0, 1000, false)}, PromptA());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("no ready group in the prefill pool (0 of 2"));
  d = RoutePrompt(router, {}, PromptA());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  d = RoutePrompt(router, {Group(0, 2), Group(1, 3)}, PromptA());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("prefill pool"));
}

TEST(DisaggRouterTest, InvalidRequests) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts());
  const std::vector<GroupState> groups = {Group(0, 0)};
  const std::vector<int32_t> empty;
  EXPECT_EQ(router.Route(groups, groups, {empty, 4, kBlockSize}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(router.Route(groups, groups, {PromptA(), 4, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(router.Route(groups, groups, {PromptA(), -1, kBlockSize}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DisaggRouterTest, CountsDecisionsAndPrefixHitsByLabel) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts());
  const std::vector<GroupState> decode = {Group(10, 0), Group(11, 3)};
  auto route = [&](const std::vector<GroupState>& prefill, const std::vector<int32_t>& prompt) {
    ASSERT_TRUE(router.Route(prefill, decode, {prompt, 4, kBlockSize}).ok());
  };
  route({Group(0, 0), Group(1, 0)}, PromptA());   // 0, least_loaded
  route({Group(0, 1), Group(1, 0)}, PromptA());   // 0, prefix_affinity, 3 blocks
  route({Group(0, 2), Group(1, 0)}, PromptA2());  // 0, prefix_affinity, 2 blocks
  route({Group(0, 9), Group(1, 0)}, PromptA());   // 1, affinity_overloaded
  auto decisions = [&](const std::string& pool, const std::string& group,
                       const std::string& reason) {
    return CounterValue(registry, "shardserve_router_decisions_total",
                        {{"pool", pool}, {"group", group}, {"reason", reason}});
  };
  EXPECT_EQ(decisions("prefill", "0", "least_loaded"), 1);
  EXPECT_EQ(decisions("prefill", "0", "prefix_affinity"), 2);
  EXPECT_EQ(decisions("prefill", "1", "affinity_overloaded"), 1);
  EXPECT_EQ(decisions("prefill", "1", "least_loaded"), -1);
  EXPECT_EQ(decisions("decode", "10", "least_loaded"), 4);
  EXPECT_EQ(decisions("decode", "11", "least_loaded"), -1);
  EXPECT_EQ(CounterValue(registry, "shardserve_router_prefix_hit_blocks_total",
                         {{"pool", "prefill"}, {"group", "0"}}),
            5);
  EXPECT_EQ(CounterValue(registry, "shardserve_router_prefix_hit_blocks_total",
                         {{"pool", "prefill"}, {"group", "1"}}),
            0);
}

TEST(DisaggRouterTest, BlockHashesMatchTheAllocatorsPrefixCache) {
  for (const int block_size : {1, 4, 16}) {
    SCOPED_TRACE("block_size " + std::to_string(block_size));
    const std::vector<int32_t> first = Tokens(5 * block_size + 1, 7);
    // Same first 3 blocks, then different tokens.
    const std::vector<int32_t> second =
        Concat(std::vector<int32_t>(first.begin(), first.begin() + 3 * block_size),
               Tokens(2 * block_size + 1, 9000));

    BlockAllocator kv(/*num_blocks=*/64, block_size);
    ASSERT_TRUE(kv.Allocate(1, first).ok());
    kv.MarkComputed(1, static_cast<int>(first.size()));
    prometheus::Registry registry;
    DisaggRouter router(registry, Opts());
    const std::vector<GroupState> groups = {Group(0, 0)};
    ASSERT_TRUE(router.Route(groups, groups, {first, 1, block_size}).ok());

    absl::StatusOr<int> cached = kv.Allocate(2, second);
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(*cached, 3 * block_size);
    absl::StatusOr<DisaggRouter::Decision> d =
        router.Route(groups, groups, {second, 1, block_size});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->matched_prefix_blocks * block_size, *cached);

    uint64_t parent = BlockAllocator::kRootHash;
    const std::vector<uint64_t> hashes = DisaggRouter::BlockHashes(first, block_size);
    ASSERT_EQ(hashes.size(), first.size() / block_size);
    for (size_t b = 0; b < hashes.size(); ++b) {
      parent = BlockAllocator::HashBlock(
          parent, absl::MakeConstSpan(first).subspan(b * block_size, block_size));
      EXPECT_EQ(hashes[b], parent) << "block " << b;
    }
  }
}

TEST(DisaggRouterTest, ConcurrentDecisionsAreAllCounted) {
  prometheus::Registry registry;
  DisaggRouter router(registry, Opts(/*capacity=*/64));
  const std::vector<GroupState> prefill = {Group(0, 0), Group(1, 0)};
  const std::vector<GroupState> decode = {Group(10, 0)};
  constexpr int kThreads = 4, kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::vector<int32_t> prompt = Tokens(9, (t * kPerThread + i) % 37);
        EXPECT_TRUE(router.Route(prefill, decode, {prompt, 1, kBlockSize}).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(CounterValue(registry, "shardserve_router_decisions_total",
                         {{"pool", "decode"}, {"group", "10"}, {"reason", "least_loaded"}}),
            kThreads * kPerThread);
  EXPECT_LE(router.IndexSize(0), 64);
  EXPECT_LE(router.IndexSize(1), 64);
}

}  // namespace
}  // namespace shardserve
