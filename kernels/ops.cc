#include "kernels/ops.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/moe_router.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"

namespace shardserve {
namespace ops {
namespace {

absl::Status RequireCpu(const OpContext& ctx, const char* op) {
  if (ctx.device.type != DeviceType::kCpu) {
    return absl::UnimplementedError(
        absl::StrCat(op, " on ", ctx.device.ToString(), " is not built into this binary"));
  }
  return absl::OkStatus();
}

absl::Status RequireF32Packed(const TensorView& t, const char* op, const char* name) {
  if (t.dtype != DType::kF32 || !t.is_packed() || t.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must be packed F32, got ",
                                                   DTypeName(t.dtype), " ", t.ShapeString()));
  }
  return absl::OkStatus();
}

absl::Status RequireKvCache(const KvLayerView& c, const char* op) {
  if (c.dtype != DType::kF32 && c.dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": the KV cache must be F32 or F16, got ", DTypeName(c.dtype)));
  }
  if (c.k == nullptr || c.v == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": the KV cache has no memory"));
  }
  return absl::OkStatus();
}

cpu::PagedKvCache ToCpuCache(const KvLayerView& c) {
  cpu::PagedKvCache p;
  p.k = c.k;
  p.v = c.v;
  p.type = c.dtype == DType::kF16 ? cpu::KvCacheType::kF16 : cpu::KvCacheType::kF32;
  p.num_blocks = c.num_blocks;
  p.block_size = static_cast<int>(c.block_size);
  p.num_kv_heads = static_cast<int>(c.num_kv_heads);
  p.head_dim = static_cast<int>(c.head_dim);
  return p;
}

// The RoPE table of the last parameters seen (every layer of a model uses the same ones), with
// the cos/sin of the last positions it was applied at: every layer of a step rotates the same
// positions, and recomputing the trigonometry per layer would cost more than the rotation.
struct RopeCache {
  RopeParams params;
  int head_dim = -1;
  std::unique_ptr<cpu::RopeTable> table;
  std::vector<int32_t> positions;  // of cos_sin
  std::vector<float> cos_sin;
};

RopeCache& CachedRope(const RopeParams& p, int head_dim) {
  thread_local RopeCache entry;
  const bool same = entry.table != nullptr && entry.head_dim == head_dim &&
                    entry.params.style == p.style && entry.params.theta == p.theta &&
                    entry.params.rotary_dim == p.rotary_dim && entry.params.scaling == p.scaling &&
                    entry.params.factor == p.factor &&
                    entry.params.low_freq_factor == p.low_freq_factor &&
                    entry.params.high_freq_factor == p.high_freq_factor &&
                    entry.params.original_max_position == p.original_max_position;
  if (!same) {
    cpu::RopeConfig c;
    c.head_dim = head_dim;
    c.rotary_dim = p.rotary_dim > 0 ? static_cast<int>(p.rotary_dim) : head_dim;
    c.theta = p.theta;
    c.style = p.style == RopeParams::Style::kInterleaved ? cpu::RopeStyle::kInterleaved
                                                         : cpu::RopeStyle::kNeox;
    switch (p.scaling) {
      case RopeParams::Scaling::kNone:
        c.scaling = cpu::RopeScaling::kNone;
        break;
      case RopeParams::Scaling::kLinear:
        c.scaling = cpu::RopeScaling::kLinear;
        break;
      case RopeParams::Scaling::kLlama3:
        c.scaling = cpu::RopeScaling::kLlama3;
        break;
    }
    c.factor = p.factor;
    c.low_freq_factor = p.low_freq_factor;
    c.high_freq_factor = p.high_freq_factor;
    c.original_max_position_embeddings = static_cast<int>(p.original_max_position);
    entry.params = p;
    entry.head_dim = head_dim;
    entry.table = std::make_unique<cpu::RopeTable>(c);
    entry.positions.clear();
    entry.cos_sin.clear();
  }
  return entry;
}

}  // namespace

absl::Status Embedding(const OpContext& ctx, const TensorView& table, absl::Span<const int32_t> ids,
                       const TensorView& out) {
  RETURN_IF_ERROR(RequireCpu(ctx, "Embedding"));
  RETURN_IF_ERROR(RequireF32Packed(out, "Embedding", "out"));
  const int64_t hidden = table.cols();
  if (out.cols() != hidden || out.rows() != static_cast<int64_t>(ids.size()) ||
      !cpu::CanDequantize(table.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("Embedding: table ", DTypeName(table.dtype),
                                                   table.ShapeString(), " out ", out.ShapeString(),
                                                   " ids ", ids.size()));
  }
  const int64_t vocab = table.rows();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("Embedding: id ", ids[i], " outside [0, ", vocab, ")"));
    }
    cpu::DequantizeRow(table.dtype, table.row(ids[i]), out.row<float>(i), hidden);
  }
  return absl::OkStatus();
}

