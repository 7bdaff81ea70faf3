// The inner loops of PagedAttention: one tile of query rows against one chunk of keys, with one
// implementation per instruction-set level (attention_tile.cc is the portable one,
// attention_tile_avx2.cc the AVX2 + FMA one). Internal to kernels/cpu; callers use
// paged_attention.h.
//
// Keys and values are addressed through row pointers because a chunk of the paged KV cache is
// scattered over blocks; each pointer addresses head_dim contiguous floats (or halves).
#ifndef SHARDSERVE_KERNELS_CPU_ATTENTION_TILE_H_
#define SHARDSERVE_KERNELS_CPU_ATTENTION_TILE_H_

#include <cstdint>

#include "kernels/cpu/cpu_features.h"

namespace shardserve::cpu {

struct AttentionTileKernels {
  Isa isa;
  // Heads whose size this implementation handles; the portable one handles every size.
  int head_dim_multiple;
  // s[i * ld_s + j] = dot(q_i, k_rows[j]) for i < m, j < n; q_i = q + i * head_dim.
  void (*qk)(const float* q, int m, int head_dim, const float* const* k_rows, int n, float* s,
             int ld_s);
  // o_i[d] += sum_{j < n} p[i * ld_p + j] * v_rows[j][d] for i < m, d < head_dim;
  // o_i = o + i * head_dim.
  void (*pv)(const float* p, int ld_p, int m, const float* const* v_rows, int n, int head_dim,
             float* o);
  // qk and pv over an F16 cache: rows of IEEE half bit patterns, each element converted to float
  // exactly, so the results are the same bits as qk and pv on the converted rows.
  void (*qk_f16)(const float* q, int m, int head_dim, const uint16_t* const* k_rows, int n,
                 float* s, int ld_s);
  void (*pv_f16)(const float* p, int ld_p, int m, const uint16_t* const* v_rows, int n,
                 int head_dim, float* o);
  // One online-softmax step (flash attention) on a row of n scores: with
  // m = max(*row_max, s[0..n)), sets s[j] = exp(s[j] - m), *row_sum = *row_sum * alpha +
  // sum_j s[j], *row_max = m, and returns alpha = exp(old *row_max - m), the factor by which the
  // row's output accumulator must be scaled. Masked scores (-inf) become 0; if every score so
  // far is -inf, s becomes 0 and the row state is unchanged (alpha 1). Probabilities may be
  // flushed to 0 below FLT_MIN.
  float (*softmax_step)(float* s, int n, float* row_max, float* row_sum);
  // dst[i] = src[i] as an IEEE half, rounded to nearest even (overflow to inf, NaN kept NaN):
  // how keys and values enter an F16 cache.
  void (*to_f16)(const float* src, int n, uint16_t* dst);
};

// The portable kernels.
const AttentionTileKernels& AttentionTileScalar();
// The AVX2 + FMA kernels. REQUIRES: MaxSupportedIsa() >= Isa::kAvx2 before calling them.
const AttentionTileKernels& AttentionTileAvx2();

// The best kernels for ActiveIsa() that handle head_dim.
const AttentionTileKernels& GetAttentionTileKernels(int head_dim);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_ATTENTION_TILE_H_
