// SwiGLU, the gated activation of Llama-style MLPs: out = silu(gate) * up, silu(x) = x / (1 +
// exp(-x)).
//
//   SwiGlu(gate, up, num_tokens, intermediate, act, &pool);  // [num_tokens, intermediate]
#ifndef SHARDSERVE_KERNELS_CPU_SWIGLU_H_
#define SHARDSERVE_KERNELS_CPU_SWIGLU_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// gate, up, out: [rows, inter]. out may alias gate or up exactly.
// exp is ExpF (vec_exp.h, ~1 ulp), so results are within a few float ulp of exact. An element's
// result depends only on its gate and up values (not on its position, the row count, the threads
// or the instruction set).
void SwiGlu(const float* gate, const float* up, int64_t rows, int64_t inter, float* out,
            ThreadPool* pool = nullptr);

// Fused layout, as produced by one matmul against concatenated [gate; up] weights:
// gate_up: [rows, 2 * inter] (gate in the first half of each row, up in the second),
// out:     [rows, inter]; must not overlap gate_up.
void SwiGluFused(const float* gate_up, int64_t rows, int64_t inter, float* out,
                 ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_SWIGLU_H_
