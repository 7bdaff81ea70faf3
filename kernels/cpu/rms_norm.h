// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * weight.
//
// Used for the decoder's input/post-attention norms ([num_tokens, hidden]) and for Qwen3's
// QK-norm, which normalises each head separately: pass rows = num_tokens * num_heads and
// dim = head_dim.
//
//   RmsNorm(x, w, num_tokens, hidden, 1e-6f, x, &pool);  // in place
#ifndef SHARDSERVE_KERNELS_CPU_RMS_NORM_H_
#define SHARDSERVE_KERNELS_CPU_RMS_NORM_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// x:      [rows, dim]
// weight: [dim]
// out:    [rows, dim]; may alias x exactly (in place), must not overlap it otherwise.
// The sum of squares is accumulated in double, so each output is within a few float ulp of the
// exact result; the scaling is done in float in the order (x * rsqrt) * weight, as in Hugging
// Face's LlamaRMSNorm. pool may be null (runs on the calling thread).
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_RMS_NORM_H_
