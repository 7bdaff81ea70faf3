// The weights of one decoder layer, as views into a WeightSource (not owned), plus the small
// vectors (norms, biases) converted to F32 and owned here.
//
// On a tensor-parallel rank each view is the rank's slice (model/shard_weights.h): shapes below
// are for the whole model, with q_dim, kv_dim, inter, moe_inter and shared_inter replaced by
// the rank's share (its heads times head_dim, its MLP and expert columns).
#ifndef SHARDSERVE_MODEL_LAYER_WEIGHTS_H_
#define SHARDSERVE_MODEL_LAYER_WEIGHTS_H_

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace shardserve {

// A small F32 vector owned by the model (norm weights, biases), with a view onto it.
struct OwnedVector {
  std::vector<float> data;
  TensorView view() const {
    return TensorView::Cpu(data.data(), DType::kF32, {static_cast<int64_t>(data.size())});
  }
  bool empty() const { return data.empty(); }
};

struct ExpertWeights {
  TensorView gate;  // [moe_inter, hidden]
  TensorView up;    // [moe_inter, hidden]
  TensorView down;  // [hidden, moe_inter]
};

struct LayerWeights {
  OwnedVector attn_norm;               // [hidden]
  TensorView q;                        // [q_dim, hidden]
  TensorView k;                        // [kv_dim, hidden]
  TensorView v;                        // [kv_dim, hidden]
  TensorView o;                        // [hidden, q_dim]
  OwnedVector q_bias, k_bias, v_bias;  // [q_dim], [kv_dim], [kv_dim]; empty when absent
  OwnedVector q_norm, k_norm;          // [head_dim] or [q_dim]/[kv_dim]; empty when absent

  OwnedVector ffn_norm;  // [hidden]
  // Dense MLP.
  TensorView gate;  // [inter, hidden]
  TensorView up;    // [inter, hidden]
  TensorView down;  // [hidden, inter]
  // Mixture of experts.
  TensorView router;                   // [num_experts, hidden]
  std::vector<ExpertWeights> experts;  // [num_experts]; another rank's experts are empty
  ExpertWeights shared_expert;         // Qwen2-MoE; data == nullptr when absent
  TensorView shared_expert_gate;       // [1, hidden]
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_LAYER_WEIGHTS_H_
