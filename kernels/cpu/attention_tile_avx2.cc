// AVX2 + FMA attention tile kernels. Compiled with -mavx2 -mfma, so nothing here may run before
// the dispatcher has checked the CPU; keep this file free of inline library templates, whose
// AVX2 copies the linker could pick for callers elsewhere.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/attention_tile.h"

namespace shardserve::cpu {
namespace {

// The four lane sums of a, b, c, d.
inline __m128 HorizontalSum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

inline float HorizontalSum(__m256 a) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// Eight consecutive elements of a cached row as floats: F32 rows as they are, F16 rows
// converted exactly (vcvtph2ps), so both types run the same arithmetic on the same values.
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// R query rows against C keys: R * C independent accumulator chains hide the FMA latency, and
// each loaded key vector is used R times.
// NOTES: the `#pragma GCC unroll` lines are what keep acc[][] in registers: without them GCC
// unrolls these loops only after scalar replacement and stores every accumulator to the stack
// on each iteration, which halves the speed.
template <int R, int C, class T>
inline void QkBlock(const float* q, int head_dim, const T* const* k_rows, float* s, int ld_s) {
  __m256 acc[R][C];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int d = 0; d < head_dim; d += 8) {
    __m256 kv[C];
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) kv[c] = Load8(k_rows[c] + d);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_loadu_ps(q + r * head_dim + d);
#pragma GCC unroll 16
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  // Reduce four accumulators at a time, in row-major (r, c) order.
  constexpr int kAcc = R * C;
  alignas(16) float sums[kAcc];
#pragma GCC unroll 16
  for (int f = 0; f + 4 <= kAcc; f += 4) {
    _mm_store_ps(sums + f,
                 HorizontalSum4(acc[f / C][f % C], acc[(f + 1) / C][(f + 1) % C],
                                acc[(f + 2) / C][(f + 2) % C], acc[(f + 3) / C][(f + 3) % C]));
  }
  // The rest one at a time, in the same order of additions (lane 0 of a four-way sum): a score
  // must round alike whether its key fell in a full block of C or in the remainder, which
  // depends on how many keys the call has, that is, on where the tile's rows end.
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 16
  for (int f = kAcc / 4 * 4; f < kAcc; ++f) {
    sums[f] = _mm_cvtss_f32(HorizontalSum4(acc[f / C][f % C], zero, zero, zero));
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) s[r * ld_s + c] = sums[r * C + c];
  }
}

template <int R, int C, class T>
void QkRows(const float* q, int head_dim, const T* const* k_rows, int n, float* s, int ld_s) {
  int j = 0;
  for (; j + C <= n; j += C) QkBlock<R, C>(q, head_dim, k_rows + j, s + j, ld_s);
  for (; j < n; ++j) QkBlock<R, 1>(q, head_dim, k_rows + j, s + j, ld_s);
}

template <class T>
void QkAvx2(const float* q, int m, int head_dim, const T* const* k_rows, int n, float* s,
            int ld_s) {
  // Three rows by four keys measured fastest: twelve accumulators, and the horizontal sums
  // amortised over four keys.
  int i = 0;
  for (; i + 3 <= m; i += 3) {
    QkRows<3, 4>(q + i * head_dim, head_dim, k_rows, n, s + i * ld_s, ld_s);
  }
  const float* qi = q + i * head_dim;
  float* si = s + i * ld_s;
  if (m - i == 2) {
    QkRows<2, 4>(qi, head_dim, k_rows, n, si, ld_s);
  } else if (m - i == 1) {
    QkRows<1, 8>(qi, head_dim, k_rows, n, si, ld_s);
  }
}

// R output rows times W vectors of 8 dimensions, accumulated over all n keys.
template <int R, int W, class T>
inline void PvBlock(const float* p, int ld_p, const T* const* v_rows, int n, int head_dim, int d0,
                    float* o) {
  __m256 acc[R][W];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) acc[r][w] = _mm256_loadu_ps(o + r * head_dim + d0 + 8 * w);
  }
  for (int j = 0; j < n; ++j) {
    __m256 vv[W];
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) vv[w] = Load8(v_rows[j] + d0 + 8 * w);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 pb = _mm256_broadcast_ss(p + r * ld_p + j);
#pragma GCC unroll 16
      for (int w = 0; w < W; ++w) acc[r][w] = _mm256_fmadd_ps(pb, vv[w], acc[r][w]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int w = 0; w < W; ++w) _mm256_storeu_ps(o + r * head_dim + d0 + 8 * w, acc[r][w]);
  }
}

