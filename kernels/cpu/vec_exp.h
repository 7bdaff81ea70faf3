// ExpF: an inline float exp that compilers vectorise, for kernels that apply exp to whole rows
// (softmax, SiLU, attention). Maximum error about 1.2 ulp over the float range; overflows to
// +inf above ~88.72, underflows gracefully (subnormals) down to ~-103.9 and to 0 below; NaN in,
// NaN out.
//
// Why not std::exp: libm's expf is a call per element, which stops the loop around it from
// being vectorised and then dominates softmax-heavy kernels.
//
// NOTES: GCC only if-converts the clamps below (and so vectorises loops calling ExpF) with
// -fno-trapping-math, and vectorises loops of unknown trip count at -O3; targets that include
// this header set both (OPS_COPTS in BUILD.bazel).
#ifndef SHARDSERVE_KERNELS_CPU_VEC_EXP_H_
#define SHARDSERVE_KERNELS_CPU_VEC_EXP_H_

#include <cstdint>
#include <cstring>

namespace shardserve::cpu {

inline float ExpF(float x) {
  // exp(x) = 2^n * exp(r) with n = round(x / ln2) and |r| <= ln2 / 2. ln2 is split in two
  // (Cody-Waite) so that n * kLn2Hi is exact and r keeps full precision.
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
  constexpr float kRound = 12582912.0f;
  constexpr uint32_t kRoundBits = 0x4b400000u;
  x = x > 89.0f ? 89.0f : x;
  x = x < -104.0f ? -104.0f : x;
  const float t = x * kLog2e + kRound;
  const float n = t - kRound;
  uint32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof(t_bits));
  const int32_t n_int = static_cast<int32_t>(t_bits - kRoundBits);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  // Degree-7 Taylor polynomial: the truncation error on |r| <= 0.347 is below 0.1 ulp.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n as two factors, so that n = 128 (results near FLT_MAX) and n < -126 (subnormal
  // results) need no special cases.
  const int32_t n1 = n_int >> 1;
  const int32_t n2 = n_int - n1;
  const uint32_t s1_bits = static_cast<uint32_t>(n1 + 127) << 23;
  const uint32_t s2_bits = static_cast<uint32_t>(n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &s1_bits, sizeof(s1));
  std::memcpy(&s2, &s2_bits, sizeof(s2));
  return p * s1 * s2;
}

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_VEC_EXP_H_
