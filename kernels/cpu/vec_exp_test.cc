#include "kernels/cpu/vec_exp.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

// Error of `got` against the exact value in units of the float spacing at the exact value.
double UlpError(float got, double exact) {
  const float rounded = static_cast<float>(exact);
  const double ulp = std::nextafter(rounded, std::numeric_limits<float>::infinity()) - rounded;
  return std::fabs(static_cast<double>(got) - exact) / ulp;
}

TEST(VecExpTest, WithinTwoUlpOverNormalRange) {
  // Every 101st float bit pattern whose value lies in [-87, 88.7] (results normal): ~20M values
  // of all magnitudes, including subnormal and zero arguments.
  double max_ulp = 0.0;
  float worst = 0.0f;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 101) {
    const uint32_t b = static_cast<uint32_t>(bits);
    float x;
    std::memcpy(&x, &b, sizeof(x));
    if (!(x >= -87.0f && x <= 88.7f)) continue;
    const double err = UlpError(ExpF(x), std::exp(static_cast<double>(x)));
    if (err > max_ulp) {
      max_ulp = err;
      worst = x;
    }
  }
  EXPECT_LT(max_ulp, 2.0) << "at x = " << worst;
}

TEST(VecExpTest, SpecialValues) {
  EXPECT_EQ(ExpF(0.0f), 1.0f);
  EXPECT_EQ(ExpF(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(ExpF(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_EQ(ExpF(89.0f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(ExpF(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(ExpF(std::numeric_limits<float>::quiet_NaN())));
  // Largest finite results and subnormal results.
  EXPECT_LT(UlpError(ExpF(88.72f), std::exp(static_cast<double>(88.72f))), 2.0);
  const float sub = ExpF(-95.0f);
  EXPECT_GT(sub, 0.0f);
  EXPECT_NEAR(sub, std::exp(-95.0), 2e-45);
}

}  // namespace
}  // namespace shardserve::cpu