absl::Status RmsNorm(const OpContext& ctx, const TensorView& x, const TensorView& weight, float eps,
                     const TensorView& out) {
  RETURN_IF_ERROR(RequireCpu(ctx, "RmsNorm"));
  RETURN_IF_ERROR(RequireF32Packed(x, "RmsNorm", "x"));
  RETURN_IF_ERROR(RequireF32Packed(out, "RmsNorm", "out"));
  RETURN_IF_ERROR(RequireF32Packed(weight, "RmsNorm", "weight"));
  if (weight.numel() != x.cols() || out.numel() != x.numel()) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNorm: x ", x.ShapeString(), " weight ",
                                                   weight.ShapeString(), " out ",
                                                   out.ShapeString()));
  }
  cpu::RmsNorm(x.ptr<float>(), weight.ptr<float>(), x.rows(), x.cols(), eps, out.ptr<float>(),
               ctx.pool);
  return absl::OkStatus();
}

absl::Status MatMul(const OpContext& ctx, const TensorView& x, const TensorView& w,
                    const TensorView& y) {
  RETURN_IF_ERROR(RequireCpu(ctx, "MatMul"));
  return cpu::MatMul(x, w, y, ctx.pool);
}

absl::Status MatMulMulti(const OpContext& ctx, const TensorView& x, absl::Span<const TensorView> ws,
                         absl::Span<const TensorView> ys) {
  RETURN_IF_ERROR(RequireCpu(ctx, "MatMulMulti"));
  return cpu::MatMulMulti(x, ws, ys, ctx.pool);
}

absl::Status MatMulSwiGlu(const OpContext& ctx, const TensorView& x, const TensorView& w_gate,
                          const TensorView& w_up, const TensorView& out) {
  RETURN_IF_ERROR(RequireCpu(ctx, "MatMulSwiGlu"));
  RETURN_IF_ERROR(RequireF32Packed(out, "MatMulSwiGlu", "out"));
  return cpu::MatMulSwiGlu(x, w_gate, w_up, out, ctx.pool);
}

absl::Status AddBias(const OpContext& ctx, const TensorView& y, const TensorView& bias) {
  RETURN_IF_ERROR(RequireCpu(ctx, "AddBias"));
  RETURN_IF_ERROR(RequireF32Packed(y, "AddBias", "y"));
  RETURN_IF_ERROR(RequireF32Packed(bias, "AddBias", "bias"));
  if (bias.numel() != y.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("AddBias: y ", y.ShapeString(), " bias ", bias.ShapeString()));
  }
  cpu::AddBias(y.ptr<float>(), bias.ptr<float>(), y.rows(), y.cols(), ctx.pool);
  return absl::OkStatus();
}

absl::Status Add(const OpContext& ctx, const TensorView& y, const TensorView& x) {
  RETURN_IF_ERROR(RequireCpu(ctx, "Add"));
  RETURN_IF_ERROR(RequireF32Packed(y, "Add", "y"));
  RETURN_IF_ERROR(RequireF32Packed(x, "Add", "x"));
  if (x.numel() != y.numel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Add: y ", y.ShapeString(), " x ", x.ShapeString()));
  }
  cpu::AddInPlace(y.ptr<float>(), x.ptr<float>(), y.numel(), ctx.pool);
  return absl::OkStatus();
}

absl::Status Rope(const OpContext& ctx, const RopeParams& params,
                  absl::Span<const int32_t> positions, const TensorView& q, const TensorView& k) {
  RETURN_IF_ERROR(RequireCpu(ctx, "Rope"));
  RETURN_IF_ERROR(RequireF32Packed(q, "Rope", "q"));
  RETURN_IF_ERROR(RequireF32Packed(k, "Rope", "k"));
  const int64_t n = static_cast<int64_t>(positions.size());
  if (q.ndim != 3 || k.ndim != 3 || q.dim(0) != n || k.dim(0) != n || q.dim(2) != k.dim(2) ||
      (params.rotary_dim > q.dim(2)) || q.dim(2) % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: q ", q.ShapeString(), " k ", k.ShapeString(), " positions ", n));
  }
  RopeCache& rope = CachedRope(params, static_cast<int>(q.dim(2)));
  if (!std::equal(positions.begin(), positions.end(), rope.positions.begin(),
                  rope.positions.end())) {
    rope.positions.assign(positions.begin(), positions.end());
    rope.cos_sin.resize(n * rope.table->rotary_dim());
    rope.table->ComputeCosSin(positions.data(), n, rope.cos_sin.data());
  }
  rope.table->ApplyCosSin(rope.cos_sin.data(), n, q.ptr<float>(), static_cast<int>(q.dim(1)),
                          k.ptr<float>(), static_cast<int>(k.dim(1)), ctx.pool);
  return absl::OkStatus();
}

