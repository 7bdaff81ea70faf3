// AVX2 kernels for the 32-element block types: Q4_0 and Q4_1 against paired Q8 activations,
// Q8_0 against Q8 activations (layouts in vec_dot.h).
//
// NOTES: every output is computed by the same float operations whatever the tile, so a row's
// results do not depend on how many activation rows share the call. Each block's integer dot
// product is summed exactly in int32, then scaled and accumulated in block order, with the
// minimum terms (Q4 types only) summed apart and added last, as llama.cpp does:
//   acc = fma(float(isum_b), dw_b * dx_b, acc);  mins = fma(mw_b, sx_b, mins);  y = acc + mins
// with mw = m for Q4_1 and -8 d for Q4_0 (whose values are (q - 8) d). To make that cheap for
// several activation rows, eight weight rows at a time are first transposed into a small buffer,
// a chunk of blocks at a time, so that one 32-bit lane holds four elements of one row: a
// broadcast of four activation bytes meets eight rows in one vpmaddubsw, the eight block sums
// come out in eight lanes with no horizontal adds, and a block's scaling is one FMA for eight
// outputs. Every activation row then reuses the transposed chunk.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

constexpr int kLanes = 8;  // weight rows per transposed tile, one per float lane
// Blocks per transposed chunk: small enough that the chunk stays in L1 next to the activations.
constexpr int kChunkBlocks = 16;
// How many tiles ahead the weights are prefetched.
constexpr int kPrefetchTiles = 2;
// Activation rows sharing each load of a transposed weight vector.
constexpr int kRowGroup = 8;

