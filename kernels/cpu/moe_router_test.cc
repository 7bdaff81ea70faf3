#include "kernels/cpu/moe_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

struct Choice {
  int expert;
  double weight;
};

// Softmax in double, then a stable sort by decreasing probability (ties: lower id first).
std::vector<Choice> Reference(const float* logits, int num_experts, int k, bool norm) {
  const double max = *std::max_element(logits, logits + num_experts);
  std::vector<double> p(num_experts);
  double sum = 0.0;
  for (int e = 0; e < num_experts; ++e) sum += (p[e] = std::exp(logits[e] - max));
  std::vector<int> order(num_experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  std::vector<Choice> top;
  double top_sum = 0.0;
  for (int i = 0; i < k; ++i) {
    top.push_back({order[i], p[order[i]] / sum});
    top_sum += p[order[i]] / sum;
  }
  if (norm) {
    for (Choice& c : top) c.weight /= top_sum;
  }
  return top;
}

void Check(const std::vector<float>& logits, int64_t tokens, int experts, int k, bool norm,
           ThreadPool* pool) {
  std::vector<int32_t> ids(tokens * k);
  std::vector<float> weights(tokens * k);
  MoeRouterTopK(logits.data(), tokens, experts, k, norm, ids.data(), weights.data(), pool);
  for (int64_t t = 0; t < tokens; ++t) {
    const auto want = Reference(logits.data() + t * experts, experts, k, norm);
    for (int i = 0; i < k; ++i) {
      ASSERT_EQ(ids[t * k + i], want[i].expert) << "token " << t << " choice " << i;
      ASSERT_NEAR(weights[t * k + i], want[i].weight, 1e-6 * want[i].weight + 1e-12);
    }
  }
}

TEST(MoeRouterTest, MixtralAndQwenShapes) {
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  struct Shape {
    int experts, k;
    bool norm;
  };
  // Mixtral 8x2 (normalised), Qwen2-MoE 60x4 (not), OLMoE 64x8 (not), Qwen3-MoE 128x8 (normalised).
  for (const Shape& s :
       {Shape{8, 2, true}, Shape{60, 4, false}, Shape{64, 8, false}, Shape{128, 8, true}}) {
    const int64_t tokens = 37;
    std::vector<float> logits(tokens * s.experts);
    for (float& x : logits) x = dist(gen);
    Check(logits, tokens, s.experts, s.k, s.norm, nullptr);
  }
}

TEST(MoeRouterTest, TiesGoToLowerExpertIds) {
  // Experts 1, 3, 4, 6 tie for the top; k = 3 keeps 1, 3, 4.
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, 2.0f, 2.0f, -1.0f, 2.0f, 0.5f};
  std::vector<int32_t> ids(3);
  std::vector<float> w(3);
  MoeRouterTopK(logits.data(), 1, 8, 3, false, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 4}));
  EXPECT_EQ(w[0], w[1]);
  EXPECT_EQ(w[1], w[2]);
  Check(logits, 1, 8, 3, true, nullptr);
  // All equal: the first k experts, each weight 1/k after renormalisation.
  const std::vector<float> flat(16, 0.25f);
  MoeRouterTopK(flat.data(), 1, 16, 3, true, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 2}));
  for (float x : w) EXPECT_NEAR(x, 1.0f / 3.0f, 1e-7f);
}

TEST(MoeRouterTest, KEqualsExpertsAndThreaded) {
  std::mt19937 gen(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> logits(500 * 64);
  for (float& x : logits) x = dist(gen);
  ThreadPool pool(3);
  Check(logits, 500, 64, 6, true, &pool);
  Check(logits, 500 * 8, 8, 8, false, &pool);
}

}  // namespace
}  // namespace shardserve::cpu
