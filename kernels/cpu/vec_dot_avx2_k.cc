// AVX2 kernels for the K types (Q4_K, Q6_K) against Q8_K activations.
#include <immintrin.h>

#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

inline __m256i LoadSi256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// UnpackQ4KScales for all eight sub-blocks, kept local to this file (see simd_avx2.h NOTES).
void UnpackQ4KScalesAll(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = (s[j + 8] & 0xf) | ((s[j] >> 6) << 4);
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

float DotQ4K(int64_t nsb, const BlockQ4_K* w, const BlockQ8_K* x) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  for (int64_t b = 0; b < nsb; ++b) {
    uint8_t sc[8], mn[8];
    int summ = 0;
    UnpackQ4KScalesAll(w[b].scales, sc, mn);
    for (int s = 0; s < 8; ++s) {
      summ += mn[s] * (x[b].bsums[2 * s] + x[b].bsums[2 * s + 1]);
    }
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i raw = LoadSi256(w[b].qs + 32 * g);
      const __m256i lo = _mm256_and_si256(raw, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
      const __m256i plo = _mm256_maddubs_epi16(lo, LoadSi256(x[b].qs + 64 * g));
      const __m256i phi = _mm256_maddubs_epi16(hi, LoadSi256(x[b].qs + 64 * g + 32));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * g])));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * g + 1])));
    }
    const float d = _cvtsh_ss(w[b].d) * x[b].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    acc_min += _cvtsh_ss(w[b].dmin) * x[b].d * static_cast<float>(summ);
  }
  return HorizontalSum(acc) - acc_min;
}

// q (0..63) is multiplied unsigned; the -32 offset is applied once per sub-block through bsums.
float DotQ6K(int64_t nsb, const BlockQ6_K* w, const BlockQ8_K* x) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    const int8_t* sc = w[b].scales;
    int bias = 0;
    for (int s = 0; s < 16; ++s) bias += sc[s] * x[b].bsums[s];
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i ql0 = LoadSi256(w[b].ql + 64 * half);
      const __m256i ql1 = LoadSi256(w[b].ql + 64 * half + 32);
      const __m256i qh = LoadSi256(w[b].qh + 32 * half);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                             _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                             _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                             _mm256_and_si256(qh, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
      for (int t = 0; t < 4; ++t) {
        const int s = 8 * half + 2 * t;  // sub-blocks s and s + 1 (16 elements each)
        const __m256i p = _mm256_maddubs_epi16(q[t], LoadSi256(x[b].qs + 128 * half + 32 * t));
        const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
      }
    }
    const float d = _cvtsh_ss(w[b].d) * x[b].d;
    const __m256i bias_v = _mm256_setr_epi32(32 * bias, 0, 0, 0, 0, 0, 0, 0);
    acc =
        _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, bias_v)), acc);
  }
  return HorizontalSum(acc);
}

template <typename W, float (*Dot)(int64_t, const W*, const BlockQ8_K*)>
void KTile(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
           int64_t nx, float* y, int64_t ys) {
  for (int64_t i = 0; i < nx; ++i) {
    const auto* xr = reinterpret_cast<const BlockQ8_K*>(x + i * xs);
    for (int64_t j = 0; j < nw; ++j) {
      y[i * ys + j] = Dot(k / kQkK, reinterpret_cast<const W*>(w + j * ws), xr);
    }
  }
}

}  // namespace

void DotTileAvx2Q4_K(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  KTile<BlockQ4_K, DotQ4K>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2Q6_K(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  KTile<BlockQ6_K, DotQ6K>(k, w, ws, nw, x, xs, nx, y, ys);
}

}  // namespace shardserve::cpu::internal
