// Small vector operations of a decoder step: residual adds, biases, scaling, the Qwen2-MoE
// shared-expert gate, row softmax, argmax, and 16-bit float to float conversion.
//
// Each is a single pass over memory; the functions taking a ThreadPool split large inputs over
// it (pool may be null), the others are meant for inputs of at most a few rows.
#ifndef SHARDSERVE_KERNELS_CPU_ELEMENTWISE_H_
#define SHARDSERVE_KERNELS_CPU_ELEMENTWISE_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// x[i] += y[i] for i < n (the residual connection). x and y are [n]; y may equal x.
void AddInPlace(float* x, const float* y, int64_t n, ThreadPool* pool = nullptr);

// x[r] += bias for every row. x: [rows, cols], bias: [cols].
void AddBias(float* x, const float* bias, int64_t rows, int64_t cols, ThreadPool* pool = nullptr);

// x[i] *= scale for i < n.
void Scale(float* x, float scale, int64_t n, ThreadPool* pool = nullptr);

// Qwen2-MoE's gated shared expert, per token t:
//   out[t] += sigmoid(dot(x[t], gate)) * shared_out[t]
// x, shared_out, out: [num_tokens, hidden]; gate: [hidden] (shared_expert_gate, one output).
// The dot product is accumulated in double.
void SigmoidGatedAdd(const float* x, const float* gate, const float* shared_out, int64_t num_tokens,
                     int64_t hidden, float* out);

// Numerically stable softmax of each row, in place. x: [rows, cols].
void SoftmaxRows(float* x, int64_t rows, int64_t cols);

// Index of the largest of x[0, n); the lowest such index on ties; NaNs are skipped. -1 if n == 0
// or all are NaN.
int64_t Argmax(const float* x, int64_t n);

// Argmax of each row. x: [rows, cols], out: [rows].
void ArgmaxRows(const float* x, int64_t rows, int64_t cols, int32_t* out);

// IEEE half (F16) and bfloat16 arrays to float, exactly (every value, subnormals, inf, NaN).
// src: [n] bit patterns, dst: [n].
void F16ToFloat(const uint16_t* src, int64_t n, float* dst, ThreadPool* pool = nullptr);
void Bf16ToFloat(const uint16_t* src, int64_t n, float* dst, ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_ELEMENTWISE_H_
