#include "model/decoder.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"

namespace shardserve {
namespace {

TensorView F32(float* data, int64_t rows, int64_t cols) {
  return TensorView::Cpu(data, DType::kF32, {rows, cols});
}

std::string LayerName(int64_t layer, const char* suffix) {
  return absl::StrCat("blk.", layer, ".", suffix);
}

absl::StatusOr<TensorView> GetWithShape(const WeightSource& weights, const std::string& name,
                                        std::initializer_list<int64_t> shape) {
  ASSIGN_OR_RETURN(TensorView t, weights.Get(name));
  bool ok = t.ndim == static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) ok = ok && t.shape[i++] == d;
  if (!ok) {
    TensorView expected;
    expected.ndim = 0;
    for (int64_t d : shape) expected.shape[expected.ndim++] = d;
    return absl::InvalidArgumentError(absl::StrCat(weights.path(), ": tensor ", name, " has shape ",
                                                   t.ShapeString(), ", expected ",
                                                   expected.ShapeString()));
  }
  return t;
}

// Copies a small weight (norm, bias) of any dtype into an owned F32 vector.
absl::StatusOr<OwnedVector> GetVector(const WeightSource& weights, const std::string& name,
                                      int64_t n) {
  ASSIGN_OR_RETURN(TensorView t, weights.Get(name));
  if (t.numel() != n) {
    return absl::InvalidArgumentError(absl::StrCat(weights.path(), ": tensor ", name, " has ",
                                                   t.numel(), " elements, expected ", n));
  }
  OwnedVector v;
  v.data.resize(n);
  TensorView table = t;
  table.ndim = 2;
  table.shape = {1, n, 0, 0};
  table.row_stride_bytes = 0;
  const int32_t zero = 0;
  ThreadPool inline_pool(1);
  RETURN_IF_ERROR(ops::Embedding(OpContext::Cpu(&inline_pool), table, absl::MakeConstSpan(&zero, 1),
                                 F32(v.data.data(), 1, n)));
  return v;
}

RopeParams MakeRope(const ModelConfig& c) {
  RopeParams r;
  r.style = c.rope_style == RopeStyle::kInterleaved ? RopeParams::Style::kInterleaved
                                                    : RopeParams::Style::kNeox;
  r.theta = c.rope_theta;
  r.rotary_dim = c.head_dim;
  switch (c.rope_scaling.type) {
    case RopeScaling::Type::kNone:
      r.scaling = RopeParams::Scaling::kNone;
      break;
    case RopeScaling::Type::kLinear:
      r.scaling = RopeParams::Scaling::kLinear;
      break;
    case RopeScaling::Type::kLlama3:
      r.scaling = RopeParams::Scaling::kLlama3;
      break;
  }
  r.factor = c.rope_scaling.factor;
  r.low_freq_factor = c.rope_scaling.low_freq_factor;
  r.high_freq_factor = c.rope_scaling.high_freq_factor;
  r.original_max_position = c.rope_scaling.original_max_position;
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Create(const WeightSource* weights) {
  std::unique_ptr<Decoder> d(new Decoder(weights->config()));
  RETURN_IF_ERROR(d->BindWeights(*weights));
  return d;
}

absl::Status Decoder::BindWeights(const WeightSource& w) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  if (w.Has("rope_freqs")) {
    // llama.cpp stores Llama 3.1-style RoPE scaling as per-dimension frequency factors.
    return absl::UnimplementedError(absl::StrCat(
        w.path(), ": per-dimension RoPE frequency factors (tensor rope_freqs) are not supported"));
  }
  rope_ = MakeRope(c);
  ASSIGN_OR_RETURN(token_embd_, GetWithShape(w, "token_embd", {c.vocab_size, h}));
  if (w.Has("output")) {
    ASSIGN_OR_RETURN(lm_head_, GetWithShape(w, "output", {c.vocab_size, h}));
  } else {
    lm_head_ = token_embd_;
  }
  ASSIGN_OR_RETURN(output_norm_, GetVector(w, "output_norm", h));
  weight_bytes_per_token_ = lm_head_.nbytes();

  layers_.resize(c.num_layers);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& lw = layers_[l];
    auto name = [&](const char* s) { return LayerName(l, s); };
    ASSIGN_OR_RETURN(lw.attn_norm, GetVector(w, name("attn_norm"), h));
    ASSIGN_OR_RETURN(lw.q, GetWithShape(w, name("attn_q"), {c.q_dim(), h}));
    ASSIGN_OR_RETURN(lw.k, GetWithShape(w, name("attn_k"), {c.kv_dim(), h}));
    ASSIGN_OR_RETURN(lw.v, GetWithShape(w, name("attn_v"), {c.kv_dim(), h}));
    ASSIGN_OR_RETURN(lw.o, GetWithShape(w, name("attn_output"), {h, c.q_dim()}));
    if (c.attention_bias) {
      ASSIGN_OR_RETURN(lw.q_bias, GetVector(w, name("attn_q.bias"), c.q_dim()));
      ASSIGN_OR_RETURN(lw.k_bias, GetVector(w, name("attn_k.bias"), c.kv_dim()));
      ASSIGN_OR_RETURN(lw.v_bias, GetVector(w, name("attn_v.bias"), c.kv_dim()));
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      ASSIGN_OR_RETURN(lw.q_norm, GetVector(w, name("attn_q_norm"), c.head_dim));
      ASSIGN_OR_RETURN(lw.k_norm, GetVector(w, name("attn_k_norm"), c.head_dim));
    } else if (c.qk_norm == QkNorm::kFull) {
      ASSIGN_OR_RETURN(lw.q_norm, GetVector(w, name("attn_q_norm"), c.q_dim()));
      ASSIGN_OR_RETURN(lw.k_norm, GetVector(w, name("attn_k_norm"), c.kv_dim()));
    }
    ASSIGN_OR_RETURN(lw.ffn_norm, GetVector(w, name("ffn_norm"), h));
    weight_bytes_per_token_ += lw.q.nbytes() + lw.k.nbytes() + lw.v.nbytes() + lw.o.nbytes();
    if (!c.is_moe()) {
      ASSIGN_OR_RETURN(lw.gate, GetWithShape(w, name("ffn_gate"), {c.intermediate_size, h}));
      ASSIGN_OR_RETURN(lw.up, GetWithShape(w, name("ffn_up"), {c.intermediate_size, h}));
      ASSIGN_OR_RETURN(lw.down, GetWithShape(w, name("ffn_down"), {h, c.intermediate_size}));
      weight_bytes_per_token_ += lw.gate.nbytes() + lw.up.nbytes() + lw.down.nbytes();
      continue;
    }
    const int64_t mi = c.moe_intermediate_size;
    ASSIGN_OR_RETURN(lw.router, GetWithShape(w, name("ffn_gate_inp"), {c.num_experts, h}));
    lw.experts.resize(c.num_experts);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      ExpertWeights& ew = lw.experts[e];
      ASSIGN_OR_RETURN(ew.gate, GetWithShape(w, absl::StrCat(name("ffn_gate"), ".", e), {mi, h}));
      ASSIGN_OR_RETURN(ew.up, GetWithShape(w, absl::StrCat(name("ffn_up"), ".", e), {mi, h}));
      ASSIGN_OR_RETURN(ew.down, GetWithShape(w, absl::StrCat(name("ffn_down"), ".", e), {h, mi}));
    }
    weight_bytes_per_token_ += lw.router.nbytes() + c.num_experts_per_tok *
                                                        (lw.experts[0].gate.nbytes() * 2 +
                                                         lw.experts[0].down.nbytes());
    if (c.shared_expert_intermediate_size > 0) {
      const int64_t si = c.shared_expert_intermediate_size;
      ExpertWeights& s = lw.shared_expert;
      ASSIGN_OR_RETURN(s.gate, GetWithShape(w, name("ffn_gate_shexp"), {si, h}));
      ASSIGN_OR_RETURN(s.up, GetWithShape(w, name("ffn_up_shexp"), {si, h}));
      ASSIGN_OR_RETURN(s.down, GetWithShape(w, name("ffn_down_shexp"), {h, si}));
      ASSIGN_OR_RETURN(lw.shared_expert_gate,
                       GetWithShape(w, name("ffn_gate_inp_shexp"), {1, h}));
      weight_bytes_per_token_ += s.gate.nbytes() * 2 + s.down.nbytes();
    }
  }
  if (c.is_moe()) moe_ = std::make_unique<MoeBlock>(c);
  return absl::OkStatus();
}