template <int R, int W, class T>
void PvRows(const float* p, int ld_p, const T* const* v_rows, int n, int head_dim, float* o) {
  int d0 = 0;
  for (; d0 + 8 * W <= head_dim; d0 += 8 * W) PvBlock<R, W>(p, ld_p, v_rows, n, head_dim, d0, o);
  for (; d0 < head_dim; d0 += 8) PvBlock<R, 1>(p, ld_p, v_rows, n, head_dim, d0, o);
}

template <class T>
void PvAvx2(const float* p, int ld_p, int m, const T* const* v_rows, int n, int head_dim,
            float* o) {
  int i = 0;
  for (; i + 4 <= m; i += 4) {
    PvRows<4, 2>(p + i * ld_p, ld_p, v_rows, n, head_dim, o + i * head_dim);
  }
  const float* pi = p + i * ld_p;
  float* oi = o + i * head_dim;
  switch (m - i) {
    case 3:
      PvRows<3, 2>(pi, ld_p, v_rows, n, head_dim, oi);
      break;
    case 2:
      PvRows<2, 4>(pi, ld_p, v_rows, n, head_dim, oi);
      break;
    case 1:
      PvRows<1, 8>(pi, ld_p, v_rows, n, head_dim, oi);
      break;
    default:
      break;
  }
}

// exp on 8 lanes by the algorithm of ExpF (vec_exp.h), for arguments <= 0 as softmax has
// them. Results below FLT_MIN are flushed to 0 (exp(-inf) of masked keys included): they
// cannot change a softmax whose largest term is 1, and subnormal arithmetic is slow.
inline __m256 ExpNonPositive8(__m256 x) {
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-88.0f));
  const __m256 round = _mm256_set1_ps(12582912.0f);
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), round);
  const __m256 n = _mm256_sub_ps(t, round);
  const __m256i n_int = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b400000));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // n >= -127 here, so 2^n is one normal float.
  const __m256 scale =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n_int, _mm256_set1_epi32(127)), 23));
  return _mm256_and_ps(_mm256_mul_ps(p, scale), keep);
}

float SoftmaxStepAvx2(float* s, int n, float* row_max, float* row_sum) {
  __m256 vmax = _mm256_set1_ps(*row_max);
  int j = 0;
  for (; j + 8 <= n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float new_max = _mm_cvtss_f32(m4);
  for (; j < n; ++j) new_max = s[j] > new_max ? s[j] : new_max;
  if (new_max == -__builtin_inff()) {
    for (j = 0; j < n; ++j) s[j] = 0.0f;
    return 1.0f;
  }

  const __m256 mv = _mm256_set1_ps(new_max);
  __m256 sum = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = ExpNonPositive8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  // The tail, and the old maximum (whose exp is the rescale factor), share one vector.
  alignas(32) float tail[8];
  const int rest = n - j;
  for (int t = 0; t < 7; ++t) tail[t] = t < rest ? s[j + t] : -__builtin_inff();
  tail[7] = *row_max;
  _mm256_store_ps(tail, ExpNonPositive8(_mm256_sub_ps(_mm256_load_ps(tail), mv)));
  for (int t = 0; t < rest; ++t) s[j + t] = tail[t];
  const float alpha = tail[7];
  tail[7] = 0.0f;
  sum = _mm256_add_ps(sum, _mm256_load_ps(tail));
  *row_sum = *row_sum * alpha + HorizontalSum(sum);
  *row_max = new_max;
  return alpha;
}

void ToF16Avx2(const float* src, int n, uint16_t* dst) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  }
  if (i < n) {
    alignas(32) float in[8] = {};
    alignas(16) uint16_t out[8];
    for (int j = 0; j < n - i; ++j) in[j] = src[i + j];
    _mm_store_si128(reinterpret_cast<__m128i*>(out),
                    _mm256_cvtps_ph(_mm256_load_ps(in), _MM_FROUND_TO_NEAREST_INT));
    for (int j = 0; j < n - i; ++j) dst[i + j] = out[j];
  }
}

}  // namespace

const AttentionTileKernels& AttentionTileAvx2() {
  static const AttentionTileKernels kernels = {
      Isa::kAvx2,      8,        QkAvx2<float>, PvAvx2<float>, QkAvx2<uint16_t>, PvAvx2<uint16_t>,
      SoftmaxStepAvx2, ToF16Avx2};
  return kernels;
}

}  // namespace shardserve::cpu
