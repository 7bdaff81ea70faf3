#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

TensorView F32(float* data, int64_t rows, int64_t cols) {
  return TensorView::Cpu(data, DType::kF32, {rows, cols});
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

absl::Status CheckComm(const Communicator* comm, int size, int rank, const char* what) {
  if (size == 1) return absl::OkStatus();
  if (comm == nullptr || comm->world_size() != size || comm->rank() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ", what, " communicator must have ", size, " ranks with this rank at ", rank,
        comm == nullptr
            ? ", got none"
            : absl::StrCat(", got ", comm->world_size(), " ranks, rank ", comm->rank())));
  }
  return absl::OkStatus();
}

}  // namespace

Decoder::Decoder(const ModelConfig& config, const ShardSpec& shard, const DecoderComms& comms)
    : config_(config),
      shard_(shard),
      comms_(comms),
      num_q_heads_(shard.q_heads.size()),
      num_kv_heads_(shard.kv_heads.size()),
      q_dim_(shard.q_heads.size() * config.head_dim),
      kv_dim_(shard.kv_heads.size() * config.head_dim),
      inter_(shard.mlp_columns.size()),
      rope_(MakeRope(config)) {}

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Create(const WeightSource* weights) {
  ASSIGN_OR_RETURN(ShardSpec whole, MakeShardSpec(weights->config(), ParallelLayout{}, 0, 0));
  return Create(weights, whole, DecoderComms{});
}

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Create(const WeightSource* weights,
                                                         const ShardSpec& shard,
                                                         const DecoderComms& comms) {
  const ModelConfig& c = weights->config();
  RETURN_IF_ERROR(ValidateLayout(c, shard.layout));
  ASSIGN_OR_RETURN(ShardSpec expected,
                   MakeShardSpec(c, shard.layout, shard.tp_rank, shard.pp_rank));
  if (expected.DebugString() != shard.DebugString()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shard ", shard.DebugString(), " is not MakeShardSpec's ", expected.DebugString()));
  }
  RETURN_IF_ERROR(CheckComm(comms.tp, shard.layout.tp_size, shard.tp_rank, "tensor-parallel"));
  RETURN_IF_ERROR(CheckComm(comms.pp, shard.layout.pp_size, shard.pp_rank, "pipeline"));
  if (comms.moe_combine == MoeCombine::kAllToAll && shard.layout.tp_size > 1 &&
      shard.layout.ep_size != shard.layout.tp_size) {
    return absl::InvalidArgumentError(absl::StrCat("all-to-all MoE needs ep_size == tp_size, got ",
                                                   shard.layout.ep_size, " and ",
                                                   shard.layout.tp_size));
  }
  std::unique_ptr<Decoder> d(new Decoder(c, shard, comms));
  ASSIGN_OR_RETURN(d->weights_, ShardWeights::Bind(*weights, shard));
  if (c.is_moe()) d->moe_ = std::make_unique<MoeBlock>(c);
  return d;
}

void Decoder::EnsureScratch(int64_t n) {
  if (n <= scratch_tokens_) return;
  const ModelConfig& c = config_;
  scratch_tokens_ = n;
  hidden_.resize(n * c.hidden_size);
  normed_.resize(n * c.hidden_size);
  q_.resize(n * q_dim_);
  k_.resize(n * kv_dim_);
  v_.resize(n * kv_dim_);
  attn_out_.resize(n * q_dim_);
  proj_.resize(n * c.hidden_size);
  sum_sq_.resize(n * 2);
  if (!c.is_moe()) {
    gate_.resize(n * inter_);
  }
}

absl::Status Decoder::Embed(const OpContext& ctx, const ForwardBatch& batch) {
  const int64_t n = batch.num_tokens();
  const int64_t h = config_.hidden_size;
  const TensorView& table = weights_->token_embd();
  if (shard_.layout.tp_size == 1) {
    return ops::Embedding(ctx, table, batch.token_ids, F32(hidden_.data(), n, h));
  }
  // Vocab-parallel: each token's row lives on one rank; the others contribute zeros.
  std::fill_n(hidden_.data(), n * h, 0.0f);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = batch.token_ids[t];
    if (id < shard_.vocab.begin || id >= shard_.vocab.end) continue;
    const int32_t local = static_cast<int32_t>(id - shard_.vocab.begin);
    RETURN_IF_ERROR(ops::Embedding(ctx, table, absl::MakeConstSpan(&local, 1),
                                   F32(hidden_.data() + t * h, 1, h)));
  }
  return comms_.tp->AllReduceSum(F32(hidden_.data(), n, h));
}