void Decoder::EnsureScratch(int64_t n) {
  if (n <= scratch_tokens_) return;
  const ModelConfig& c = config_;
  scratch_tokens_ = n;
  hidden_.resize(n * c.hidden_size);
  normed_.resize(n * c.hidden_size);
  q_.resize(n * c.q_dim());
  k_.resize(n * c.kv_dim());
  v_.resize(n * c.kv_dim());
  attn_out_.resize(n * c.q_dim());
  proj_.resize(n * c.hidden_size);
  if (!c.is_moe()) {
    gate_.resize(n * c.intermediate_size);
    up_.resize(n * c.intermediate_size);
  }
}

absl::Status Decoder::Attention(const OpContext& ctx, const LayerWeights& w,
                                const ForwardBatch& batch, const KvLayerView& kv) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  const TensorView x = F32(normed_.data(), n, c.hidden_size);
  const TensorView q = F32(q_.data(), n, c.q_dim());
  const TensorView k = F32(k_.data(), n, c.kv_dim());
  const TensorView v = F32(v_.data(), n, c.kv_dim());
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.q, q));
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.k, k));
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.v, v));
  if (!w.q_bias.empty()) {
    RETURN_IF_ERROR(ops::AddBias(ctx, q, w.q_bias.view()));
    RETURN_IF_ERROR(ops::AddBias(ctx, k, w.k_bias.view()));
    RETURN_IF_ERROR(ops::AddBias(ctx, v, w.v_bias.view()));
  }
  if (c.qk_norm == QkNorm::kPerHead) {
    const TensorView qh = F32(q_.data(), n * c.num_heads, c.head_dim);
    const TensorView kh = F32(k_.data(), n * c.num_kv_heads, c.head_dim);
    RETURN_IF_ERROR(ops::RmsNorm(ctx, qh, w.q_norm.view(), c.rms_norm_eps, qh));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, kh, w.k_norm.view(), c.rms_norm_eps, kh));
  } else if (c.qk_norm == QkNorm::kFull) {
    RETURN_IF_ERROR(ops::RmsNorm(ctx, q, w.q_norm.view(), c.rms_norm_eps, q));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, k, w.k_norm.view(), c.rms_norm_eps, k));
  }
  const TensorView q3 = TensorView::Cpu(q_.data(), DType::kF32, {n, c.num_heads, c.head_dim});
  const TensorView k3 = TensorView::Cpu(k_.data(), DType::kF32, {n, c.num_kv_heads, c.head_dim});
  const TensorView v3 = TensorView::Cpu(v_.data(), DType::kF32, {n, c.num_kv_heads, c.head_dim});
  RETURN_IF_ERROR(ops::Rope(ctx, rope_, batch.positions, q3, k3));
  RETURN_IF_ERROR(ops::WriteKv(ctx, kv, batch.slot_mapping, k3, v3));
  const TensorView out3 =
      TensorView::Cpu(attn_out_.data(), DType::kF32, {n, c.num_heads, c.head_dim});
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  RETURN_IF_ERROR(ops::PagedAttention(ctx, kv, batch.attention, q3, scale, out3));
  const TensorView proj = F32(proj_.data(), n, c.hidden_size);
  RETURN_IF_ERROR(ops::MatMul(ctx, F32(attn_out_.data(), n, c.q_dim()), w.o, proj));
  return ops::Add(ctx, F32(hidden_.data(), n, c.hidden_size), proj);
}

