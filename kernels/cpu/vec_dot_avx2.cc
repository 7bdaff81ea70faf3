// AVX2 kernels for the 32-element block types: Q4_0 and Q4_1 against paired Q8 activations,
// Q8_0 against Q8 activations (layouts in vec_dot.h).
//
// NOTES: scales are converted four blocks at a time: the fp16 words of four weight blocks go
// through one vcvtph2ps and one multiply by the activations' (d, s) pairs, giving
// [dd0, ms0, dd1, ms1, ...]; each block's dd is then broadcast with a lane permute, and the
// minimum terms (odd lanes) are folded into the accumulator with one masked FMA. Tiles of
// NW weight rows by NX activation rows share each unpacked weight block among the activation
// rows and give the core NW * NX independent accumulation chains.
#include <immintrin.h>

#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

inline __m256i LoadSi256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

template <bool kIsQ4_1>
struct Q4Format {
  static constexpr int kBlockBytes = kIsQ4_1 ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
  static constexpr int kQsOffset = kIsQ4_1 ? 4 : 2;

  // For Q4_1 the fp16 (d, m) words of the blocks; for Q4_0, (d, d).
  static __m128i Widen(__m128i v) {
    return kIsQ4_1 ? v
                   : _mm_shuffle_epi8(
                         v, _mm_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13));
  }
  // Four blocks' scales as floats [d0 m0 d1 m1 d2 m2 d3 m3] (Q4_0: [d0 d0 d1 d1 ...]).
  static __m256 Scales4(const uint8_t* w) {
    return _mm256_cvtph_ps(
        Widen(_mm_setr_epi32(LoadU32(w), LoadU32(w + kBlockBytes), LoadU32(w + 2 * kBlockBytes),
                             LoadU32(w + 3 * kBlockBytes))));
  }
  // Two blocks' scales in lanes 0-3, zeros above.
  static __m256 Scales2(const uint8_t* w) {
    const __m128i v = _mm_setr_epi32(LoadU32(w), LoadU32(w + kBlockBytes), 0, 0);
    return _mm256_cvtph_ps(_mm_blend_epi16(Widen(v), _mm_setzero_si128(), 0xf0));
  }
  // What multiplies the odd lanes: m * s for Q4_1; for Q4_0, whose values are (q - 8) * d, d * s.
  static __m256 MinMask() {
    const float c = kIsQ4_1 ? 1.0f : -8.0f;
    return _mm256_setr_ps(0, c, 0, c, 0, c, 0, c);
  }
  // The additive term of one block: m for Q4_1, -8 d for Q4_0.
  static float BlockMin(const uint8_t* blk) {
    return kIsQ4_1 ? HalfToFloat(blk + 2) : -8.0f * HalfToFloat(blk);
  }
};

// Two weight blocks' nibbles: low nibbles of A and B, then high nibbles of A and B.
inline void UnpackPair(const uint8_t* qa, const uint8_t* qb, __m256i* lo, __m256i* hi) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i raw = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb)), 1);
  *lo = _mm256_and_si256(raw, m4);
  *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
}

// Touches the cache lines of [p, p + bytes) so they are on their way when the next tile of
// weight rows reads them.
inline void PrefetchNextTile(const uint8_t* p, int bytes) {
  for (int off = 0; off < bytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
  }
}

// Int32 lanes 0-3 sum block A's products, lanes 4-7 block B's, as floats.
inline __m256 PairDot(__m256i lo, __m256i hi, const int8_t* x) {
  // Each maddubs lane is at most 2 * 15 * 127, so the sum of two fits in int16.
  const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, LoadSi256(x)),
                                       _mm256_maddubs_epi16(hi, LoadSi256(x + 32)));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

// y[i * ys + r] = acc[r][i] summed (+ tail[r][i]), for a tile of NW weight rows, NX x rows.
template <int NW, int NX>
void StoreTile(__m256 (&acc)[NW][NX], const float (&tail)[NW][NX], float* y, int64_t ys) {
  for (int i = 0; i < NX; ++i) {
    if constexpr (NW == 4) {
      const __m128 s = HorizontalSum4(acc[0][i], acc[1][i], acc[2][i], acc[3][i]);
      _mm_storeu_ps(y + i * ys,
                    _mm_add_ps(s, _mm_setr_ps(tail[0][i], tail[1][i], tail[2][i], tail[3][i])));
    } else {
      for (int r = 0; r < NW; ++r) y[i * ys + r] = HorizontalSum(acc[r][i]) + tail[r][i];
    }
  }
}