absl::Status Decoder::ShardedFullQkNorm(const LayerWeights& w, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    double sq = 0, sk = 0;
    for (int64_t j = 0; j < q_dim_; ++j) sq += double{q_[t * q_dim_ + j]} * q_[t * q_dim_ + j];
    for (int64_t j = 0; j < kv_dim_; ++j) sk += double{k_[t * kv_dim_ + j]} * k_[t * kv_dim_ + j];
    sum_sq_[2 * t] = static_cast<float>(sq);
    sum_sq_[2 * t + 1] = static_cast<float>(sk);
  }
  RETURN_IF_ERROR(comms_.tp->AllReduceSum(F32(sum_sq_.data(), n, 2)));
  const float eps = config_.rms_norm_eps;
  for (int64_t t = 0; t < n; ++t) {
    const float rq = 1.0f / std::sqrt(sum_sq_[2 * t] / config_.q_dim() + eps);
    const float rk = 1.0f / std::sqrt(sum_sq_[2 * t + 1] / config_.kv_dim() + eps);
    for (int64_t j = 0; j < q_dim_; ++j) q_[t * q_dim_ + j] *= rq * w.q_norm.data[j];
    for (int64_t j = 0; j < kv_dim_; ++j) k_[t * kv_dim_ + j] *= rk * w.k_norm.data[j];
  }
  return absl::OkStatus();
}

absl::Status Decoder::Attention(const OpContext& ctx, const LayerWeights& w,
                                const ForwardBatch& batch, const KvLayerView& kv) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  const TensorView x = F32(normed_.data(), n, c.hidden_size);
  const TensorView q = F32(q_.data(), n, q_dim_);
  const TensorView k = F32(k_.data(), n, kv_dim_);
  const TensorView v = F32(v_.data(), n, kv_dim_);
  // One op for the three projections: x is quantized once and a decode batch pays for one
  // parallel job instead of three (the outputs are the same bits as three MatMuls).
  const TensorView qkv_w[] = {w.q, w.k, w.v};
  const TensorView qkv_y[] = {q, k, v};
  RETURN_IF_ERROR(ops::MatMulMulti(ctx, x, qkv_w, qkv_y));
  if (!w.q_bias.empty()) {
    RETURN_IF_ERROR(ops::AddBias(ctx, q, w.q_bias.view()));
    RETURN_IF_ERROR(ops::AddBias(ctx, k, w.k_bias.view()));
    RETURN_IF_ERROR(ops::AddBias(ctx, v, w.v_bias.view()));
  }
  if (c.qk_norm == QkNorm::kPerHead) {
    const TensorView qh = F32(q_.data(), n * num_q_heads_, c.head_dim);
    const TensorView kh = F32(k_.data(), n * num_kv_heads_, c.head_dim);
    RETURN_IF_ERROR(ops::RmsNorm(ctx, qh, w.q_norm.view(), c.rms_norm_eps, qh));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, kh, w.k_norm.view(), c.rms_norm_eps, kh));
  } else if (c.qk_norm == QkNorm::kFull && shard_.layout.tp_size > 1) {
    RETURN_IF_ERROR(ShardedFullQkNorm(w, n));
  } else if (c.qk_norm == QkNorm::kFull) {
    RETURN_IF_ERROR(ops::RmsNorm(ctx, q, w.q_norm.view(), c.rms_norm_eps, q));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, k, w.k_norm.view(), c.rms_norm_eps, k));
  }
  const TensorView q3 = TensorView::Cpu(q_.data(), DType::kF32, {n, num_q_heads_, c.head_dim});
  const TensorView k3 = TensorView::Cpu(k_.data(), DType::kF32, {n, num_kv_heads_, c.head_dim});
  const TensorView v3 = TensorView::Cpu(v_.data(), DType::kF32, {n, num_kv_heads_, c.head_dim});
  RETURN_IF_ERROR(ops::Rope(ctx, rope_, batch.positions, q3, k3));
  RETURN_IF_ERROR(ops::WriteKv(ctx, kv, batch.slot_mapping, k3, v3));
  const TensorView out3 =
      TensorView::Cpu(attn_out_.data(), DType::kF32, {n, num_q_heads_, c.head_dim});
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  RETURN_IF_ERROR(ops::PagedAttention(ctx, kv, batch.attention, q3, scale, out3));
  const TensorView proj = F32(proj_.data(), n, c.hidden_size);
  RETURN_IF_ERROR(ops::MatMul(ctx, F32(attn_out_.data(), n, q_dim_), w.o, proj));
  return ReduceIntoResidual(ctx, n);
}

