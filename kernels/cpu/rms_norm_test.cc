#include "kernels/cpu/rms_norm.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& w,
                              int64_t rows, int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-30) << "at " << i;
  }
}

TEST(RmsNormTest, MatchesReference) {
  for (int64_t dim : {1, 7, 64, 576, 4096, 8192}) {
    const int64_t rows = 5;
    const auto x = Random(rows * dim, 1 + dim, -3.0f, 3.0f);
    const auto w = Random(dim, 2 + dim, 0.5f, 1.5f);
    std::vector<float> y(x.size());
    RmsNorm(x.data(), w.data(), rows, dim, 1e-6f, y.data());
    ExpectClose(y, Reference(x, w, rows, dim, 1e-6));
  }
}

TEST(RmsNormTest, LargeOffsetsKeepPrecision) {
  // Values with a large common offset: float accumulation of squares would drift.
  const int64_t dim = 8192;
  auto x = Random(dim, 3, 99.0f, 101.0f);
  const auto w = Random(dim, 4, 0.5f, 1.5f);
  std::vector<float> y(dim);
  RmsNorm(x.data(), w.data(), 1, dim, 1e-5f, y.data());
  ExpectClose(y, Reference(x, w, 1, dim, 1e-5));
}

TEST(RmsNormTest, InPlaceAndThreaded) {
  const int64_t rows = 64, dim = 896;  // Qwen2-0.5B hidden size
  const auto x = Random(rows * dim, 5, -2.0f, 2.0f);
  const auto w = Random(dim, 6, -1.0f, 1.0f);
  const auto want = Reference(x, w, rows, dim, 1e-6);
  ThreadPool pool(3);
  std::vector<float> y = x;
  RmsNorm(y.data(), w.data(), rows, dim, 1e-6f, y.data(), &pool);
  ExpectClose(y, want);
}

TEST(RmsNormTest, PerHeadQkNorm) {
  // Qwen3 QK-norm: [num_tokens, num_heads, head_dim] normalised per head.
  const int64_t tokens = 3, heads = 4, head_dim = 128;
  const auto x = Random(tokens * heads * head_dim, 7, -1.0f, 1.0f);
  const auto w = Random(head_dim, 8, 0.0f, 2.0f);
  std::vector<float> y(x.size());
  RmsNorm(x.data(), w.data(), tokens * heads, head_dim, 1e-6f, y.data());
  ExpectClose(y, Reference(x, w, tokens * heads, head_dim, 1e-6));
}

}  // namespace
}  // namespace shardserve::cpu
