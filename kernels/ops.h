// The kernel interface: every op the engine runs, declared once over TensorViews.
//
// Each op checks shapes and dtypes, then dispatches on the tensors' device to the CPU
// implementation in kernels/cpu/ (same op name, same file name) or, under --config=cuda, to
// kernels/cuda/. Activations are F32; weights may be any DType the op documents.
//
//   OpContext ctx = OpContext::Cpu(&pool);
//   RETURN_IF_ERROR(ops::RmsNorm(ctx, x, norm_weight, eps, x_norm));
//   RETURN_IF_ERROR(ops::MatMul(ctx, x_norm, w_q, q));
//
// Thread safety: ops on one OpContext must be issued from one thread at a time.
#ifndef SHARDSERVE_KERNELS_OPS_H_
#define SHARDSERVE_KERNELS_OPS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/tensor.h"

namespace shardserve {

class ThreadPool;

// Where ops run: the device plus its execution resources (a CPU thread pool, a CUDA stream).
struct OpContext {
  Device device;
  ThreadPool* pool = nullptr;  // CPU: not owned; must outlive the context's use
  void* stream = nullptr;      // CUDA: a cudaStream_t

  static OpContext Cpu(ThreadPool* pool) { return {Device::Cpu(), pool, nullptr}; }
};

// Which dimensions of a head RoPE pairs, and how positions are scaled.
struct RopeParams {
  enum class Style { kInterleaved, kNeox };
  Style style = Style::kNeox;
  float theta = 10000.0f;
  int64_t rotary_dim = 0;  // dims of a head that rotate (the first rotary_dim); 0: all
  enum class Scaling { kNone, kLinear, kLlama3 };
  Scaling scaling = Scaling::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position = 8192;
};

// One layer's paged KV cache: K and V are [num_blocks, block_size, num_kv_heads, head_dim] of
// `dtype`, F32 or F16 (IEEE half, llama.cpp's default cache type: half the bytes to store, move
// and read per token; values are rounded to nearest even when written).
struct KvLayerView {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kF32;
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;

  int64_t elem_bytes() const { return dtype == DType::kF16 ? 2 : 4; }
  // Bytes of one token's K (or V) row: all kv heads.
  int64_t row_bytes() const { return num_kv_heads * head_dim * elem_bytes(); }
};

// Attention metadata of a batch in CSR form (FlashInfer's layout). Sequence s owns query rows
// [qo_indptr[s], qo_indptr[s+1]); they are the last positions of its kv_lens[s] cached tokens,
// whose blocks are kv_indices[kv_indptr[s] .. kv_indptr[s+1]).
struct AttentionBatch {
  absl::Span<const int32_t> qo_indptr;   // [num_seqs + 1]
  absl::Span<const int32_t> kv_indptr;   // [num_seqs + 1]
  absl::Span<const int32_t> kv_indices;  // [kv_indptr[num_seqs]] block ids
  absl::Span<const int32_t> kv_lens;     // [num_seqs]
  int64_t num_seqs() const { return static_cast<int64_t>(kv_lens.size()); }
};

namespace ops {

// out[i, :] = table[ids[i], :] as F32. table: [vocab, hidden] any dtype; out: [n, hidden] F32.
absl::Status Embedding(const OpContext& ctx, const TensorView& table, absl::Span<const int32_t> ids,
                       const TensorView& out);

// out = x / sqrt(mean(x^2) + eps) * weight, row by row. x, out: [rows, dim] F32 (may alias);
// weight: [dim] F32.
absl::Status RmsNorm(const OpContext& ctx, const TensorView& x, const TensorView& weight, float eps,
                     const TensorView& out);

// y[m, n] = x[m, k] . w[n, k]^T. x, y F32; w F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K.
absl::Status MatMul(const OpContext& ctx, const TensorView& x, const TensorView& w,
                    const TensorView& y);

// ys[i] = x . ws[i]^T for every i (at most 4): projections of one input (q, k, v) in one job.
// Each ys[i] is bit-identical to MatMul(ctx, x, ws[i], ys[i]).
absl::Status MatMulMulti(const OpContext& ctx, const TensorView& x, absl::Span<const TensorView> ws,
                         absl::Span<const TensorView> ys);

// out = silu(x . w_gate^T) * (x . w_up^T): a gated MLP's first half in one job. Bit-identical to
// two MatMuls followed by SwiGlu. out: [rows, n] packed F32.
absl::Status MatMulSwiGlu(const OpContext& ctx, const TensorView& x, const TensorView& w_gate,
                          const TensorView& w_up, const TensorView& out);

// y[i, :] += bias[:]. y: [rows, n] F32, bias: [n] F32.
absl::Status AddBias(const OpContext& ctx, const TensorView& y, const TensorView& bias);

// y += x, elementwise. Same shape, F32.
absl::Status Add(const OpContext& ctx, const TensorView& y, const TensorView& x);

// Rotates q [num_tokens, num_heads, head_dim] and k [num_tokens, num_kv_heads, head_dim] in
// place at positions [num_tokens].
absl::Status Rope(const OpContext& ctx, const RopeParams& params,
                  absl::Span<const int32_t> positions, const TensorView& q, const TensorView& k);

// Stores k, v [num_tokens, num_kv_heads, head_dim] into the cache slots
// (slot = block_id * block_size + offset) [num_tokens].
absl::Status WriteKv(const OpContext& ctx, const KvLayerView& cache,
                     absl::Span<const int64_t> slot_mapping, const TensorView& k,
                     const TensorView& v);

// Causal attention of q [num_tokens, num_heads, head_dim] over the paged cache; writes
// out [num_tokens, num_heads, head_dim].
absl::Status PagedAttention(const OpContext& ctx, const KvLayerView& cache,
                            const AttentionBatch& batch, const TensorView& q, float scale,
                            const TensorView& out);

// out = silu(gate) * up. gate, up, out: [rows, n] F32 (out may alias gate).
absl::Status SwiGlu(const OpContext& ctx, const TensorView& gate, const TensorView& up,
                    const TensorView& out);

// Softmax over experts then top-k per token; weights renormalised to sum 1 when `renormalize`.
// logits: [num_tokens, num_experts] F32; expert_ids: [num_tokens, k] I32; weights: [num_tokens, k].
absl::Status MoeTopK(const OpContext& ctx, const TensorView& logits, int64_t k, bool renormalize,
                     const TensorView& expert_ids, const TensorView& weights);

}  // namespace ops
}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_OPS_H_
