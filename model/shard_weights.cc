#include "model/shard_weights.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "kernels/ops.h"

namespace shardserve {
namespace {

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

// Dequantizes rows [0, t.rows()) of a 2-D view into out [rows, cols] F32.
absl::Status DequantizeRows(const TensorView& t, std::vector<float>& out) {
  const int64_t rows = t.dim(0);
  std::vector<int32_t> ids(rows);
  for (int64_t r = 0; r < rows; ++r) ids[r] = static_cast<int32_t>(r);
  out.resize(rows * t.cols());
  ThreadPool inline_pool(1);
  return ops::Embedding(OpContext::Cpu(&inline_pool), t, ids,
                        TensorView::Cpu(out.data(), DType::kF32, {rows, t.cols()}));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardWeights>> ShardWeights::Bind(const WeightSource& weights,
                                                                 const ShardSpec& shard) {
  std::unique_ptr<ShardWeights> s(new ShardWeights(weights.config(), shard));
  RETURN_IF_ERROR(s->BindAll(weights));
  return s;
}

TensorView ShardWeights::Rows(const TensorView& t, const IndexRange& range) {
  TensorView v = t.Rows(range.begin, range.end);
  CountView(v);
  return v;
}

absl::StatusOr<TensorView> ShardWeights::Columns(const TensorView& t, const IndexRange& range) {
  const int64_t block = BlockSize(t.dtype);
  if (range.begin == 0 && range.end == t.cols()) {
    CountView(t);
    return t;
  }
  if (range.begin % block == 0 && range.size() % block == 0) {
    TensorView v = t;
    v.data = t.row<uint8_t>(0) + RowBytes(t.dtype, range.begin);
    v.shape[v.ndim - 1] = range.size();
    v.row_stride_bytes = t.stride_bytes();
    CountView(v);
    return v;
  }
  // The slice splits quantization blocks: keep a dequantized F32 copy of just these columns.
  std::vector<float> full;
  RETURN_IF_ERROR(DequantizeRows(t, full));
  const int64_t rows = t.dim(0);
  std::vector<float> slice(rows * range.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(full.data() + r * t.cols() + range.begin, range.size(),
                slice.data() + r * range.size());
  }
  owned_.push_back(std::move(slice));
  resident_bytes_ += rows * range.size() * static_cast<int64_t>(sizeof(float));
  return TensorView::Cpu(owned_.back().data(), DType::kF32, {rows, range.size()});
}

absl::StatusOr<OwnedVector> ShardWeights::Vector(const WeightSource& w, const std::string& name,
                                                 int64_t n, const IndexRange& range) {
  ASSIGN_OR_RETURN(TensorView t, w.Get(name));
  if (t.numel() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.path(), ": tensor ", name, " has ", t.numel(), " elements, expected ", n));
  }
  TensorView table = t;
  table.ndim = 2;
  table.shape = {1, n, 0, 0};
  table.row_stride_bytes = 0;
  std::vector<float> full;
  RETURN_IF_ERROR(DequantizeRows(table, full));
  OwnedVector v;
  v.data.assign(full.begin() + range.begin, full.begin() + range.end);
  resident_bytes_ += range.size() * static_cast<int64_t>(sizeof(float));
  return v;
}

absl::Status ShardWeights::BindAll(const WeightSource& w) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  if (w.Has("rope_freqs")) {
    // llama.cpp stores Llama 3.1-style RoPE scaling as per-dimension frequency factors.
    return absl::UnimplementedError(absl::StrCat(
        w.path(), ": per-dimension RoPE frequency factors (tensor rope_freqs) are not supported"));
  }
  ASSIGN_OR_RETURN(TensorView embd, GetWithShape(w, "token_embd", {c.vocab_size, h}));
  TensorView head = embd;
  if (w.Has("output")) {
    ASSIGN_OR_RETURN(head, GetWithShape(w, "output", {c.vocab_size, h}));
  }
  if (shard_.first_stage()) token_embd_ = Rows(embd, shard_.vocab);
  if (shard_.last_stage()) {
    // A tied head on a rank that also embeds shares the embedding's bytes.
    if (head.data == embd.data && shard_.first_stage()) {
      lm_head_ = token_embd_;
    } else {
      lm_head_ = Rows(head, shard_.vocab);
    }
    ASSIGN_OR_RETURN(output_norm_, Vector(w, "output_norm", h, {0, h}));
    bytes_per_token_ += lm_head_.nbytes();
  }
  layers_.resize(shard_.layers.size());
  for (int64_t i = 0; i < shard_.layers.size(); ++i) {
    RETURN_IF_ERROR(BindLayer(w, shard_.layers.begin + i, layers_[i]));
  }
  return absl::OkStatus();
}

