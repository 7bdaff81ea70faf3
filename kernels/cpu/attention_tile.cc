#include "kernels/cpu/attention_tile.h"

#include <limits>

#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

void QkScalar(const float* q, int m, int head_dim, const float* const* k_rows, int n, float* s,
              int ld_s) {
  for (int i = 0; i < m; ++i) {
    const float* qi = q + static_cast<long>(i) * head_dim;
    for (int j = 0; j < n; ++j) {
      const float* kj = k_rows[j];
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int d = 0; d < head_dim; ++d) acc += qi[d] * kj[d];
      s[static_cast<long>(i) * ld_s + j] = acc;
    }
  }
}

void PvScalar(const float* p, int ld_p, int m, const float* const* v_rows, int n, int head_dim,
              float* o) {
  for (int i = 0; i < m; ++i) {
    float* oi = o + static_cast<long>(i) * head_dim;
    const float* pi = p + static_cast<long>(i) * ld_p;
    for (int j = 0; j < n; ++j) {
      const float w = pi[j];
      if (w == 0.0f) continue;  // masked keys
      const float* vj = v_rows[j];
#pragma omp simd
      for (int d = 0; d < head_dim; ++d) oi[d] += w * vj[d];
    }
  }
}

float SoftmaxStepScalar(float* s, int n, float* row_max, float* row_sum) {
  float new_max = *row_max;
  for (int j = 0; j < n; ++j) new_max = s[j] > new_max ? s[j] : new_max;
  if (new_max == -std::numeric_limits<float>::infinity()) {
    for (int j = 0; j < n; ++j) s[j] = 0.0f;
    return 1.0f;
  }
  // Key j is added into partial sum j % kLanes, and the partials are added in one fixed order:
  // a row's sum then rounds alike however many masked keys (exp 0) follow its last visible
  // one, that is, wherever the tile's rows end. (A vectorised reduction whose remainder is
  // added after the lanes would not.)
  constexpr int kLanes = 8;
  float lanes[kLanes] = {};
  for (int j = 0; j < n; ++j) {
    const float e = ExpF(s[j] - new_max);
    s[j] = e;
    lanes[j % kLanes] += e;
  }
  const float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                    ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  const float alpha = ExpF(*row_max - new_max);
  *row_sum = *row_sum * alpha + sum;
  *row_max = new_max;
  return alpha;
}

}  // namespace

const AttentionTileKernels& AttentionTileScalar() {
  static const AttentionTileKernels kernels = {Isa::kScalar, 1, QkScalar, PvScalar,
                                               SoftmaxStepScalar};
  return kernels;
}

const AttentionTileKernels& GetAttentionTileKernels(int head_dim) {
  if (ActiveIsa() >= Isa::kAvx2 && head_dim % AttentionTileAvx2().head_dim_multiple == 0) {
    return AttentionTileAvx2();
  }
  return AttentionTileScalar();
}

}  // namespace shardserve::cpu