absl::Status WriteKv(const OpContext& ctx, const KvLayerView& cache,
                     absl::Span<const int64_t> slot_mapping, const TensorView& k,
                     const TensorView& v) {
  RETURN_IF_ERROR(RequireCpu(ctx, "WriteKv"));
  RETURN_IF_ERROR(RequireKvCache(cache, "WriteKv"));
  RETURN_IF_ERROR(RequireF32Packed(k, "WriteKv", "k"));
  RETURN_IF_ERROR(RequireF32Packed(v, "WriteKv", "v"));
  const int64_t n = static_cast<int64_t>(slot_mapping.size());
  const int64_t row = cache.num_kv_heads * cache.head_dim;
  if (k.numel() != n * row || v.numel() != n * row) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteKv: k ", k.ShapeString(), " v ", v.ShapeString(), " for ", n, " slots"));
  }
  const int64_t num_slots = cache.num_blocks * cache.block_size;
  for (int64_t s : slot_mapping) {
    if (s < 0 || s >= num_slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("WriteKv: slot ", s, " outside the cache of ", num_slots, " slots"));
    }
  }
  cpu::WriteKv(k.ptr<float>(), v.ptr<float>(), slot_mapping.data(), n, ToCpuCache(cache), ctx.pool);
  return absl::OkStatus();
}

absl::Status PagedAttention(const OpContext& ctx, const KvLayerView& cache,
                            const AttentionBatch& batch, const TensorView& q, float scale,
                            const TensorView& out) {
  RETURN_IF_ERROR(RequireCpu(ctx, "PagedAttention"));
  RETURN_IF_ERROR(RequireKvCache(cache, "PagedAttention"));
  RETURN_IF_ERROR(RequireF32Packed(q, "PagedAttention", "q"));
  RETURN_IF_ERROR(RequireF32Packed(out, "PagedAttention", "out"));
  const int64_t num_seqs = batch.num_seqs();
  if (q.ndim != 3 || q.dim(2) != cache.head_dim || q.dim(1) % cache.num_kv_heads != 0 ||
      out.numel() != q.numel() || static_cast<int64_t>(batch.qo_indptr.size()) != num_seqs + 1 ||
      static_cast<int64_t>(batch.kv_indptr.size()) != num_seqs + 1 ||
      batch.qo_indptr[num_seqs] != q.dim(0) ||
      static_cast<int64_t>(batch.kv_indices.size()) < batch.kv_indptr[num_seqs]) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttention: q ", q.ShapeString(), " with ", num_seqs, " sequences"));
  }
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t qo_len = batch.qo_indptr[s + 1] - batch.qo_indptr[s];
    const int64_t blocks = batch.kv_indptr[s + 1] - batch.kv_indptr[s];
    if (qo_len < 0 || qo_len > batch.kv_lens[s] || blocks * cache.block_size < batch.kv_lens[s]) {
      return absl::InvalidArgumentError(
          absl::StrCat("PagedAttention: sequence ", s, " has inconsistent lengths"));
    }
  }
  for (int32_t b : batch.kv_indices) {
    if (b < 0 || b >= cache.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("PagedAttention: block ", b, " outside [0, ", cache.num_blocks, ")"));
    }
  }
  cpu::PagedAttentionParams p;
  p.num_seqs = static_cast<int>(num_seqs);
  p.qo_indptr = batch.qo_indptr.data();
  p.kv_indptr = batch.kv_indptr.data();
  p.kv_indices = batch.kv_indices.data();
  p.kv_lens = batch.kv_lens.data();
  p.num_heads = static_cast<int>(q.dim(1));
  p.scale = scale;
  cpu::PagedAttention(q.ptr<float>(), ToCpuCache(cache), p, out.ptr<float>(), ctx.pool);
  return absl::OkStatus();
}

absl::Status SwiGlu(const OpContext& ctx, const TensorView& gate, const TensorView& up,
                    const TensorView& out) {
  RETURN_IF_ERROR(RequireCpu(ctx, "SwiGlu"));
  RETURN_IF_ERROR(RequireF32Packed(gate, "SwiGlu", "gate"));
  RETURN_IF_ERROR(RequireF32Packed(up, "SwiGlu", "up"));
  RETURN_IF_ERROR(RequireF32Packed(out, "SwiGlu", "out"));
  if (gate.numel() != up.numel() || out.numel() != gate.numel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwiGlu: gate ", gate.ShapeString(), " up ", up.ShapeString()));
  }
  cpu::SwiGlu(gate.ptr<float>(), up.ptr<float>(), gate.rows(), gate.cols(), out.ptr<float>(),
              ctx.pool);
  return absl::OkStatus();
}

absl::Status MoeTopK(const OpContext& ctx, const TensorView& logits, int64_t k, bool renormalize,
                     const TensorView& expert_ids, const TensorView& weights) {
  RETURN_IF_ERROR(RequireCpu(ctx, "MoeTopK"));
  RETURN_IF_ERROR(RequireF32Packed(logits, "MoeTopK", "logits"));
  RETURN_IF_ERROR(RequireF32Packed(weights, "MoeTopK", "weights"));
  const int64_t n = logits.rows();
  const int64_t e = logits.cols();
  if (k < 1 || k > e || expert_ids.dtype != DType::kI32 || expert_ids.numel() != n * k ||
      weights.numel() != n * k) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoeTopK: logits ", logits.ShapeString(), " k ", k));
  }
  cpu::MoeRouterTopK(logits.ptr<float>(), n, static_cast<int>(e), static_cast<int>(k), renormalize,
                     expert_ids.ptr<int32_t>(), weights.ptr<float>(), ctx.pool);
  return absl::OkStatus();
}

}  // namespace ops
}  // namespace shardserve