template <bool kIsQ4_1, int NW, int NX>
void DotQ4Tile(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
               int64_t ys) {
  using F = Q4Format<kIsQ4_1>;
  constexpr int kBB = F::kBlockBytes, kOff = F::kQsOffset;
  const int64_t nb = k / kQk;
  __m256 acc[NW][NX];
  float tail[NW][NX];
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) {
      acc[r][i] = _mm256_setzero_ps();
      tail[r][i] = 0.0f;
    }
  }
  const __m256i idx01 = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
  const __m256i idx23 = _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6);
  const __m256 min_mask = F::MinMask();
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      PrefetchNextTile(wb + NW * ws, 4 * kBB);  // see DotQ8Tile
      const __m256 wsc = F::Scales4(wb);
      __m256i lo0, hi0, lo1, hi1;
      UnpackPair(wb + kOff, wb + kBB + kOff, &lo0, &hi0);
      UnpackPair(wb + 2 * kBB + kOff, wb + 3 * kBB + kOff, &lo1, &hi1);
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        const __m256 prod = _mm256_mul_ps(wsc, _mm256_loadu_ps(ActDs(xr, k) + 2 * b));
        const int8_t* xb = ActQs(xr) + kQk * b;
        __m256 a = _mm256_fmadd_ps(prod, min_mask, acc[r][i]);
        a = _mm256_fmadd_ps(PairDot(lo0, hi0, xb), _mm256_permutevar8x32_ps(prod, idx01), a);
        acc[r][i] =
            _mm256_fmadd_ps(PairDot(lo1, hi1, xb + 64), _mm256_permutevar8x32_ps(prod, idx23), a);
      }
    }
  }
  if (b + 2 <= nb) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      const __m256 wsc = F::Scales2(wb);
      __m256i lo, hi;
      UnpackPair(wb + kOff, wb + kBB + kOff, &lo, &hi);
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        const __m256 xds = _mm256_zextps128_ps256(_mm_loadu_ps(ActDs(xr, k) + 2 * b));
        const __m256 prod = _mm256_mul_ps(wsc, xds);  // lanes 4-7 are 0
        const __m256 a = _mm256_fmadd_ps(prod, min_mask, acc[r][i]);
        acc[r][i] = _mm256_fmadd_ps(PairDot(lo, hi, ActQs(xr) + kQk * b),
                                    _mm256_permutevar8x32_ps(prod, idx01), a);
      }
    }
    b += 2;
  }
  if (b < nb) {  // a last odd block, stored in order
    const __m128i m4 = _mm_set1_epi8(0x0f);
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + kOff));
      const __m256i q =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
      const float d = HalfToFloat(wb), m = F::BlockMin(wb);
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        const float* ds = ActDs(xr, k) + 2 * b;
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(
            _mm256_maddubs_epi16(q, LoadSi256(ActQs(xr) + kQk * b)), _mm256_set1_epi16(1)));
        acc[r][i] = _mm256_fmadd_ps(f, _mm256_set1_ps(d * ds[0]), acc[r][i]);
        tail[r][i] += m * ds[1];
      }
    }
  }
  StoreTile<NW, NX>(acc, tail, y, ys);
}

template <int NW, int NX>
void DotQ8Tile(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
               int64_t ys) {
  constexpr int kBB = sizeof(BlockQ8_0);
  const int64_t nb = k / kQk;
  __m256 acc[NW][NX];
  float tail[NW][NX] = {};
  for (int r = 0; r < NW; ++r) {
    for (int i = 0; i < NX; ++i) acc[r][i] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  // w * x = |w| * (x with w's sign), so maddubs (unsigned by signed) can take it.
  auto block_dot = [&ones](__m256i wabs, __m256i wq, const int8_t* xp) {
    return _mm256_cvtepi32_ps(
        _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(LoadSi256(xp), wq)), ones));
  };
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      // NOTES: a tile reads NW short row segments, too short for the hardware prefetcher to
      // lock on before the next tile starts, so fetch the same bytes of the next tile now.
      PrefetchNextTile(wb + NW * ws, 4 * kBB);
      const __m128i dv = _mm_and_si128(_mm_setr_epi32(LoadU32(wb), LoadU32(wb + kBB),
                                                      LoadU32(wb + 2 * kBB), LoadU32(wb + 3 * kBB)),
                                       _mm_set1_epi32(0xffff));
      const __m256 wsc = _mm256_cvtph_ps(dv);  // [d0 0 d1 0 d2 0 d3 0]
      __m256 prod[NX];
      for (int i = 0; i < NX; ++i) {
        prod[i] = _mm256_mul_ps(wsc, _mm256_loadu_ps(ActDs(x + i * xs, k) + 2 * b));
      }
      for (int q = 0; q < 4; ++q) {
        const __m256i wq = LoadSi256(wb + q * kBB + 2);
        const __m256i wabs = _mm256_abs_epi8(wq);
        const __m256i idx = _mm256_set1_epi32(2 * q);
        for (int i = 0; i < NX; ++i) {
          acc[r][i] = _mm256_fmadd_ps(block_dot(wabs, wq, ActQs(x + i * xs) + kQk * (b + q)),
                                      _mm256_permutevar8x32_ps(prod[i], idx), acc[r][i]);
        }
      }
    }
  }
  for (; b < nb; ++b) {
    for (int r = 0; r < NW; ++r) {
      const uint8_t* wb = w + r * ws + b * kBB;
      const __m256i wq = LoadSi256(wb + 2);
      const __m256i wabs = _mm256_abs_epi8(wq);
      const float d = HalfToFloat(wb);
      for (int i = 0; i < NX; ++i) {
        const uint8_t* xr = x + i * xs;
        acc[r][i] = _mm256_fmadd_ps(block_dot(wabs, wq, ActQs(xr) + kQk * b),
                                    _mm256_set1_ps(d * ActDs(xr, k)[2 * b]), acc[r][i]);
      }
    }
  }
  StoreTile<NW, NX>(acc, tail, y, ys);
}