absl::Status Decoder::DenseMlp(const OpContext& ctx, const LayerWeights& w, int64_t n) {
  const ModelConfig& c = config_;
  const TensorView x = F32(normed_.data(), n, c.hidden_size);
  const TensorView gate = F32(gate_.data(), n, inter_);
  // gate and up and the SwiGLU between them in one job, each run of columns combined while it
  // is in the computing thread's cache (the same bits as two MatMuls and SwiGlu).
  RETURN_IF_ERROR(ops::MatMulSwiGlu(ctx, x, w.gate, w.up, gate));
  RETURN_IF_ERROR(ops::MatMul(ctx, gate, w.down, F32(proj_.data(), n, c.hidden_size)));
  return ReduceIntoResidual(ctx, n);
}

absl::Status Decoder::Moe(const OpContext& ctx, const LayerWeights& w, int64_t n) {
  const int64_t h = config_.hidden_size;
  const TensorView x = F32(normed_.data(), n, h);
  if (shard_.layout.tp_size == 1) return moe_->Forward(ctx, w, x, F32(hidden_.data(), n, h));
  if (comms_.moe_combine == MoeCombine::kAllToAll) return MoeAllToAll(ctx, w, n);
  std::fill_n(proj_.data(), n * h, 0.0f);
  RETURN_IF_ERROR(moe_->Forward(ctx, w, x, F32(proj_.data(), n, h)));
  return ReduceIntoResidual(ctx, n);
}

