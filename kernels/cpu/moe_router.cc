#include "kernels/cpu/moe_router.h"

#include <algorithm>
#include <vector>

#include "glog/logging.h"
#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

void RouteToken(const float* logits, int num_experts, int k, bool norm_topk_prob, float* probs,
                int32_t* ids, float* weights) {
  float max = logits[0];
  for (int e = 1; e < num_experts; ++e) max = std::max(max, logits[e]);
  double sum = 0.0;
  for (int e = 0; e < num_experts; ++e) {
    probs[e] = ExpF(logits[e] - max);
    sum += probs[e];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int e = 0; e < num_experts; ++e) probs[e] *= inv_sum;

  // Insertion into a sorted list of k: k is small (2..8) and experts are visited by increasing
  // id, so a strict comparison keeps the lower id first among equal probabilities.
  int count = 0;
  for (int e = 0; e < num_experts; ++e) {
    const float p = probs[e];
    if (count == k && !(p > weights[k - 1])) continue;
    int pos = count < k ? count++ : k - 1;
    while (pos > 0 && p > weights[pos - 1]) {
      weights[pos] = weights[pos - 1];
      ids[pos] = ids[pos - 1];
      --pos;
    }
    weights[pos] = p;
    ids[pos] = e;
  }
  if (norm_topk_prob) {
    float top_sum = 0.0f;
    for (int i = 0; i < k; ++i) top_sum += weights[i];
    for (int i = 0; i < k; ++i) weights[i] /= top_sum;
  }
}

}  // namespace

void MoeRouterTopK(const float* logits, int64_t num_tokens, int num_experts, int k,
                   bool norm_topk_prob, int32_t* topk_ids, float* topk_weights, ThreadPool* pool) {
  CHECK(k >= 1 && k <= num_experts) << "k " << k << " num_experts " << num_experts;
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<float> probs(num_experts);
    for (int64_t t = begin; t < end; ++t) {
      RouteToken(logits + t * num_experts, num_experts, k, norm_topk_prob, probs.data(),
                 topk_ids + t * k, topk_weights + t * k);
    }
  };
  if (pool == nullptr || num_tokens * num_experts < (1 << 14)) {
    run(0, num_tokens);
  } else {
    pool->ParallelFor(num_tokens, 16, run);
  }
}

}  // namespace shardserve::cpu