inline __m256i LoadSi256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m128i LoadSi128(const void* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m256i Broadcast32(const int8_t* p) {
  return _mm256_set1_epi32(static_cast<int32_t>(LoadU32(reinterpret_cast<const uint8_t*>(p))));
}

// Stops the compiler from regrouping the integer sums of a block, which it would otherwise do by
// computing every product of the block first and spilling them.
inline void KeepOrder(__m256i& v) { asm("" : "+x"(v)); }

// The 32-bit words at rows[r] + offset, r = 0..7.
inline __m256i GatherWords(const uint8_t* const* rows, int64_t offset) {
  return _mm256_setr_epi32(LoadU32(rows[0] + offset), LoadU32(rows[1] + offset),
                           LoadU32(rows[2] + offset), LoadU32(rows[3] + offset),
                           LoadU32(rows[4] + offset), LoadU32(rows[5] + offset),
                           LoadU32(rows[6] + offset), LoadU32(rows[7] + offset));
}

// Low and high fp16 halves of eight 32-bit words as floats.
inline void SplitHalves(__m256i words, __m256* lo, __m256* hi) {
  const __m256i h = _mm256_permute4x64_epi64(
      _mm256_packus_epi32(_mm256_and_si256(words, _mm256_set1_epi32(0xffff)),
                          _mm256_srli_epi32(words, 16)),
      0xd8);
  *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

// v[r] holds partial sums of row r: lanes 0-3 of one block, lanes 4-7 of another (or the same).
// Returns the sums of lanes 0-3 for rows 0..7 in *a and those of lanes 4-7 in *b.
inline void ReduceRows(const __m256i (&v)[kLanes], __m256i* a, __m256i* b) {
  const __m256i g0 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i g1 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  *a = _mm256_permute2x128_si256(g0, g1, 0x20);
  *b = _mm256_permute2x128_si256(g0, g1, 0x31);
}

// Fetches the weight rows of a later tile while the current one is computed, in address order
// and spread evenly over the current tile's block steps: a tile reads eight rows side by side, a
// pattern the hardware prefetchers do not follow far enough ahead.
class TilePrefetcher {
 public:
  TilePrefetcher(const uint8_t* const* rows, int64_t ahead_bytes, int64_t row_bytes, int64_t steps)
      : rows_(rows),
        ahead_bytes_(ahead_bytes),
        lines_per_row_(row_bytes / 64 + 2),
        total_(kLanes * lines_per_row_),
        steps_(steps) {}

  // Issues the prefetches due by the end of block step `step`.
  void Step(int64_t step) {
    const int64_t due = std::min(total_, (step + 1) * total_ / steps_);
    for (; issued_ < due; ++issued_) {
      _mm_prefetch(reinterpret_cast<const char*>(rows_[row_] + ahead_bytes_ + 64 * line_),
                   _MM_HINT_T0);
      if (++line_ == lines_per_row_) {
        line_ = 0;
        ++row_;
      }
    }
  }

 private:
  const uint8_t* const* rows_;
  int64_t ahead_bytes_, lines_per_row_, total_, steps_;
  int64_t issued_ = 0, line_ = 0;
  int row_ = 0;
};

// One block of eight Q4 weight rows: lane r of lo[t] (hi[t]) holds the low (high) nibbles of
// bytes 4t..4t+3 of row r's block, i.e. its elements 4t..4t+3 (16 + 4t..16 + 4t + 3).
struct Q4Lanes {
  __m256i lo[4];
  __m256i hi[4];
  __m256 d;  // row scales
  __m256 m;  // row minimums: m for Q4_1, -8 d for Q4_0
};

// One block of eight Q8_0 weight rows: lane r of q[t] holds elements 4t..4t+3 of row r.
struct Q8Lanes {
  __m256i abs_q[8];  // |q|, the unsigned operand of vpmaddubsw
  __m256i q[8];      // q, whose signs go onto the activations
  __m256 d;
};

template <bool kIsQ4_1>
struct Q4Traits {
  using Lanes = Q4Lanes;
  static constexpr int kBlockBytes = kIsQ4_1 ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
  static constexpr int kQsOffset = kIsQ4_1 ? 4 : 2;
  static constexpr bool kHasMin = true;

  static void Transpose(const uint8_t* const* rows, int64_t offset, Q4Lanes* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i a[4];
#pragma GCC unroll 8
    for (int r = 0; r < 4; ++r) {
      a[r] =
          _mm256_inserti128_si256(_mm256_castsi128_si256(LoadSi128(rows[r] + offset + kQsOffset)),
                                  LoadSi128(rows[r + 4] + offset + kQsOffset), 1);
    }
    // A 4 x 4 transpose of 32-bit words in each 128-bit half (rows 0-3, rows 4-7).
    const __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    const __m256i v[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                          _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
#pragma GCC unroll 8
    for (int t = 0; t < 4; ++t) {
      out->lo[t] = _mm256_and_si256(v[t], m4);
      out->hi[t] = _mm256_and_si256(_mm256_srli_epi16(v[t], 4), m4);
    }
    Scales(rows, offset, &out->d, &out->m);
  }

  static void Scales(const uint8_t* const* rows, int64_t offset, __m256* d, __m256* m) {
    SplitHalves(GatherWords(rows, offset), d, m);
    if (!kIsQ4_1) *m = _mm256_mul_ps(*d, _mm256_set1_ps(-8.0f));
  }

  // Adds one block's terms, given its exact integer sums for the eight rows.
  static void ScaleAdd(const uint8_t* const* rows, int64_t offset, __m256i isum, const float* ds,
                       __m256* acc, __m256* mins) {
    __m256 d, m;
    Scales(rows, offset, &d, &m);
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, _mm256_set1_ps(ds[0])), *acc);
    *mins = _mm256_fmadd_ps(m, _mm256_set1_ps(ds[1]), *mins);
  }

  // The whole row product for one activation row, straight from the stored blocks: with no
  // other row to share them, transposing would cost more than reducing each row's sums.
  static void AccumulateRow(int64_t k, const uint8_t* const* rows, const uint8_t* x,
                            TilePrefetcher* prefetcher, __m256* acc) {
    const int64_t nb = k / kQk;
    const int8_t* xq = ActQs(x);
    const float* ds = ActDs(x, k);
    __m256 mins = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256i v[kLanes], sa, sb;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      const int64_t offset = b * kBlockBytes;
      prefetcher->Step(b);
      prefetcher->Step(b + 1);
      const __m256i xlo = LoadSi256(xq + kQk * b), xhi = LoadSi256(xq + kQk * b + 32);
#pragma GCC unroll 8
      for (int r = 0; r < kLanes; ++r) {
        const uint8_t* q = rows[r] + offset + kQsOffset;
        const __m256i raw = _mm256_inserti128_si256(_mm256_castsi128_si256(LoadSi128(q)),
                                                    LoadSi128(q + kBlockBytes), 1);
        const __m256i lo = _mm256_and_si256(raw, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        v[r] = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi)), ones);
      }
      ReduceRows(v, &sa, &sb);
      ScaleAdd(rows, offset, sa, ds + 2 * b, acc, &mins);
      ScaleAdd(rows, offset + kBlockBytes, sb, ds + 2 * b + 2, acc, &mins);
    }
    if (b < nb) {  // a last odd block, stored in order
      const int64_t offset = b * kBlockBytes;
      const __m256i xb = LoadSi256(xq + kQk * b);
      const __m128i m4h = _mm_set1_epi8(0x0f);
#pragma GCC unroll 8
      for (int r = 0; r < kLanes; ++r) {
        const __m128i raw = LoadSi128(rows[r] + offset + kQsOffset);
        const __m256i q =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4h), _mm_and_si128(raw, m4h));
        v[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xb), ones);
      }
      ReduceRows(v, &sa, &sb);
      ScaleAdd(rows, offset, _mm256_add_epi32(sa, sb), ds + 2 * b, acc, &mins);
    }
    *acc = _mm256_add_ps(*acc, mins);
  }

  // acc[i] += the block's terms for activation rows x + i * xs.
  template <int NX>
  static void Accumulate(const Q4Lanes& w, int64_t b, int64_t nb, const uint8_t* x, int64_t xs,
                         int64_t k, __m256 (&acc)[NX]) {
    const int64_t lo_off = PairedIndex(b, 0, nb), hi_off = PairedIndex(b, 16, nb);
    // Each vpmaddubsw lane is at most 2 * 15 * 128 in magnitude, so the eight of a block fit in
    // int16.
    __m256i s[NX];
#pragma GCC unroll 8
    for (int t = 0; t < 4; ++t) {
      const __m256i wl = w.lo[t], wh = w.hi[t];
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) {
        const int8_t* q = ActQs(x + i * xs);
        const __m256i p =
            _mm256_add_epi16(_mm256_maddubs_epi16(wl, Broadcast32(q + lo_off + 4 * t)),
                             _mm256_maddubs_epi16(wh, Broadcast32(q + hi_off + 4 * t)));
        s[i] = t == 0 ? p : _mm256_add_epi16(s[i], p);
        KeepOrder(s[i]);
      }
    }
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i) {
      const float* ds = ActDs(x + i * xs, k) + 2 * b;
      const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(s[i], ones));
      acc[i] = _mm256_fmadd_ps(f, _mm256_mul_ps(w.d, _mm256_set1_ps(ds[0])), acc[i]);
    }
  }
};