// Covers the tile with kernel tiles: four weight rows by one activation row when there is one
// activation row, two by two otherwise; single rows for what is left.
template <template <int, int> class K>
void Tile(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
          int64_t nx, float* y, int64_t ys) {
  for (int64_t i = 0; i < nx;) {
    const uint8_t* xi = x + i * xs;
    float* yi = y + i * ys;
    int64_t j = 0;
    if (nx - i >= 4) {
      for (; j + 2 <= nw; j += 2) K<2, 4>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      for (; j < nw; ++j) K<1, 4>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      i += 4;
    } else if (nx - i >= 2) {
      for (; j + 2 <= nw; j += 2) K<2, 2>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      for (; j < nw; ++j) K<1, 2>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      i += 2;
    } else {
      for (; j + 4 <= nw; j += 4) K<4, 1>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      for (; j < nw; ++j) K<1, 1>::Run(k, w + j * ws, ws, xi, xs, yi + j, ys);
      i += 1;
    }
  }
}

template <int NW, int NX>
struct Q4_0Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ4Tile<false, NW, NX>(k, w, ws, x, xs, y, ys);
  }
};
template <int NW, int NX>
struct Q4_1Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ4Tile<true, NW, NX>(k, w, ws, x, xs, y, ys);
  }
};
template <int NW, int NX>
struct Q8_0Kernel {
  static void Run(int64_t k, const uint8_t* w, int64_t ws, const uint8_t* x, int64_t xs, float* y,
                  int64_t ys) {
    DotQ8Tile<NW, NX>(k, w, ws, x, xs, y, ys);
  }
};

}  // namespace

void PackQ8Avx2(const float* x, int64_t k, uint8_t* dst, bool paired, bool fp16_sum) {
  const int64_t nb = k / kQk;
  auto* qs = reinterpret_cast<int8_t*>(dst);
  float* ds = reinterpret_cast<float*>(dst + k);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + kQk * b;
    __m256 v[4];
    for (int t = 0; t < 4; ++t) v[t] = _mm256_loadu_ps(xb + 8 * t);
    const __m256 m =
        _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                      _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    // Round half to even (the default rounding mode), as the scalar packer's nearbyint.
    for (int t = 0; t < 4; ++t) q[t] = _mm256_cvtps_epi32(_mm256_mul_ps(v[t], id));
    const __m256i sum32 =
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum32), _mm256_extracti128_si256(sum32, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    // The packs work within 128-bit lanes; the permute puts the 32 bytes back in order.
    const __m256i q8 = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    int8_t* lo = qs + (paired ? PairedIndex(b, 0, nb) : kQk * b);
    int8_t* hi = qs + (paired ? PairedIndex(b, 16, nb) : kQk * b + 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo), _mm256_castsi256_si128(q8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi), _mm256_extracti128_si256(q8, 1));
    const float d = amax / 127.0f;
    ds[2 * b] = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    const float sum = static_cast<float>(_mm_cvtsi128_si32(s4));
    ds[2 * b + 1] =
        fp16_sum ? _cvtsh_ss(_cvtss_sh(d * sum, _MM_FROUND_TO_NEAREST_INT)) : ds[2 * b] * sum;
  }
}

void DotTileAvx2Q4_0(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q4_0Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2Q4_1(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q4_1Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2Q8_0(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  Tile<Q8_0Kernel>(k, w, ws, nw, x, xs, nx, y, ys);
}

}  // namespace shardserve::cpu::internal
