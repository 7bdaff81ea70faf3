// AVX-512 kernels (F, BW, VL, DQ; VNNI's vpdpbusd when the CPU has it) for the types that
// dominate decode: Q4_0, Q4_1 and Q8_0 against packed Q8 activations, F32 and F16 against float.
// Same arithmetic as the AVX2 kernels (vec_dot_avx2.cc), four blocks per step: a 512-bit
// register holds two 32-element blocks of Q8_0 weights, or the nibbles of four 4-bit blocks.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

inline uint32_t LoadWord(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return _cvtsh_ss(h);
}

inline __m512i Load512(const void* p) { return _mm512_loadu_si512(p); }

inline int SumI32(__m256i v) {
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
  return _mm_cvtsi128_si32(t);
}

inline float SumF32(__m256 v) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

// Int32 lane l = sum of the four u8 * s8 products in bytes 4l .. 4l + 3.
template <bool kVnni>
inline __m512i DotU8I8(__m512i u, __m512i s) {
  if constexpr (kVnni) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
  } else {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
  }
}

// Int sum of one 32-element block: 16 weight bytes (low nibbles elements 0-15, high nibbles
// 16-31) against activation halves at xa (elements 0-15) and xb (16-31).
inline int NibbleBlockDot(const uint8_t* q, const int8_t* xa, const int8_t* xb) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m256i wq =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
  const __m256i xq = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb)),
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(xa)));
  return SumI32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), _mm256_set1_epi16(1)));
}

template <bool kIsQ4_1>
struct Q4Format {
  static constexpr int kBlockBytes = kIsQ4_1 ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
  static constexpr int kQsOffset = kIsQ4_1 ? 4 : 2;
  // [d0 m0 d1 m1 d2 m2 d3 m3] (Q4_0: [d0 d0 d1 d1 ...]) for four blocks.
  static __m256 Scales4(const uint8_t* w) {
    __m128i v = _mm_setr_epi32(LoadWord(w), LoadWord(w + kBlockBytes),
                               LoadWord(w + 2 * kBlockBytes), LoadWord(w + 3 * kBlockBytes));
    if (!kIsQ4_1) {
      v = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
    }
    return _mm256_cvtph_ps(v);
  }
  static float BlockMin(const uint8_t* blk) { return kIsQ4_1 ? Half(blk + 2) : -8.0f * Half(blk); }
  static constexpr float kMinFactor = kIsQ4_1 ? 1.0f : -8.0f;
};

