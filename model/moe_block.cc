#include "model/moe_block.h"

#include <algorithm>
#include <cmath>

#include "common/status_macros.h"

namespace shardserve {
namespace {

TensorView F32(float* data, int64_t rows, int64_t cols) {
  return TensorView::Cpu(data, DType::kF32, {rows, cols});
}

}  // namespace

absl::Status MoeBlock::RunExpert(const OpContext& ctx, const ExpertWeights& e, const TensorView& x,
                                 const TensorView& out) {
  const int64_t n = x.dim(0);
  const int64_t inter = e.gate.dim(0);
  if (static_cast<int64_t>(gate_.size()) < n * inter) {
    gate_.resize(n * inter);
    up_.resize(n * inter);
  }
  const TensorView gate = F32(gate_.data(), n, inter);
  const TensorView up = F32(up_.data(), n, inter);
  RETURN_IF_ERROR(ops::MatMul(ctx, x, e.gate, gate));
  RETURN_IF_ERROR(ops::MatMul(ctx, x, e.up, up));
  RETURN_IF_ERROR(ops::SwiGlu(ctx, gate, up, gate));
  return ops::MatMul(ctx, gate, e.down, out);
}

absl::Status MoeBlock::Route(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                             int32_t* expert_ids, float* expert_weights) {
  const ModelConfig& c = config_;
  const int64_t n = x.dim(0);
  const int64_t num_experts = c.num_experts;
  const int64_t k = c.num_experts_per_tok;
  router_logits_.resize(n * num_experts);
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.router, F32(router_logits_.data(), n, num_experts)));
  return ops::MoeTopK(ctx, F32(router_logits_.data(), n, num_experts), k, c.norm_topk_prob,
                      TensorView::Cpu(expert_ids, DType::kI32, {n, k}), F32(expert_weights, n, k));
}

absl::Status MoeBlock::ForwardExperts(const OpContext& ctx, const LayerWeights& w,
                                      const TensorView& x, const int32_t* expert_ids,
                                      const float* expert_weights, int64_t k,
                                      const TensorView& out) {
  const int64_t n = x.dim(0);
  const int64_t h = config_.hidden_size;
  for (int64_t e = 0; e < config_.num_experts; ++e) {
    if (w.experts[e].gate.data == nullptr) continue;  // another rank's expert
    rows_.clear();
    row_weights_.clear();
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        if (expert_ids[t * k + j] == e) {
          rows_.push_back(static_cast<int32_t>(t));
          row_weights_.push_back(expert_weights[t * k + j]);
        }
      }
    }
    const int64_t m = static_cast<int64_t>(rows_.size());
    if (m == 0) continue;
    gathered_.resize(m * h);
    out_.resize(m * h);
    for (int64_t i = 0; i < m; ++i) {
      std::copy_n(x.row<const float>(rows_[i]), h, gathered_.data() + i * h);
    }
    RETURN_IF_ERROR(
        RunExpert(ctx, w.experts[e], F32(gathered_.data(), m, h), F32(out_.data(), m, h)));
    for (int64_t i = 0; i < m; ++i) {
      float* dst = out.row<float>(rows_[i]);
      const float* src = out_.data() + i * h;
      const float wgt = row_weights_[i];
      for (int64_t j = 0; j < h; ++j) dst[j] += wgt * src[j];
    }
  }
  return absl::OkStatus();
}

absl::Status MoeBlock::ForwardShared(const OpContext& ctx, const LayerWeights& w,
                                     const TensorView& x, const TensorView& out) {
  if (w.shared_expert.gate.data == nullptr) return absl::OkStatus();
  const int64_t n = x.dim(0);
  const int64_t h = config_.hidden_size;
  out_.resize(n * h);
  shared_gate_.resize(n);
  RETURN_IF_ERROR(RunExpert(ctx, w.shared_expert, x, F32(out_.data(), n, h)));
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.shared_expert_gate, F32(shared_gate_.data(), n, 1)));
  for (int64_t t = 0; t < n; ++t) {
    const float g = 1.0f / (1.0f + std::exp(-shared_gate_[t]));
    float* dst = out.row<float>(t);
    const float* src = out_.data() + t * h;
    for (int64_t j = 0; j < h; ++j) dst[j] += g * src[j];
  }
  return absl::OkStatus();
}

absl::Status MoeBlock::Forward(const OpContext& ctx, const LayerWeights& w, const TensorView& x,
                               const TensorView& out) {
  const int64_t n = x.dim(0);
  const int64_t k = config_.num_experts_per_tok;
  expert_ids_.resize(n * k);
  expert_weights_.resize(n * k);
  RETURN_IF_ERROR(Route(ctx, w, x, expert_ids_.data(), expert_weights_.data()));
  RETURN_IF_ERROR(ForwardExperts(ctx, w, x, expert_ids_.data(), expert_weights_.data(), k, out));
  return ForwardShared(ctx, w, x, out);
}

}  // namespace shardserve