struct Q8Traits {
  using Lanes = Q8Lanes;
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr bool kHasMin = false;

  static void Transpose(const uint8_t* const* rows, int64_t offset, Q8Lanes* out) {
    __m256i a[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) a[r] = LoadSi256(rows[r] + offset + 2);
    // An 8 x 8 transpose of 32-bit words.
    __m256i u[8];
#pragma GCC unroll 8
    for (int h = 0; h < 2; ++h) {
      const __m256i* g = a + 4 * h;
      const __m256i t0 = _mm256_unpacklo_epi32(g[0], g[1]), t1 = _mm256_unpackhi_epi32(g[0], g[1]);
      const __m256i t2 = _mm256_unpacklo_epi32(g[2], g[3]), t3 = _mm256_unpackhi_epi32(g[2], g[3]);
      u[4 * h + 0] = _mm256_unpacklo_epi64(t0, t2);  // words 0 and 4
      u[4 * h + 1] = _mm256_unpackhi_epi64(t0, t2);  // 1 and 5
      u[4 * h + 2] = _mm256_unpacklo_epi64(t1, t3);  // 2 and 6
      u[4 * h + 3] = _mm256_unpackhi_epi64(t1, t3);  // 3 and 7
    }
#pragma GCC unroll 8
    for (int t = 0; t < 4; ++t) {
      out->q[t] = _mm256_permute2x128_si256(u[t], u[4 + t], 0x20);
      out->q[t + 4] = _mm256_permute2x128_si256(u[t], u[4 + t], 0x31);
    }
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) out->abs_q[t] = _mm256_abs_epi8(out->q[t]);
    out->d = Scales(rows, offset);
  }

  static __m256 Scales(const uint8_t* const* rows, int64_t offset) {
    __m256 d, unused;
    SplitHalves(GatherWords(rows, offset), &d, &unused);
    return d;
  }

  static void AccumulateRow(int64_t k, const uint8_t* const* rows, const uint8_t* x,
                            TilePrefetcher* prefetcher, __m256* acc) {
    const int64_t nb = k / kQk;
    const int8_t* xq = ActQs(x);
    const float* ds = ActDs(x, k);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i v[kLanes], sa, sb;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t offset = b * kBlockBytes;
      prefetcher->Step(b);
      const __m256i xb = LoadSi256(xq + kQk * b);
#pragma GCC unroll 8
      for (int r = 0; r < kLanes; ++r) {
        const __m256i wq = LoadSi256(rows[r] + offset + 2);
        v[r] = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_abs_epi8(wq), _mm256_sign_epi8(xb, wq)), ones);
      }
      ReduceRows(v, &sa, &sb);
      const __m256 dd = _mm256_mul_ps(Scales(rows, offset), _mm256_set1_ps(ds[2 * b]));
      *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sa, sb)), dd, *acc);
    }
  }

  template <int NX>
  static void Accumulate(const Q8Lanes& w, int64_t b, int64_t /*nb*/, const uint8_t* x, int64_t xs,
                         int64_t k, __m256 (&acc)[NX]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[NX];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
      const __m256i wa = w.abs_q[t], wq = w.q[t];
#pragma GCC unroll 8
      for (int i = 0; i < NX; ++i) {
        const int8_t* q = ActQs(x + i * xs) + kQk * b + 4 * t;
        // w * x = |w| * (x with w's sign), so vpmaddubsw (unsigned by signed) can take it.
        const __m256i p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(Broadcast32(q), wq)), ones);
        s[i] = t == 0 ? p : _mm256_add_epi32(s[i], p);
        KeepOrder(s[i]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i) {
      const float dx = ActDs(x + i * xs, k)[2 * b];
      acc[i] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i]), _mm256_mul_ps(w.d, _mm256_set1_ps(dx)), acc[i]);
    }
  }
};

