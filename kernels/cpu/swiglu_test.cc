#include "kernels/cpu/swiglu.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

double Reference(float gate, float up) {
  const double g = gate;
  return g / (1.0 + std::exp(-g)) * up;
}

// Relative tolerance of a few float ulp; absolute near zero.
void ExpectClose(float got, double want) { ASSERT_NEAR(got, want, 4e-7 * std::fabs(want) + 1e-37); }

TEST(SwiGluTest, TwoBuffers) {
  const int64_t rows = 3, inter = 1000;
  const auto gate = Random(rows * inter, 1, 12.0f);
  const auto up = Random(rows * inter, 2, 2.0f);
  std::vector<float> out(rows * inter);
  SwiGlu(gate.data(), up.data(), rows, inter, out.data());
  for (int64_t i = 0; i < rows * inter; ++i) ExpectClose(out[i], Reference(gate[i], up[i]));
}

TEST(SwiGluTest, ExtremeGates) {
  const std::vector<float> gate = {-200.0f, -90.0f, -20.0f, -1e-30f, 0.0f,
                                   1e-30f,  20.0f,  90.0f,  200.0f};
  const std::vector<float> up(gate.size(), 1.5f);
  std::vector<float> out(gate.size());
  SwiGlu(gate.data(), up.data(), 1, gate.size(), out.data());
  for (size_t i = 0; i < gate.size(); ++i) {
    EXPECT_FALSE(std::isnan(out[i])) << gate[i];
    ExpectClose(out[i], Reference(gate[i], up[i]));
  }
}

TEST(SwiGluTest, InPlaceThreadedAndFused) {
  const int64_t rows = 5, inter = 4864;  // Qwen2-0.5B intermediate size
  const auto gate = Random(rows * inter, 3, 6.0f);
  const auto up = Random(rows * inter, 4, 2.0f);
  ThreadPool pool(3);
  std::vector<float> in_place = gate;
  SwiGlu(in_place.data(), up.data(), rows, inter, in_place.data(), &pool);

  std::vector<float> fused(rows * 2 * inter);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(gate.begin() + r * inter, gate.begin() + (r + 1) * inter,
              fused.begin() + r * 2 * inter);
    std::copy(up.begin() + r * inter, up.begin() + (r + 1) * inter,
              fused.begin() + r * 2 * inter + inter);
  }
  std::vector<float> fused_out(rows * inter);
  SwiGluFused(fused.data(), rows, inter, fused_out.data(), &pool);

  std::vector<float> one_row(inter);
  SwiGluFused(fused.data() + 2 * 2 * inter, 1, inter, one_row.data(), &pool);

  for (int64_t i = 0; i < rows * inter; ++i) {
    const double want = Reference(gate[i], up[i]);
    ExpectClose(in_place[i], want);
    ExpectClose(fused_out[i], want);
  }
  for (int64_t i = 0; i < inter; ++i)
    ExpectClose(one_row[i], Reference(gate[2 * inter + i], up[2 * inter + i]));
}

// Every instruction set computes the portable loop's exact bits: a last-bit change in an
// activation can flip its re-quantization before the next matmul, and so a model's tokens.
TEST(SwiGluTest, SameBitsAsThePortableLoop) {
  const int64_t n = 4099;
  auto gate = Random(n, 7, 40.0f);
  const auto up = Random(n, 8, 3.0f);
  gate[0] = -200.0f;
  gate[1] = 200.0f;
  gate[2] = -0.0f;
  gate[3] = 1e-30f;
  std::vector<float> out(n);
  SwiGlu(gate.data(), up.data(), 1, n, out.data());
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = ExpF(g < 0.0f ? g : -g);
    const float want = (g < 0.0f ? g * e : g) / (1.0f + e) * up[i];
    ASSERT_EQ(out[i], want) << "gate " << g;
  }
}

// The fused gate/up matmul applies SwiGlu to runs of 16 columns and a batch splits rows over
// threads at any element: a value's result must not depend on where in a span it falls.
TEST(SwiGluTest, ResultDoesNotDependOnPosition) {
  const int64_t n = 203;
  const auto gate = Random(n, 5, 30.0f);
  const auto up = Random(n, 6, 2.0f);
  std::vector<float> whole(n);
  SwiGlu(gate.data(), up.data(), 1, n, whole.data());
  ThreadPool pool(2);
  for (int64_t width : {1, 3, 8, 13, 16, 29}) {
    std::vector<float> pieces(n);
    for (int64_t b = 0; b < n; b += width) {
      const int64_t w = std::min(width, n - b);
      SwiGlu(gate.data() + b, up.data() + b, 1, w, pieces.data() + b);
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(pieces[i], whole[i]) << "width " << width << " " << i;
  }
  // The same values as rows of a larger, threaded call.
  const int64_t rows = 200;
  std::vector<float> big_gate(rows * n), big_up(rows * n), big_out(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(gate.begin(), gate.end(), big_gate.begin() + r * n);
    std::copy(up.begin(), up.end(), big_up.begin() + r * n);
  }
  SwiGlu(big_gate.data(), big_up.data(), rows, n, big_out.data(), &pool);
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_EQ(big_out[i], whole[i % n]) << i;
}

}  // namespace
}  // namespace shardserve::cpu
