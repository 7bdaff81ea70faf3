// Small AVX2 helpers shared by the AVX2 kernels. Include only from files compiled with
// -mavx2 -mfma -mf16c.
//
// NOTES: the helpers are `static` so each translation unit keeps its own copy. An ordinary
// inline function compiled with AVX2 flags is a weak symbol the linker may pick for callers in
// baseline code too, which would then fault on CPUs without AVX2.
#ifndef SHARDSERVE_KERNELS_CPU_SIMD_AVX2_H_
#define SHARDSERVE_KERNELS_CPU_SIMD_AVX2_H_

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace shardserve::cpu::internal {

static inline uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

static inline float HalfToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

// ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)): the order HorizontalSum4 adds each of its
// vectors in, so that a dot product comes out bit-identical whichever tile shape computed it: a
// request's logits (and its greedy tokens) must not change with the other requests in its batch.
static inline float HorizontalSum(__m256 v) {
  __m256 h = _mm256_hadd_ps(v, v);
  h = _mm256_hadd_ps(h, h);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// [sum(a), sum(b), sum(c), sum(d)].
static inline __m128 HorizontalSum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

}  // namespace shardserve::cpu::internal

#endif  // SHARDSERVE_KERNELS_CPU_SIMD_AVX2_H_