inline void StoreLanes(__m256 v, int n, float* y) {
  if (n == kLanes) {
    _mm256_storeu_ps(y, v);
  } else {
    alignas(32) float tmp[kLanes];
    _mm256_store_ps(tmp, v);
    for (int r = 0; r < n; ++r) y[r] = tmp[r];
  }
}

// Runs NX activation rows over one transposed chunk; y holds the running sums between chunks.
template <class T, int NX>
void RunRows(const typename T::Lanes* chunk, int64_t b0, int nblk, int64_t nb, int64_t k,
             const uint8_t* x, int64_t xs, bool first, int nw, float* y, int64_t ys) {
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(nw), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[NX];
#pragma GCC unroll 8
  for (int i = 0; i < NX; ++i) {
    acc[i] = first          ? _mm256_setzero_ps()
             : nw == kLanes ? _mm256_loadu_ps(y + i * ys)
                            : _mm256_maskload_ps(y + i * ys, mask);
  }
  for (int c = 0; c < nblk; ++c) {
    T::template Accumulate<NX>(chunk[c], b0 + c, nb, x, xs, k, acc);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NX; ++i) {
    if (nw == kLanes) {
      _mm256_storeu_ps(y + i * ys, acc[i]);
    } else {
      _mm256_maskstore_ps(y + i * ys, mask, acc[i]);
    }
  }
}