absl::Status Decoder::DenseMlp(const OpContext& ctx, const LayerWeights& w, int64_t n) {
  const ModelConfig& c = config_;
  const TensorView x = F32(normed_.data(), n, c.hidden_size);
  const TensorView gate = F32(gate_.data(), n, c.intermediate_size);
  const TensorView up = F32(up_.data(), n, c.intermediate_size);
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.gate, gate));
  RETURN_IF_ERROR(ops::MatMul(ctx, x, w.up, up));
  RETURN_IF_ERROR(ops::SwiGlu(ctx, gate, up, gate));
  const TensorView proj = F32(proj_.data(), n, c.hidden_size);
  RETURN_IF_ERROR(ops::MatMul(ctx, gate, w.down, proj));
  return ops::Add(ctx, F32(hidden_.data(), n, c.hidden_size), proj);
}

absl::Status Decoder::Forward(const OpContext& ctx, const ForwardBatch& batch,
                              absl::Span<const KvLayerView> kv, float* logits) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  if (n == 0) return absl::InvalidArgumentError("empty batch");
  if (static_cast<int64_t>(kv.size()) != c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("got KV views for ", kv.size(), " layers, model has ", c.num_layers));
  }
  if (static_cast<int64_t>(batch.positions.size()) != n ||
      static_cast<int64_t>(batch.slot_mapping.size()) != n) {
    return absl::InvalidArgumentError("positions and slot_mapping must have one entry per token");
  }
  for (int32_t id : batch.token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  EnsureScratch(n);
  const TensorView hidden = F32(hidden_.data(), n, c.hidden_size);
  const TensorView normed = F32(normed_.data(), n, c.hidden_size);
  RETURN_IF_ERROR(ops::Embedding(ctx, token_embd_, batch.token_ids, hidden));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    RETURN_IF_ERROR(ops::RmsNorm(ctx, hidden, w.attn_norm.view(), c.rms_norm_eps, normed));
    RETURN_IF_ERROR(Attention(ctx, w, batch, kv[l]));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, hidden, w.ffn_norm.view(), c.rms_norm_eps, normed));
    if (c.is_moe()) {
      RETURN_IF_ERROR(moe_->Forward(ctx, w, normed, hidden));
    } else {
      RETURN_IF_ERROR(DenseMlp(ctx, w, n));
    }
  }
  const int64_t num_out = static_cast<int64_t>(batch.logits_rows.size());
  if (num_out == 0) return absl::OkStatus();
  out_rows_.resize(num_out * c.hidden_size);
  for (int64_t i = 0; i < num_out; ++i) {
    const int32_t r = batch.logits_rows[i];
    if (r < 0 || r >= n) return absl::InvalidArgumentError("logits row outside the batch");
    std::copy_n(hidden_.data() + r * c.hidden_size, c.hidden_size,
                out_rows_.data() + i * c.hidden_size);
  }
  const TensorView rows = F32(out_rows_.data(), num_out, c.hidden_size);
  RETURN_IF_ERROR(ops::RmsNorm(ctx, rows, output_norm_.view(), c.rms_norm_eps, rows));
  return ops::MatMul(ctx, rows, lm_head_, F32(logits, num_out, c.vocab_size));
}

}  // namespace shardserve
