#include "kernels/cpu/rms_norm.h"

#include <algorithm>
#include <cmath>

namespace shardserve::cpu {
namespace {

void RmsNormRow(const float* x, const float* weight, int64_t dim, float eps, float* out) {
  double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
  for (int64_t i = 0; i < dim; ++i) {
    const double v = x[i];
    sum_sq += v * v;
  }
  const float inv_rms =
      static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps));
  for (int64_t i = 0; i < dim; ++i) out[i] = (x[i] * inv_rms) * weight[i];
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool* pool) {
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) RmsNormRow(x + r * dim, weight, dim, eps, out + r * dim);
  };
  // Below ~32k elements a parallel job costs more than it saves.
  if (pool == nullptr || rows * dim < (1 << 15)) {
    run(0, rows);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, (1 << 13) / std::max<int64_t>(dim, 1));
  pool->ParallelFor(rows, grain, run);
}

}  // namespace shardserve::cpu