absl::Status Decoder::MoeAllToAll(const OpContext& ctx, const LayerWeights& w, int64_t n) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  const int64_t k = c.num_experts_per_tok;
  const int tp = shard_.layout.tp_size;
  const int me = shard_.tp_rank;
  const IndexRange mine = EvenSplit(n, tp, me);
  const int64_t per_rank = EvenSplit(n, tp, 0).size();
  a2a_ids_.resize(per_rank * k);
  a2a_weights_.resize(per_rank * k);
  if (mine.size() > 0) {
    RETURN_IF_ERROR(moe_->Route(ctx, w, F32(normed_.data() + mine.begin * h, mine.size(), h),
                                a2a_ids_.data(), a2a_weights_.data()));
  }
  // Rank r holds experts EvenSplit(num_experts, tp, r) (ep_size == tp_size).
  auto owner = [&](int32_t e) {
    int r = 0;
    while (e >= EvenSplit(c.num_experts, tp, r).end) ++r;
    return r;
  };
  std::vector<int32_t> sent(tp, 0);
  for (int64_t p = 0; p < mine.size() * k; ++p) ++sent[owner(a2a_ids_[p])];
  a2a_counts_.resize(tp * tp);
  RETURN_IF_ERROR(comms_.tp->AllGather(TensorView::Cpu(sent.data(), DType::kI32, {1, tp}),
                                       TensorView::Cpu(a2a_counts_.data(), DType::kI32, {tp, tp})));
  // NOTES: AllToAll needs equal blocks, so every pair of ranks uses the largest count.
  const int64_t cap =
      std::max<int64_t>(1, *std::max_element(a2a_counts_.begin(), a2a_counts_.end()));
  const int64_t width = h + 1;
  a2a_send_.assign(tp * cap * width, 0.0f);
  a2a_pair_token_.resize(tp * cap);
  a2a_pair_weight_.resize(tp * cap);
  std::fill(sent.begin(), sent.end(), 0);
  for (int64_t t = 0; t < mine.size(); ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = a2a_ids_[t * k + j];
      const int r = owner(e);
      const int64_t p = r * cap + sent[r]++;
      float* row = a2a_send_.data() + p * width;
      std::copy_n(normed_.data() + (mine.begin + t) * h, h, row);
      std::memcpy(row + h, &e, sizeof(e));
      a2a_pair_token_[p] = static_cast<int32_t>(t);
      a2a_pair_weight_[p] = a2a_weights_[t * k + j];
    }
  }
  a2a_recv_.resize(tp * cap * width);
  RETURN_IF_ERROR(comms_.tp->AllToAll(F32(a2a_send_.data(), tp * cap, width),
                                      F32(a2a_recv_.data(), tp * cap, width)));
  // Run this rank's experts over the pairs it received, one row per pair, unweighted.
  a2a_recv_ids_.assign(tp * cap, -1);
  a2a_ones_.assign(tp * cap, 1.0f);
  for (int src = 0; src < tp; ++src) {
    for (int64_t i = 0; i < a2a_counts_[src * tp + me]; ++i) {
      const int64_t p = src * cap + i;
      std::memcpy(&a2a_recv_ids_[p], a2a_recv_.data() + p * width + h, sizeof(int32_t));
    }
  }
  TensorView received = F32(a2a_recv_.data(), tp * cap, h);
  received.row_stride_bytes = width * static_cast<int64_t>(sizeof(float));
  a2a_expert_out_.assign(tp * cap * h, 0.0f);
  a2a_returned_.resize(tp * cap * h);
  RETURN_IF_ERROR(moe_->ForwardExperts(ctx, w, received, a2a_recv_ids_.data(), a2a_ones_.data(), 1,
                                       F32(a2a_expert_out_.data(), tp * cap, h)));
  RETURN_IF_ERROR(comms_.tp->AllToAll(F32(a2a_expert_out_.data(), tp * cap, h),
                                      F32(a2a_returned_.data(), tp * cap, h)));
  // Weighted sum of this slice's pairs, then every slice to every rank.
  a2a_slice_out_.assign(per_rank * h, 0.0f);
  for (int dst = 0; dst < tp; ++dst) {
    for (int64_t i = 0; i < a2a_counts_[me * tp + dst]; ++i) {
      const int64_t p = dst * cap + i;
      float* out = a2a_slice_out_.data() + a2a_pair_token_[p] * h;
      const float* src = a2a_returned_.data() + p * h;
      const float wgt = a2a_pair_weight_[p];
      for (int64_t j = 0; j < h; ++j) out[j] += wgt * src[j];
    }
  }
  a2a_gathered_.resize(tp * per_rank * h);
  RETURN_IF_ERROR(comms_.tp->AllGather(F32(a2a_slice_out_.data(), per_rank, h),
                                       F32(a2a_gathered_.data(), tp * per_rank, h)));
  const TensorView proj = F32(proj_.data(), n, h);
  std::fill_n(proj_.data(), n * h, 0.0f);
  if (c.shared_expert_intermediate_size > 0) {
    RETURN_IF_ERROR(moe_->ForwardShared(ctx, w, F32(normed_.data(), n, h), proj));
    RETURN_IF_ERROR(comms_.tp->AllReduceSum(proj));
  }
  for (int r = 0; r < tp; ++r) {
    const IndexRange slice = EvenSplit(n, tp, r);
    const float* src = a2a_gathered_.data() + r * per_rank * h;
    float* dst = proj_.data() + slice.begin * h;
    for (int64_t j = 0; j < slice.size() * h; ++j) dst[j] += src[j];
  }
  return ops::Add(ctx, F32(hidden_.data(), n, h), proj);
}

absl::Status Decoder::ReduceIntoResidual(const OpContext& ctx, int64_t n) {
  const TensorView proj = F32(proj_.data(), n, config_.hidden_size);
  if (shard_.layout.tp_size > 1) RETURN_IF_ERROR(comms_.tp->AllReduceSum(proj));
  return ops::Add(ctx, F32(hidden_.data(), n, config_.hidden_size), proj);
}

