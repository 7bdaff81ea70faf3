// Grouping of routed tokens by expert, and the gather / weighted scatter-add around the
// per-expert matmuls of a Mixture-of-Experts layer.
//
//   MoeDispatch d;
//   BuildMoeDispatch(topk_ids, topk_weights, num_tokens, k, 0, num_experts, &d);
//   for (int e = 0; e < num_experts; ++e) {
//     const int32_t begin = d.expert_indptr[e], n = d.expert_indptr[e + 1] - begin;
//     GatherRows(x, hidden, d.token_idx.data() + begin, n, xs);         // [n, hidden]
//     ... expert MLP: xs -> ys [n, hidden] ...
//     MoeCombine(ys, d.token_idx.data() + begin, d.weights.data() + begin, n, hidden, out);
//   }
//
// With expert parallelism each rank passes its own [expert_begin, expert_end) and sees only the
// assignments to its experts; the ranks' outputs are then summed (all-reduce).
#ifndef SHARDSERVE_KERNELS_CPU_MOE_DISPATCH_H_
#define SHARDSERVE_KERNELS_CPU_MOE_DISPATCH_H_

#include <cstdint>
#include <vector>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// The (token, choice) pairs routed to each expert, in CSR form. Entries of local expert e
// (expert id expert_begin + e) are [expert_indptr[e], expert_indptr[e + 1]), by increasing
// token index.
struct MoeDispatch {
  std::vector<int32_t> expert_indptr;  // [num_local_experts + 1]
  std::vector<int32_t> token_idx;      // [num_entries] row of the token in the batch
  std::vector<int32_t> choice;         // [num_entries] which of the token's k choices (0..k-1)
  std::vector<float> weights;          // [num_entries] routing weight of that choice
};

// topk_ids, topk_weights: [num_tokens, k] (from MoeRouterTopK). Ids outside
// [expert_begin, expert_end) are left out (experts of other ranks). Reuses dispatch's storage.
void BuildMoeDispatch(const int32_t* topk_ids, const float* topk_weights, int64_t num_tokens, int k,
                      int expert_begin, int expert_end, MoeDispatch* dispatch);

// out[i] = x[rows[i]] for i < n.
// x: [*, cols], rows: [n], out: [n, cols].
void GatherRows(const float* x, int64_t cols, const int32_t* rows, int64_t n, float* out,
                ThreadPool* pool = nullptr);

// out[token_idx[i]] += weights[i] * expert_out[i] for i < n, in order of i (so the result does
// not depend on the thread count). token_idx may repeat.
// expert_out: [n, hidden], token_idx: [n], weights: [n], out: [num_tokens, hidden].
void MoeCombine(const float* expert_out, const int32_t* token_idx, const float* weights, int64_t n,
                int64_t hidden, float* out, ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_MOE_DISPATCH_H_