template <bool kIsQ4_1, bool kVnni, int NW, int NX>
void DotQ4Tile(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
               int64_t ys) {
  using F = Q4Format<kIsQ4_1>;
  constexpr int kBB = F::kBlockBytes, kOff = F::kQsOffset;
  const int64_t nb = k / kQk;
  const int64_t nb4 = nb / 4 * 4;
  __m512 acc[NW][NX];
  __m256 acc_min[NW][NX];
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) {
      acc[r][i] = _mm512_setzero_ps();
      acc_min[r][i] = _mm256_setzero_ps();
    }
  }
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  // Broadcasts dd of block q (lane 2q of the 8 scale products) over 128-bit lane q.
  const __m512i dd_idx = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
  const __m256 min_mask = _mm256_setr_ps(0, 1, 0, 1, 0, 1, 0, 1);
  for (int64_t b = 0; b < nb4; b += 4) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      const __m256 wsc = F::Scales4(wb);
      __m512i raw =
          _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + kOff)));
      raw = _mm512_inserti32x4(
          raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + kBB + kOff)), 1);
      raw = _mm512_inserti32x4(
          raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 2 * kBB + kOff)), 2);
      raw = _mm512_inserti32x4(
          raw, _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 3 * kBB + kOff)), 3);
      const __m512i lo = _mm512_and_si512(raw, m4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
      // Match the paired activation layout: [A lo, B lo, A hi, B hi], [C lo, D lo, C hi, D hi].
      const __m512i w01 = _mm512_shuffle_i32x4(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
      const __m512i w23 = _mm512_shuffle_i32x4(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        const int8_t* xb = ActQs(xr) + kQk * b;
        const __m256 prod = _mm256_mul_ps(wsc, _mm256_loadu_ps(ActDs(xr, k) + 2 * b));
        acc_min[r][i] = _mm256_fmadd_ps(prod, min_mask, acc_min[r][i]);
        const __m512i s01 = DotU8I8<kVnni>(w01, Load512(xb));
        const __m512i s23 = DotU8I8<kVnni>(w23, Load512(xb + 64));
        // Lanes [A, B, C, D] x 4: first halves plus second halves.
        const __m512i s = _mm512_add_epi32(_mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                                           _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
        const __m512 dd = _mm512_permutexvar_ps(dd_idx, _mm512_castps256_ps512(prod));
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[r][i]);
      }
    }
  }
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) {
      const uint8_t* xr = x + i * xs;
      const int8_t* xq = ActQs(xr);
      const float* ds = ActDs(xr, k);
      float sum = _mm512_reduce_add_ps(acc[r][i]);
      // acc_min's even lanes hold dd products that min_mask zeroed; only odd lanes count.
      sum += F::kMinFactor * SumF32(acc_min[r][i]);
      for (int64_t b = nb4; b < nb; ++b) {  // up to three blocks left
        const uint8_t* wb = w + r * ws + b * kBB;
        const int64_t lo_pos = PairedIndex(b, 0, nb), hi_pos = PairedIndex(b, 16, nb);
        const int isum = NibbleBlockDot(wb + kOff, xq + lo_pos, xq + hi_pos);
        sum += Half(wb) * ds[2 * b] * static_cast<float>(isum) + F::BlockMin(wb) * ds[2 * b + 1];
      }
      y[i * ys + r] = sum;
    }
  }
}

template <bool kVnni, int NW, int NX>
void DotQ8Tile(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
               int64_t ys) {
  constexpr int kBB = sizeof(BlockQ8_0);
  const int64_t nb = k / kQk;
  const int64_t nb4 = nb / 4 * 4;
  __m512 acc[NW][NX];
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) acc[r][i] = _mm512_setzero_ps();
  }
  const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
  const __m512i idx23 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
  for (int64_t b = 0; b < nb4; b += 4) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      const __m128i dv =
          _mm_and_si128(_mm_setr_epi32(LoadWord(wb), LoadWord(wb + kBB), LoadWord(wb + 2 * kBB),
                                       LoadWord(wb + 3 * kBB)),
                        _mm_set1_epi32(0xffff));
      const __m256 wsc = _mm256_cvtph_ps(dv);  // [d0 0 d1 0 d2 0 d3 0]
      __m512i wq[2], wabs[2];
      __mmask64 neg[2];
      for (int p = 0; p < 2; ++p) {
        const uint8_t* q = wb + 2 * p * kBB + 2;
        wq[p] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + kBB)), 1);
        wabs[p] = _mm512_abs_epi8(wq[p]);
        neg[p] = _mm512_movepi8_mask(wq[p]);
      }
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        const int8_t* xb = ActQs(xr) + kQk * b;
        const __m512 prod =
            _mm512_castps256_ps512(_mm256_mul_ps(wsc, _mm256_loadu_ps(ActDs(xr, k) + 2 * b)));
        for (int p = 0; p < 2; ++p) {
          // w * x = |w| * (x negated where w < 0), an unsigned-by-signed product.
          const __m512i xv = Load512(xb + 64 * p);
          const __m512i xs_adj = _mm512_mask_sub_epi8(xv, neg[p], _mm512_setzero_si512(), xv);
          const __m512 f = _mm512_cvtepi32_ps(DotU8I8<kVnni>(wabs[p], xs_adj));
          acc[r][i] =
              _mm512_fmadd_ps(f, _mm512_permutexvar_ps(p == 0 ? idx01 : idx23, prod), acc[r][i]);
        }
      }
    }
  }
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) {
      const uint8_t* xr = x + i * xs;
      float sum = _mm512_reduce_add_ps(acc[r][i]);
      for (int64_t b = nb4; b < nb; ++b) {
        const uint8_t* wb = w + r * ws + b * kBB;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
        const __m256i xv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ActQs(xr) + kQk * b));
        const __m256i s =
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv)),
                              _mm256_set1_epi16(1));
        const int isum = SumI32(s);
        sum += Half(wb) * ActDs(xr, k)[2 * b] * static_cast<float>(isum);
      }
      y[i * ys + r] = sum;
    }
  }
}