absl::Status Decoder::Logits(const OpContext& ctx, const ForwardBatch& batch, float* logits) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  const int64_t num_out = static_cast<int64_t>(batch.logits_rows.size());
  out_rows_.resize(num_out * c.hidden_size);
  for (int64_t i = 0; i < num_out; ++i) {
    const int32_t r = batch.logits_rows[i];
    if (r < 0 || r >= n) return absl::InvalidArgumentError("logits row outside the batch");
    std::copy_n(hidden_.data() + r * c.hidden_size, c.hidden_size,
                out_rows_.data() + i * c.hidden_size);
  }
  const TensorView rows = F32(out_rows_.data(), num_out, c.hidden_size);
  RETURN_IF_ERROR(ops::RmsNorm(ctx, rows, weights_->output_norm().view(), c.rms_norm_eps, rows));
  const int tp = shard_.layout.tp_size;
  if (tp == 1) {
    if (logits == nullptr) return absl::OkStatus();
    return ops::MatMul(ctx, rows, weights_->lm_head(), F32(logits, num_out, c.vocab_size));
  }
  // Vocab-parallel head: every rank's slice padded to the largest (the first), gathered as
  // [tp, num_out, per_rank] blocks, then interleaved into [num_out, vocab].
  const int64_t per_rank = EvenSplit(c.vocab_size, tp, 0).size();
  logits_slice_.assign(num_out * per_rank, 0.0f);
  logits_gathered_.resize(tp * num_out * per_rank);
  TensorView slice = F32(logits_slice_.data(), num_out, shard_.vocab.size());
  slice.row_stride_bytes = per_rank * static_cast<int64_t>(sizeof(float));
  RETURN_IF_ERROR(ops::MatMul(ctx, rows, weights_->lm_head(), slice));
  RETURN_IF_ERROR(comms_.tp->AllGather(F32(logits_slice_.data(), num_out, per_rank),
                                       F32(logits_gathered_.data(), tp * num_out, per_rank)));
  if (logits == nullptr) return absl::OkStatus();
  for (int r = 0; r < tp; ++r) {
    const IndexRange v = EvenSplit(c.vocab_size, tp, r);
    for (int64_t i = 0; i < num_out; ++i) {
      std::copy_n(logits_gathered_.data() + (r * num_out + i) * per_rank, v.size(),
                  logits + i * c.vocab_size + v.begin);
    }
  }
  return absl::OkStatus();
}

absl::Status Decoder::Forward(const OpContext& ctx, const ForwardBatch& batch,
                              absl::Span<const KvLayerView> kv, float* logits,
                              const LayerHook& after_attention) {
  const ModelConfig& c = config_;
  const int64_t n = batch.num_tokens();
  const int64_t num_layers = shard_.layers.size();
  if (n == 0) return absl::InvalidArgumentError("empty batch");
  if (static_cast<int64_t>(kv.size()) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("got KV views for ", kv.size(), " layers, this shard has ", num_layers));
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
  const bool leader = shard_.group_rank() == 0;
  const int64_t num_out = static_cast<int64_t>(batch.logits_rows.size());
  if (leader && num_out > 0 && logits == nullptr) {
    return absl::InvalidArgumentError("the group leader needs a logits buffer");
  }
  EnsureScratch(n);
  const TensorView hidden = F32(hidden_.data(), n, c.hidden_size);
  const TensorView normed = F32(normed_.data(), n, c.hidden_size);
  if (shard_.first_stage()) {
    RETURN_IF_ERROR(Embed(ctx, batch));
  } else {
    RETURN_IF_ERROR(comms_.pp->Recv(hidden, shard_.pp_rank - 1));
  }
  for (int64_t i = 0; i < num_layers; ++i) {
    const LayerWeights& w = weights_->layer(i);
    RETURN_IF_ERROR(ops::RmsNorm(ctx, hidden, w.attn_norm.view(), c.rms_norm_eps, normed));
    RETURN_IF_ERROR(Attention(ctx, w, batch, kv[i]));
    if (after_attention) RETURN_IF_ERROR(after_attention(shard_.layers.begin + i));
    RETURN_IF_ERROR(ops::RmsNorm(ctx, hidden, w.ffn_norm.view(), c.rms_norm_eps, normed));
    if (c.is_moe()) {
      RETURN_IF_ERROR(Moe(ctx, w, n));
    } else {
      RETURN_IF_ERROR(DenseMlp(ctx, w, n));
    }
  }
  const int last = shard_.layout.pp_size - 1;
  if (!shard_.last_stage()) {
    RETURN_IF_ERROR(comms_.pp->Send(hidden, shard_.pp_rank + 1));
    if (!leader || num_out == 0) return absl::OkStatus();
    return comms_.pp->Recv(F32(logits, num_out, c.vocab_size), last);
  }
  if (num_out == 0) return absl::OkStatus();
  if (last == 0) return Logits(ctx, batch, logits);
  // Pipelined: the last stage's tp rank 0 assembles the logits and sends them to the leader.
  if (shard_.tp_rank != 0) return Logits(ctx, batch, nullptr);
  logits_full_.resize(num_out * c.vocab_size);
  RETURN_IF_ERROR(Logits(ctx, batch, logits_full_.data()));
  return comms_.pp->Send(F32(logits_full_.data(), num_out, c.vocab_size), 0);
}

}  // namespace shardserve
