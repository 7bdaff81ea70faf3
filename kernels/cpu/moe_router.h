// Top-k expert selection for Mixture-of-Experts layers: softmax over all experts, keep the k
// largest probabilities, optionally renormalise them to sum to 1.
//
// norm_topk_prob is true for Mixtral and Qwen3-MoE, false for Qwen2-MoE and OLMoE (the
// checkpoint's config.json says which).
//
//   MoeRouterTopK(logits, num_tokens, num_experts, /*k=*/2, /*norm_topk_prob=*/true, ids,
//                 weights);
#ifndef SHARDSERVE_KERNELS_CPU_MOE_ROUTER_H_
#define SHARDSERVE_KERNELS_CPU_MOE_ROUTER_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// logits:       [num_tokens, num_experts] router logits
// topk_ids:     [num_tokens, k] expert ids, by decreasing probability; equal probabilities are
//               ordered (and cut at k) by increasing expert id
// topk_weights: [num_tokens, k] their softmax probabilities, renormalised over the k when
//               norm_topk_prob
// REQUIRES: 1 <= k <= num_experts.
void MoeRouterTopK(const float* logits, int64_t num_tokens, int num_experts, int k,
                   bool norm_topk_prob, int32_t* topk_ids, float* topk_weights,
                   ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_MOE_ROUTER_H_
