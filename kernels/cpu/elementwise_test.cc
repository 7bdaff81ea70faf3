#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TEST(ElementwiseTest, AddBiasScale) {
  ThreadPool pool(3);
  for (int64_t n : {int64_t{5}, int64_t{200000}}) {
    auto x = Random(n, 1);
    const auto y = Random(n, 2);
    const auto x0 = x;
    AddInPlace(x.data(), y.data(), n, &pool);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], x0[i] + y[i]);
    Scale(x.data(), 0.5f, n, &pool);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], (x0[i] + y[i]) * 0.5f);
  }
  const int64_t rows = 300, cols = 896;
  auto x = Random(rows * cols, 3);
  const auto bias = Random(cols, 4);
  const auto x0 = x;
  AddBias(x.data(), bias.data(), rows, cols, &pool);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(x[r * cols + c], x0[r * cols + c] + bias[c]);
  }
}

TEST(ElementwiseTest, SigmoidGatedAdd) {
  const int64_t tokens = 4, hidden = 2048;
  const auto x = Random(tokens * hidden, 5);
  const auto gate = Random(hidden, 6, 0.1f);
  const auto shared = Random(tokens * hidden, 7);
  auto out = Random(tokens * hidden, 8);
  const auto out0 = out;
  SigmoidGatedAdd(x.data(), gate.data(), shared.data(), tokens, hidden, out.data());
  for (int64_t t = 0; t < tokens; ++t) {
    double dot = 0.0;
    for (int64_t i = 0; i < hidden; ++i) dot += static_cast<double>(x[t * hidden + i]) * gate[i];
    const double g = 1.0 / (1.0 + std::exp(-dot));
    for (int64_t i = 0; i < hidden; ++i) {
      const double want = out0[t * hidden + i] + g * shared[t * hidden + i];
      ASSERT_NEAR(out[t * hidden + i], want, 3e-7);
    }
  }
}

TEST(ElementwiseTest, SoftmaxRows) {
  const int64_t rows = 3, cols = 1000;
  auto x = Random(rows * cols, 9, 30.0f);
  x[5] = -std::numeric_limits<float>::infinity();
  const auto x0 = x;
  SoftmaxRows(x.data(), rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    double max = -INFINITY, sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) max = std::max<double>(max, x0[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(x0[r * cols + c] - max);
    for (int64_t c = 0; c < cols; ++c) {
      const double diff = x0[r * cols + c] - max;
      if (std::isinf(diff)) continue;  // checked below
      const double want = std::exp(diff) / sum;
      // x - max is rounded to float before exp: relative error up to |x - max| * 2^-24.
      ASSERT_NEAR(x[r * cols + c], want, (5e-7 + 6e-8 * std::fabs(diff)) * want + 1e-37);
    }
  }
  EXPECT_EQ(x[5], 0.0f);
}

TEST(ElementwiseTest, Argmax) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {1.0f, 3.0f, nan, 3.0f, -2.0f};
  EXPECT_EQ(Argmax(x.data(), x.size()), 1);
  EXPECT_EQ(Argmax(x.data(), 0), -1);
  const std::vector<float> all_nan = {nan, nan};
  EXPECT_EQ(Argmax(all_nan.data(), 2), -1);
  const std::vector<float> neg = {-5.0f, -1.0f, -3.0f};
  EXPECT_EQ(Argmax(neg.data(), 3), 1);
  const std::vector<float> rows = {0.0f, 2.0f, 1.0f, 7.0f, 7.0f, 0.0f};
  std::vector<int32_t> out(2);
  ArgmaxRows(rows.data(), 2, 3, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{1, 0}));
}

TEST(ElementwiseTest, F16AllBitPatterns) {
  std::vector<uint16_t> src(1 << 16);
  for (int i = 0; i < (1 << 16); ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> dst(src.size());
  ThreadPool pool(2);
  F16ToFloat(src.data(), src.size(), dst.data(), &pool);
  for (int i = 0; i < (1 << 16); ++i) {
    const float want = Fp16ToFloat(static_cast<uint16_t>(i));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(dst[i])) << i;
      ASSERT_EQ(std::signbit(dst[i]), std::signbit(want)) << i;
    } else {
      ASSERT_EQ(dst[i], want) << i;
      ASSERT_EQ(std::signbit(dst[i]), std::signbit(want)) << i;
    }
  }
  // Spot values computed by hand.
  EXPECT_EQ(dst[0x3c00], 1.0f);
  EXPECT_EQ(dst[0xc000], -2.0f);
  EXPECT_EQ(dst[0x0001], std::ldexp(1.0f, -24));
  EXPECT_EQ(dst[0x7bff], 65504.0f);
  EXPECT_EQ(dst[0x7c00], std::numeric_limits<float>::infinity());
}

TEST(ElementwiseTest, Bf16AllBitPatterns) {
  std::vector<uint16_t> src(1 << 16);
  for (int i = 0; i < (1 << 16); ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> dst(src.size());
  Bf16ToFloat(src.data(), src.size(), dst.data());
  for (int i = 0; i < (1 << 16); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &dst[i], sizeof(bits));
    ASSERT_EQ(bits, static_cast<uint32_t>(i) << 16);
  }
  EXPECT_EQ(dst[0x3f80], 1.0f);
  EXPECT_EQ(dst[0xc040], -3.0f);
}

}  // namespace
}  // namespace shardserve::cpu
