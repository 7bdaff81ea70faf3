#include "kernels/cpu/moe_dispatch.h"

#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

TEST(MoeDispatchTest, GroupsTokensByExpert) {
  // 4 tokens, k = 2, 4 experts.
  const std::vector<int32_t> ids = {2, 0, 0, 3, 2, 3, 1, 2};
  const std::vector<float> w = {0.6f, 0.4f, 0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  MoeDispatch d;
  BuildMoeDispatch(ids.data(), w.data(), 4, 2, 0, 4, &d);
  EXPECT_EQ(d.expert_indptr, (std::vector<int32_t>{0, 2, 3, 6, 8}));
  EXPECT_EQ(d.token_idx, (std::vector<int32_t>{0, 1, 3, 0, 2, 3, 1, 2}));
  EXPECT_EQ(d.choice, (std::vector<int32_t>{1, 0, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(d.weights, (std::vector<float>{0.4f, 0.7f, 0.9f, 0.6f, 0.5f, 0.1f, 0.3f, 0.5f}));
}

TEST(MoeDispatchTest, ExpertRangeKeepsLocalExperts) {
  const std::vector<int32_t> ids = {2, 0, 0, 3, 2, 3, 1, 2};
  const std::vector<float> w = {0.6f, 0.4f, 0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  MoeDispatch d;
  BuildMoeDispatch(ids.data(), w.data(), 4, 2, 2, 4, &d);  // this rank owns experts 2 and 3
  EXPECT_EQ(d.expert_indptr, (std::vector<int32_t>{0, 3, 5}));
  EXPECT_EQ(d.token_idx, (std::vector<int32_t>{0, 2, 3, 1, 2}));
  EXPECT_EQ(d.weights, (std::vector<float>{0.6f, 0.5f, 0.1f, 0.3f, 0.5f}));
}

// The full MoE data path with "experts" that scale rows, against a direct per-token sum.
TEST(MoeDispatchTest, GatherExpertCombineMatchesDirectSum) {
  const int64_t tokens = 50, hidden = 1024;
  const int experts = 6, k = 2;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(tokens * hidden);
  for (float& v : x) v = dist(gen);
  std::vector<int32_t> ids(tokens * k);
  std::vector<float> w(tokens * k);
  for (int64_t t = 0; t < tokens; ++t) {
    ids[t * k] = gen() % experts;
    ids[t * k + 1] = (ids[t * k] + 1 + gen() % (experts - 1)) % experts;
    w[t * k] = dist(gen);
    w[t * k + 1] = dist(gen);
  }
  auto expert_scale = [](int e) { return 0.5f + e; };

  std::vector<double> want(tokens * hidden, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < k; ++i) {
      for (int64_t c = 0; c < hidden; ++c) {
        want[t * hidden + c] +=
            static_cast<double>(w[t * k + i]) * expert_scale(ids[t * k + i]) * x[t * hidden + c];
      }
    }
  }

  ThreadPool pool(3);
  MoeDispatch d;
  BuildMoeDispatch(ids.data(), w.data(), tokens, k, 0, experts, &d);
  std::vector<float> out(tokens * hidden, 0.0f);
  std::vector<float> rows;
  for (int e = 0; e < experts; ++e) {
    const int32_t begin = d.expert_indptr[e];
    const int32_t n = d.expert_indptr[e + 1] - begin;
    rows.resize(n * hidden);
    GatherRows(x.data(), hidden, d.token_idx.data() + begin, n, rows.data(), &pool);
    for (float& v : rows) v *= expert_scale(e);
    MoeCombine(rows.data(), d.token_idx.data() + begin, d.weights.data() + begin, n, hidden,
               out.data(), &pool);
  }
  for (int64_t i = 0; i < tokens * hidden; ++i) ASSERT_NEAR(out[i], want[i], 1e-5) << i;

  // One combine over all experts' rows at once (token indices repeat) gives the same sums.
  std::vector<float> all_rows(d.token_idx.size() * hidden);
  GatherRows(x.data(), hidden, d.token_idx.data(), d.token_idx.size(), all_rows.data(), &pool);
  for (int e = 0; e < experts; ++e) {
    for (int32_t r = d.expert_indptr[e]; r < d.expert_indptr[e + 1]; ++r) {
      for (int64_t c = 0; c < hidden; ++c) all_rows[r * hidden + c] *= expert_scale(e);
    }
  }
  std::vector<float> out_all(tokens * hidden, 0.0f);
  MoeCombine(all_rows.data(), d.token_idx.data(), d.weights.data(), d.token_idx.size(), hidden,
             out_all.data(), &pool);
  for (int64_t i = 0; i < tokens * hidden; ++i) ASSERT_NEAR(out_all[i], want[i], 1e-5) << i;
}

}  // namespace
}  // namespace shardserve::cpu
