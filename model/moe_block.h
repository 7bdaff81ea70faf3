// The mixture-of-experts MLP of a decoder layer: a softmax router picks the top-k experts of
// each token, each expert runs a SwiGLU MLP over the tokens routed to it (grouped, so an
// expert's weights are read once per step), and the weighted outputs are added to the residual.
// Qwen2-MoE adds a shared expert scaled by sigmoid(x . shared_expert_gate).
//
// Sharded (model/shard_weights.h): the router is replicated; a rank runs the experts whose views
// it holds (its expert-parallel share, or every expert's tensor-parallel column slice) and its
// slice of the shared expert, so `out` receives a partial sum that the caller all-reduces.
// Route, ForwardExperts and ForwardShared are Forward's three parts, for callers that move
// tokens between routing and the experts (the decoder's all-to-all expert-parallel mode).
//
// Owns its scratch buffers, so Forward is not thread-safe.
#ifndef SHARDSERVE_MODEL_MOE_BLOCK_H_
#define SHARDSERVE_MODEL_MOE_BLOCK_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/ops.h"
#include "model/layer_weights.h"
#include "model/model_config.h"

namespace shardserve {

class MoeBlock {
 public:
  explicit MoeBlock(const ModelConfig& config) : config_(config) {}

  // out[t, :] += MoE(x[t, :]) for every token t, summed over the experts `w` holds (those with
  // non-empty views) and its slice of the shared expert. x, out: [num_tokens, hidden] F32.
  absl::Status Forward(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                       const TensorView& out);

  // The router's top-k of every token of x [num_tokens, hidden]: expert_ids, expert_weights
  // [num_tokens, num_experts_per_tok].
  absl::Status Route(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                     int32_t* expert_ids, float* expert_weights);

  // out[t, :] += sum over j < k of expert_weights[t, j] * E(x[t, :]), E the expert
  // expert_ids[t, j], over the experts `w` holds; other ids (another rank's, or -1 for padding)
  // are skipped. x may be a strided view. expert_ids, expert_weights: [num_tokens, k].
  absl::Status ForwardExperts(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                              const int32_t* expert_ids, const float* expert_weights, int64_t k,
                              const TensorView& out);

  // out += the gated shared expert (its slice that `w` holds) of x; nothing without one.
  absl::Status ForwardShared(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                             const TensorView& out);

 private:
  // out [rows, hidden] = the SwiGLU MLP of e (its inter width is e.gate.dim(0)) over x.
  absl::Status RunExpert(const OpContext& ctx, const ExpertWeights& e, const TensorView& x,
                         const TensorView& out);

  const ModelConfig config_;
  std::vector<float> router_logits_;   // [num_tokens, num_experts]
  std::vector<int32_t> expert_ids_;    // [num_tokens, k]
  std::vector<float> expert_weights_;  // [num_tokens, k]
  std::vector<int32_t> rows_;          // token rows routed to the current expert
  std::vector<float> row_weights_;     // their router weights
  std::vector<float> gathered_;        // [rows, hidden]
  std::vector<float> gate_;            // [rows, inter]
  std::vector<float> up_;              // [rows, inter]
  std::vector<float> out_;             // [rows, hidden]
  std::vector<float> shared_gate_;     // [num_tokens, 1]
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_MOE_BLOCK_H_
