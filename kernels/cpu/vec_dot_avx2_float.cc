// AVX2 kernels for float weights (F32, F16, BF16) against float activations.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

struct F32Loader {
  static __m256 Load8(const uint8_t* w, int64_t j) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + j);
  }
  static float Load1(const uint8_t* w, int64_t j) {
    float v;
    std::memcpy(&v, w + 4 * j, sizeof(v));
    return v;
  }
};

struct F16Loader {
  static __m256 Load8(const uint8_t* w, int64_t j) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j)));
  }
  static float Load1(const uint8_t* w, int64_t j) { return HalfToFloat(w + 2 * j); }
};

struct BF16Loader {
  static __m256 Load8(const uint8_t* w, int64_t j) {
    const __m256i v =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float Load1(const uint8_t* w, int64_t j) {
    uint16_t h;
    std::memcpy(&h, w + 2 * j, sizeof(h));
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  }
};

// One weight row against NX (1 or 2) activation rows, four accumulation chains per row whatever
// NX is: a row's result must not depend on how many rows share the call (batch invariance).
template <typename L, int NX>
void DotFloatRow(int64_t k, const uint8_t* w, const uint8_t* x, int64_t xs, float* y, int64_t ys) {
  constexpr int kU = 4;
  const float* xr[NX];
  __m256 acc[NX][kU];
  for (int i = 0; i < NX; ++i) {
    xr[i] = reinterpret_cast<const float*>(x + i * xs);
    for (int u = 0; u < kU; ++u) acc[i][u] = _mm256_setzero_ps();
  }
  int64_t j = 0;
  for (; j + 8 * kU <= k; j += 8 * kU) {
    for (int u = 0; u < kU; ++u) {
      const __m256 wv = L::Load8(w, j + 8 * u);
      for (int i = 0; i < NX; ++i) {
        acc[i][u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[i] + j + 8 * u), acc[i][u]);
      }
    }
  }
  for (; j + 8 <= k; j += 8) {
    const __m256 wv = L::Load8(w, j);
    for (int i = 0; i < NX; ++i)
      acc[i][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xr[i] + j), acc[i][0]);
  }
  for (int i = 0; i < NX; ++i) {
    __m256 s = acc[i][0];
    for (int u = 1; u < kU; ++u) s = _mm256_add_ps(s, acc[i][u]);
    float sum = HorizontalSum(s);
    for (int64_t t = j; t < k; ++t) sum += L::Load1(w, t) * xr[i][t];
    y[i * ys] = sum;
  }
}

template <typename L>
void FloatTile(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
               int64_t nx, float* y, int64_t ys) {
  for (int64_t j = 0; j < nw; ++j) {
    const uint8_t* wr = w + j * ws;
    int64_t i = 0;
    for (; i + 2 <= nx; i += 2) DotFloatRow<L, 2>(k, wr, x + i * xs, xs, y + i * ys + j, ys);
    if (i < nx) DotFloatRow<L, 1>(k, wr, x + i * xs, xs, y + i * ys + j, ys);
  }
}

}  // namespace

void DotTileAvx2F32(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                    int64_t xs, int64_t nx, float* y, int64_t ys) {
  FloatTile<F32Loader>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2F16(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                    int64_t xs, int64_t nx, float* y, int64_t ys) {
  FloatTile<F16Loader>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2BF16(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  FloatTile<BF16Loader>(k, w, ws, nw, x, xs, nx, y, ys);
}

}  // namespace shardserve::cpu::internal