// y[i * ys + r] += sum over blocks of mins[b][r] * s(x_i, b), rows i < nx: the minimum terms,
// several activation rows at a time so that their chains overlap (each row's sum keeps block
// order, so a row's result does not depend on how many rows share the call; eight chains cover
// the FMA latency, four leave half the FMA units idle).
template <int NX>
void AddMins(const float* mins, int64_t nb, int64_t k, const uint8_t* x, int64_t xs, int nw,
             float* y, int64_t ys) {
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(nw), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[NX];
  const float* ds[NX];
#pragma GCC unroll 8
  for (int i = 0; i < NX; ++i) {
    acc[i] = _mm256_setzero_ps();
    ds[i] = ActDs(x + i * xs, k);
  }
  for (int64_t b = 0; b < nb; ++b) {
#pragma GCC unroll 8
    for (int i = 0; i < NX; ++i) {
      acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(mins + b * kLanes), _mm256_set1_ps(ds[i][2 * b + 1]),
                               acc[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < NX; ++i) {
    float* yi = y + i * ys;
    if (nw == kLanes) {
      _mm256_storeu_ps(yi, _mm256_add_ps(_mm256_loadu_ps(yi), acc[i]));
    } else {
      _mm256_maskstore_ps(yi, mask, _mm256_add_ps(_mm256_maskload_ps(yi, mask), acc[i]));
    }
  }
}

template <class T>
void DotTileLanes(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs,
                  int64_t nx, float* y, int64_t ys) {
  const int64_t nb = k / kQk;
  typename T::Lanes chunk[kChunkBlocks];
  // Every block's row minimums, kept for the pass that adds them after the products.
  thread_local std::vector<float> mins;  // [nb, kLanes]
  if (T::kHasMin && mins.size() < static_cast<size_t>(nb * kLanes)) mins.resize(nb * kLanes);
  for (int64_t j = 0; j < nw; j += kLanes) {
    const int rows_here = static_cast<int>(std::min<int64_t>(kLanes, nw - j));
    // Missing rows repeat the last one; their lanes are never stored.
    const uint8_t* rows[kLanes];
#pragma GCC unroll 8
    for (int r = 0; r < kLanes; ++r) rows[r] = w + (j + std::min(r, rows_here - 1)) * ws;
    const int64_t row_bytes = T::kBlockBytes * nb;
    if (nx == 1) {
      TilePrefetcher prefetcher(rows, kPrefetchTiles * kLanes * ws, row_bytes, nb);
      __m256 acc = _mm256_setzero_ps();
      T::AccumulateRow(k, rows, x, &prefetcher, &acc);
      StoreLanes(acc, rows_here, y + j);
      continue;
    }
    // Here the tile's compute is long enough to hide the next tile's fetch behind it.
    const int64_t num_groups = (nx + kRowGroup - 1) / kRowGroup;
    const int64_t num_chunks = (nb + kChunkBlocks - 1) / kChunkBlocks;
    TilePrefetcher prefetcher(rows, kLanes * ws, row_bytes, num_chunks * num_groups);
    int64_t unit = 0;
    for (int64_t b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int nblk = static_cast<int>(std::min<int64_t>(kChunkBlocks, nb - b0));
      for (int c = 0; c < nblk; ++c) {
        const int64_t offset = (b0 + c) * T::kBlockBytes;
        T::Transpose(rows, offset, &chunk[c]);
        if constexpr (T::kHasMin) _mm256_storeu_ps(&mins[(b0 + c) * kLanes], chunk[c].m);
      }
      const bool first = b0 == 0;
      int64_t i = 0;
      for (; i + kRowGroup <= nx; i += kRowGroup) {
        RunRows<T, kRowGroup>(chunk, b0, nblk, nb, k, x + i * xs, xs, first, rows_here,
                              y + i * ys + j, ys);
        prefetcher.Step(unit++);
      }
      if (nx - i >= 4) {
        RunRows<T, 4>(chunk, b0, nblk, nb, k, x + i * xs, xs, first, rows_here, y + i * ys + j, ys);
        i += 4;
      }
      if (nx - i >= 2) {
        RunRows<T, 2>(chunk, b0, nblk, nb, k, x + i * xs, xs, first, rows_here, y + i * ys + j, ys);
        i += 2;
      }
      if (i < nx) {
        RunRows<T, 1>(chunk, b0, nblk, nb, k, x + i * xs, xs, first, rows_here, y + i * ys + j, ys);
      }
      if (nx % kRowGroup != 0) prefetcher.Step(unit++);
    }
    if constexpr (T::kHasMin) {
      int64_t i = 0;
      for (; i + 8 <= nx; i += 8) {
        AddMins<8>(mins.data(), nb, k, x + i * xs, xs, rows_here, y + i * ys + j, ys);
      }
      for (; i + 4 <= nx; i += 4) {
        AddMins<4>(mins.data(), nb, k, x + i * xs, xs, rows_here, y + i * ys + j, ys);
      }
      for (; i < nx; ++i) {
        AddMins<1>(mins.data(), nb, k, x + i * xs, xs, rows_here, y + i * ys + j, ys);
      }
    }
  }
}

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
  DotTileLanes<Q4Traits<false>>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2Q4_1(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  DotTileLanes<Q4Traits<true>>(k, w, ws, nw, x, xs, nx, y, ys);
}

void DotTileAvx2Q8_0(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                     int64_t xs, int64_t nx, float* y, int64_t ys) {
  DotTileLanes<Q8Traits>(k, w, ws, nw, x, xs, nx, y, ys);
}

}  // namespace shardserve::cpu::internal
