// AVX2 SwiGLU, bit-identical to the portable loop of swiglu.cc. Compiled with -mavx2 -mfma, so
// nothing here may run before the dispatcher (swiglu.cc) has checked the CPU; keep this file free
// of inline library templates, whose AVX2 copies the linker could pick for callers elsewhere.
// NOTES: built with -ffp-contract=off (BUILD.bazel): GCC implements these intrinsics as vector
// arithmetic and would otherwise fuse a multiply and an add into one FMA.
#include <immintrin.h>

#include "kernels/cpu/swiglu_internal.h"

namespace shardserve::cpu::internal {
namespace {

// ExpF (vec_exp.h) on eight lanes with the same operations in the same order (separate
// multiplies and adds, no FMA), so that every lane is bit-identical to the portable kernel: a
// model's activations are re-quantized before each matmul, where a last-bit difference can flip
// a rounding and, through it, a near-tie between tokens.
inline __m256 ExpF8(__m256 x) {
  x = _mm256_min_ps(x, _mm256_set1_ps(89.0f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-104.0f));
  const __m256 round = _mm256_set1_ps(12582912.0f);
  const __m256 t = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), round);
  const __m256 n = _mm256_sub_ps(t, round);
  const __m256i n_int = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b400000));
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  const __m256i n1 = _mm256_srai_epi32(n_int, 1);
  const __m256i n2 = _mm256_sub_epi32(n_int, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// silu(g) * u = g e^g / (1 + e^g) * u with e^-|g|, as SwiGluSpan in swiglu.cc.
inline __m256 SwiGlu8(__m256 g, __m256 u) {
  const __m256 negative = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 neg_abs = _mm256_or_ps(g, _mm256_set1_ps(-0.0f));  // -|g|
  const __m256 e = ExpF8(neg_abs);
  const __m256 num = _mm256_blendv_ps(g, _mm256_mul_ps(g, e), negative);
  return _mm256_mul_ps(_mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

}  // namespace

void SwiGluSpanAvx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, SwiGlu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    alignas(32) float g[8] = {0}, u[8] = {0};
    for (int64_t j = i; j < n; ++j) {
      g[j - i] = gate[j];
      u[j - i] = up[j];
    }
    _mm256_store_ps(g, SwiGlu8(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = i; j < n; ++j) out[j] = g[j - i];
  }
}

}  // namespace shardserve::cpu::internal
