#include "kernels/cpu/swiglu.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace shardserve::cpu
