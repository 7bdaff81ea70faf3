#include "kernels/cpu/attention_tile.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "common/fp16.h"
#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

// NOTES: noipa keeps one compiled copy of each (no inlining, no clones), whose vectorised sums
// the F16 kernels below reuse; a copy specialised there could be vectorised differently and
// round differently.
__attribute__((noipa)) void QkScalar(const float* q, int m, int head_dim,
                                     const float* const* k_rows, int n, float* s, int ld_s) {
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

__attribute__((noipa)) void PvScalar(const float* p, int ld_p, int m, const float* const* v_rows,
                                     int n, int head_dim, float* o) {
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

// The F16 kernels convert each cached row into floats and run the F32 kernel on it, one row at
// a time, which is the same arithmetic as the F32 kernel over the converted rows.
void ToFloatRow(const uint16_t* src, int n, float* dst) {
  for (int d = 0; d < n; ++d) dst[d] = Fp16ToFloat(src[d]);
}

void ToF16Scalar(const float* src, int n, uint16_t* dst) {
  for (int i = 0; i < n; ++i) dst[i] = FloatToFp16(src[i]);
}

void QkScalarF16(const float* q, int m, int head_dim, const uint16_t* const* k_rows, int n,
                 float* s, int ld_s) {
  thread_local std::vector<float> row;
  row.resize(head_dim);
  const float* rows[1] = {row.data()};
  for (int j = 0; j < n; ++j) {
    ToFloatRow(k_rows[j], head_dim, row.data());
    QkScalar(q, m, head_dim, rows, 1, s + j, ld_s);
  }
}

void PvScalarF16(const float* p, int ld_p, int m, const uint16_t* const* v_rows, int n,
                 int head_dim, float* o) {
  thread_local std::vector<float> row;
  row.resize(head_dim);
  const float* rows[1] = {row.data()};
  for (int j = 0; j < n; ++j) {
    ToFloatRow(v_rows[j], head_dim, row.data());
    PvScalar(p + j, ld_p, m, rows, 1, head_dim, o);
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
  static const AttentionTileKernels kernels = {Isa::kScalar,      1,           QkScalar,
                                               PvScalar,          QkScalarF16, PvScalarF16,
                                               SoftmaxStepScalar, ToF16Scalar};
  return kernels;
}

const AttentionTileKernels& GetAttentionTileKernels(int head_dim) {
  if (ActiveIsa() >= Isa::kAvx2 && head_dim % AttentionTileAvx2().head_dim_multiple == 0) {
    return AttentionTileAvx2();
  }
  return AttentionTileScalar();
}

}  // namespace shardserve::cpu