absl::Status ShardWeights::BindLayer(const WeightSource& w, int64_t l, LayerWeights& lw) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  const int64_t hd = c.head_dim;
  const IndexRange q_range{shard_.q_heads.begin * hd, shard_.q_heads.end * hd};
  const IndexRange kv_range{shard_.kv_heads.begin * hd, shard_.kv_heads.end * hd};
  auto name = [&](const char* s) { return LayerName(l, s); };
  ASSIGN_OR_RETURN(lw.attn_norm, Vector(w, name("attn_norm"), h, {0, h}));
  ASSIGN_OR_RETURN(TensorView q, GetWithShape(w, name("attn_q"), {c.q_dim(), h}));
  ASSIGN_OR_RETURN(TensorView k, GetWithShape(w, name("attn_k"), {c.kv_dim(), h}));
  ASSIGN_OR_RETURN(TensorView v, GetWithShape(w, name("attn_v"), {c.kv_dim(), h}));
  ASSIGN_OR_RETURN(TensorView o, GetWithShape(w, name("attn_output"), {h, c.q_dim()}));
  lw.q = Rows(q, q_range);
  lw.k = Rows(k, kv_range);
  lw.v = Rows(v, kv_range);
  ASSIGN_OR_RETURN(lw.o, Columns(o, q_range));
  if (c.attention_bias) {
    ASSIGN_OR_RETURN(lw.q_bias, Vector(w, name("attn_q.bias"), c.q_dim(), q_range));
    ASSIGN_OR_RETURN(lw.k_bias, Vector(w, name("attn_k.bias"), c.kv_dim(), kv_range));
    ASSIGN_OR_RETURN(lw.v_bias, Vector(w, name("attn_v.bias"), c.kv_dim(), kv_range));
  }
  if (c.qk_norm == QkNorm::kPerHead) {
    ASSIGN_OR_RETURN(lw.q_norm, Vector(w, name("attn_q_norm"), hd, {0, hd}));
    ASSIGN_OR_RETURN(lw.k_norm, Vector(w, name("attn_k_norm"), hd, {0, hd}));
  } else if (c.qk_norm == QkNorm::kFull) {
    ASSIGN_OR_RETURN(lw.q_norm, Vector(w, name("attn_q_norm"), c.q_dim(), q_range));
    ASSIGN_OR_RETURN(lw.k_norm, Vector(w, name("attn_k_norm"), c.kv_dim(), kv_range));
  }
  ASSIGN_OR_RETURN(lw.ffn_norm, Vector(w, name("ffn_norm"), h, {0, h}));
  bytes_per_token_ += lw.q.nbytes() + lw.k.nbytes() + lw.v.nbytes() + lw.o.nbytes();
  if (c.is_moe()) return BindExperts(w, l, lw);
  const int64_t inter = c.intermediate_size;
  ASSIGN_OR_RETURN(TensorView gate, GetWithShape(w, name("ffn_gate"), {inter, h}));
  ASSIGN_OR_RETURN(TensorView up, GetWithShape(w, name("ffn_up"), {inter, h}));
  ASSIGN_OR_RETURN(TensorView down, GetWithShape(w, name("ffn_down"), {h, inter}));
  lw.gate = Rows(gate, shard_.mlp_columns);
  lw.up = Rows(up, shard_.mlp_columns);
  ASSIGN_OR_RETURN(lw.down, Columns(down, shard_.mlp_columns));
  bytes_per_token_ += lw.gate.nbytes() + lw.up.nbytes() + lw.down.nbytes();
  return absl::OkStatus();
}

absl::Status ShardWeights::BindExperts(const WeightSource& w, int64_t l, LayerWeights& lw) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  const int64_t mi = c.moe_intermediate_size;
  auto name = [&](const char* s) { return LayerName(l, s); };
  ASSIGN_OR_RETURN(TensorView router, GetWithShape(w, name("ffn_gate_inp"), {c.num_experts, h}));
  lw.router = Rows(router, {0, c.num_experts});
  lw.experts.resize(c.num_experts);
  for (int64_t e = shard_.experts.begin; e < shard_.experts.end; ++e) {
    ExpertWeights& ew = lw.experts[e];
    ASSIGN_OR_RETURN(TensorView gate,
                     GetWithShape(w, absl::StrCat(name("ffn_gate"), ".", e), {mi, h}));
    ASSIGN_OR_RETURN(TensorView up, GetWithShape(w, absl::StrCat(name("ffn_up"), ".", e), {mi, h}));
    ASSIGN_OR_RETURN(TensorView down,
                     GetWithShape(w, absl::StrCat(name("ffn_down"), ".", e), {h, mi}));
    ew.gate = Rows(gate, shard_.expert_columns);
    ew.up = Rows(up, shard_.expert_columns);
    ASSIGN_OR_RETURN(ew.down, Columns(down, shard_.expert_columns));
  }
  const ExpertWeights& first = lw.experts[shard_.experts.begin];
  bytes_per_token_ +=
      lw.router.nbytes() + c.num_experts_per_tok * (first.gate.nbytes() * 2 + first.down.nbytes());
  if (c.shared_expert_intermediate_size > 0) {
    const int64_t si = c.shared_expert_intermediate_size;
    ASSIGN_OR_RETURN(TensorView gate, GetWithShape(w, name("ffn_gate_shexp"), {si, h}));
    ASSIGN_OR_RETURN(TensorView up, GetWithShape(w, name("ffn_up_shexp"), {si, h}));
    ASSIGN_OR_RETURN(TensorView down, GetWithShape(w, name("ffn_down_shexp"), {h, si}));
    ASSIGN_OR_RETURN(TensorView shared_gate, GetWithShape(w, name("ffn_gate_inp_shexp"), {1, h}));
    ExpertWeights& s = lw.shared_expert;
    s.gate = Rows(gate, shard_.shared_expert_columns);
    s.up = Rows(up, shard_.shared_expert_columns);
    ASSIGN_OR_RETURN(s.down, Columns(down, shard_.shared_expert_columns));
    lw.shared_expert_gate = Rows(shared_gate, {0, 1});
    bytes_per_token_ += s.gate.nbytes() * 2 + s.down.nbytes();
  }
  return absl::OkStatus();
}

}  // namespace shardserve
