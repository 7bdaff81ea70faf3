// Matrix multiplication against a weight matrix in any supported GGUF type: the linear layers
// of a model on CPU.
//
//   y[m, n] = x[m, k] . w[n, k]^T
//
// x and y are F32; w is F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K or Q6_K, used in place (a tensor
// mapped from a GGUF file, or a row slice of one through row_stride_bytes). x and y rows may be
// strided too. Two strategies:
//   - quantized weights at every m, float weights up to 96 rows: x is quantized once to the
//     weight type's activation format (vec_dot.h) and the n output columns are split over the
//     pool in runs of 16; each weight row is read from memory once for all x rows. Integer dot
//     products within blocks, as llama.cpp computes them.
//   - float weights over 96 rows (prefill): tiles of w are dequantized to F32 and multiplied with
//     OpenBLAS sgemm, each pool thread owning a range of output columns.
//
//   ThreadPool pool(2);
//   RETURN_IF_ERROR(MatMul(x, w, y, &pool));
//
// Thread safety: MatMul may run concurrently on different pools. The first prefill call sets
// OpenBLAS to one thread for the whole process (parallelism comes from `pool`).
#ifndef SHARDSERVE_KERNELS_CPU_MATMUL_H_
#define SHARDSERVE_KERNELS_CPU_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/tensor.h"

namespace shardserve::cpu {

// x: [m, k] F32 (or any rank whose last dimension is k; leading dimensions are flattened),
// w: [n, k], y: [m, n] F32 (same flattening). Rows of each may be strided.
// pool may be null (runs on the calling thread). Returns InvalidArgument for mismatched shapes,
// unsupported dtypes or non-CPU tensors. y must not overlap x or w.
absl::Status MatMul(const TensorView& x, const TensorView& w, const TensorView& y,
                    ThreadPool* pool);

// Projections of one input, as one job: ys[i] = x . ws[i]^T for every i (q, k and v; at most
// kMaxSharedInputs of them). On the row-by-row path x is quantized once per weight type, and the
// output columns of all the weights are split over the pool together, so that a small batch pays
// for one parallel job instead of one per weight. Each ys[i] is bit-identical to
// MatMul(x, ws[i], ys[i], pool). The ys must not overlap x, the ws or each other.
inline constexpr int kMaxSharedInputs = 4;
absl::Status MatMulMulti(const TensorView& x, absl::Span<const TensorView> ws,
                         absl::Span<const TensorView> ys, ThreadPool* pool);

// The gated MLP's first half: out = silu(x . w_gate^T) * (x . w_up^T), elementwise as SwiGlu
// (swiglu.h). On the row-by-row path each run of columns gets both products and their SwiGLU on
// one thread while they are in its cache, in one parallel job. Bit-identical to two MatMul calls
// followed by SwiGlu. out: [m, n] packed F32, not overlapping x or the weights.
absl::Status MatMulSwiGlu(const TensorView& x, const TensorView& w_gate, const TensorView& w_up,
                          const TensorView& out, ThreadPool* pool);

// Tuning knobs and an explicit kernel level, for tests and benchmarks.
struct MatMulOptions {
  Isa isa = Isa::kScalar;  // REQUIRES: <= MaxSupportedIsa()
  // m at or below this uses the row-by-row (integer for quantized weights) path; -1: the
  // default (quantized weights always, float weights up to 96 rows).
  int64_t max_decode_rows = -1;
};
absl::Status MatMulWithOptions(const TensorView& x, const TensorView& w, const TensorView& y,
                               ThreadPool* pool, const MatMulOptions& options);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_MATMUL_H_