template <template <bool, int, int> class K, bool kVnni>
void TileWith(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
              int64_t nx, float* y, int64_t ys) {
  for (int64_t i = 0; i < nx;) {
    const uint8_t* xi = x + i * xs;
    float* yi = y + i * ys;
    int64_t j = 0;
    if (nx - i >= 2) {
      for (; j + 2 <= nw; j += 2) K<kVnni, 2, 2>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      for (; j < nw; ++j) K<kVnni, 1, 2>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      i += 2;
    } else {
      for (; j + 4 <= nw; j += 4) K<kVnni, 4, 1>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      for (; j < nw; ++j) K<kVnni, 1, 1>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      i += 1;
    }
  }
}

template <template <bool, int, int> class K>
void Tile(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
          int64_t nx, float* y, int64_t ys) {
  static const bool vnni = GetCpuFeatures().avx512vnni;
  if (vnni) {
    TileWith<K, true>(k, w, ws, nw, x, xs, nx, y, ys);
  } else {
    TileWith<K, false>(k, w, ws, nw, x, xs, nx, y, ys);
  }
}

template <bool kVnni, int NW, int NX>
struct Q4_0Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ4Tile<false, kVnni, NW, NX>(k, w, ws, x, xs, y, ys);
  }
};
template <bool kVnni, int NW, int NX>
struct Q4_1Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ4Tile<true, kVnni, NW, NX>(k, w, ws, x, xs, y, ys);
  }
};
template <bool kVnni, int NW, int NX>
struct Q8_0Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ8Tile<kVnni, NW, NX>(k, w, ws, x, xs, y, ys);
  }
};

// Float weights: 16 at a time, masked loads for the last k % 16.
template <bool kIsF16>
float DotFloat(int64_t k, const uint8_t* w, const float* x) {
  auto load_w = [w](int64_t j, __mmask16 m) {
    if constexpr (kIsF16) {
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * j));
    } else {
      return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + j);
    }
  };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= k; j += 32) {
    acc0 = _mm512_fmadd_ps(load_w(j, 0xffff), _mm512_loadu_ps(x + j), acc0);
    acc1 = _mm512_fmadd_ps(load_w(j + 16, 0xffff), _mm512_loadu_ps(x + j + 16), acc1);
  }
  for (; j < k; j += 16) {
    const __mmask16 m = k - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (k - j)) - 1);
    acc0 = _mm512_fmadd_ps(load_w(j, m), _mm512_maskz_loadu_ps(m, x + j), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

template <bool kIsF16>
void FloatTile(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
               int64_t nx, float* y, int64_t ys) {
  for (int64_t i = 0; i < nx; ++i) {
    const float* xr = reinterpret_cast<const float*>(x + i * xs);
    for (int64_t j = 0; j < nw; ++j) y[i * ys + j] = DotFloat<kIsF16>(k, w + j * ws, xr);
  }
}

}  // namespace

void DotTileAvx512Q4_0(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                       int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q4_0Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx512Q4_1(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                       int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q4_1Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx512Q8_0(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                       int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q8_0Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx512F32(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                      int64_t xs, int64_t nx, float* y, int64_t ys) {
  FloatTile<false>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx512F16(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                      int64_t xs, int64_t nx, float* y, int64_t ys) {
  FloatTile<true>(k, w, ws, nw, x, xs, nx, y, ys);
}

}  // namespace shardserve::cpu::internal
