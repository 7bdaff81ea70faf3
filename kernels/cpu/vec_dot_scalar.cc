// Scalar reference kernels: the semantics every SIMD kernel must reproduce (up to the order of
// float additions).
#include <cstring>

#include "common/fp16.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu::internal {
namespace {

// Calls dot(w_row, x_row) for every pair of the tile.
template <typename Dot>
void ForTile(const uint8_t* w, int64_t w_stride, int64_t nw, const uint8_t* x, int64_t x_stride,
             int64_t nx, float* y, int64_t y_stride, Dot dot) {
  for (int64_t i = 0; i < nx; ++i) {
    for (int64_t j = 0; j < nw; ++j) y[i * y_stride + j] = dot(w + j * w_stride, x + i * x_stride);
  }
}

template <typename ToFloat>
float DotFloatRow(int64_t k, const uint8_t* w, const uint8_t* x, ToFloat to_float) {
  const auto* xf = reinterpret_cast<const float*>(x);
  float sum = 0.0f;
  for (int64_t j = 0; j < k; ++j) sum += to_float(w, j) * xf[j];
  return sum;
}

uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

float DotQ4_0(int64_t k, const uint8_t* w, const uint8_t* x) {
  const int64_t nb = k / kQk;
  const auto* wb = reinterpret_cast<const BlockQ4_0*>(w);
  const int8_t* xq = ActQs(x);
  const float* ds = ActDs(x, k);
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int j = 0; j < kQk / 2; ++j) {
      isum += ((wb[b].qs[j] & 0xf) - 8) * xq[PairedIndex(b, j, nb)];
      isum += ((wb[b].qs[j] >> 4) - 8) * xq[PairedIndex(b, j + 16, nb)];
    }
    sum += Fp16ToFloat(wb[b].d) * ds[2 * b] * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_1(int64_t k, const uint8_t* w, const uint8_t* x) {
  const int64_t nb = k / kQk;
  const auto* wb = reinterpret_cast<const BlockQ4_1*>(w);
  const int8_t* xq = ActQs(x);
  const float* ds = ActDs(x, k);
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int j = 0; j < kQk / 2; ++j) {
      isum += (wb[b].qs[j] & 0xf) * xq[PairedIndex(b, j, nb)];
      isum += (wb[b].qs[j] >> 4) * xq[PairedIndex(b, j + 16, nb)];
    }
    sum += Fp16ToFloat(wb[b].d) * ds[2 * b] * static_cast<float>(isum) +
           Fp16ToFloat(wb[b].m) * ds[2 * b + 1];
  }
  return sum;
}

float DotQ8_0(int64_t k, const uint8_t* w, const uint8_t* x) {
  const int64_t nb = k / kQk;
  const auto* wb = reinterpret_cast<const BlockQ8_0*>(w);
  const int8_t* xq = ActQs(x);
  const float* ds = ActDs(x, k);
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int isum = 0;
    for (int j = 0; j < kQk; ++j) isum += wb[b].qs[j] * xq[kQk * b + j];
    sum += Fp16ToFloat(wb[b].d) * ds[2 * b] * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_K(int64_t k, const uint8_t* w, const uint8_t* x) {
  const auto* wb = reinterpret_cast<const BlockQ4_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0.0f;
  for (int64_t b = 0; b < k / kQkK; ++b) {
    int sumi = 0, summ = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, mn;
      UnpackQ4KScales(wb[b].scales, s, &sc, &mn);
      const uint8_t* q = wb[b].qs + 32 * (s / 2);
      const int shift = (s % 2) * 4;
      int dot = 0;
      for (int l = 0; l < 32; ++l) dot += ((q[l] >> shift) & 0xf) * xb[b].qs[32 * s + l];
      sumi += sc * dot;
      summ += mn * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
    }
    sum += Fp16ToFloat(wb[b].d) * xb[b].d * static_cast<float>(sumi) -
           Fp16ToFloat(wb[b].dmin) * xb[b].d * static_cast<float>(summ);
  }
  return sum;
}

float DotQ6_K(int64_t k, const uint8_t* w, const uint8_t* x) {
  const auto* wb = reinterpret_cast<const BlockQ6_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0.0f;
  for (int64_t b = 0; b < k / kQkK; ++b) {
    int sumi = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = wb[b].ql + 64 * half;
      const uint8_t* qh = wb[b].qh + 32 * half;
      for (int t = 0; t < 4; ++t) {
        for (int l = 0; l < 32; ++l) {
          const int lo = (t < 2 ? ql[l + 32 * t] : ql[l + 32 * (t - 2)] >> 4) & 0xf;
          const int q = (lo | (((qh[l] >> (2 * t)) & 3) << 4)) - 32;
          const int e = 128 * half + 32 * t + l;
          sumi += wb[b].scales[e / 16] * q * xb[b].qs[e];
        }
      }
    }
    sum += Fp16ToFloat(wb[b].d) * xb[b].d * static_cast<float>(sumi);
  }
  return sum;
}

}  // namespace

void DotTileScalarF32(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                      int64_t xs, int64_t nx, float* y, int64_t ys) {
  ForTile(w, ws, nw, x, xs, nx, y, ys, [k](const uint8_t* wr, const uint8_t* xr) {
    return DotFloatRow(k, wr, xr, [](const uint8_t* p, int64_t j) {
      float v;
      std::memcpy(&v, p + 4 * j, sizeof(v));
      return v;
    });
  });
}

void DotTileScalarF16(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                      int64_t xs, int64_t nx, float* y, int64_t ys) {
  ForTile(w, ws, nw, x, xs, nx, y, ys, [k](const uint8_t* wr, const uint8_t* xr) {
    return DotFloatRow(k, wr, xr,
                       [](const uint8_t* p, int64_t j) { return Fp16ToFloat(Load16(p + 2 * j)); });
  });
}

void DotTileScalarBF16(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x,
                       int64_t xs, int64_t nx, float* y, int64_t ys) {
  ForTile(w, ws, nw, x, xs, nx, y, ys, [k](const uint8_t* wr, const uint8_t* xr) {
    return DotFloatRow(k, wr, xr,
                       [](const uint8_t* p, int64_t j) { return Bf16ToFloat(Load16(p + 2 * j)); });
  });
}

#define SHARDSERVE_SCALAR_TILE(Name, Dot)                                                      \
  void Name(int64_t k, const uint8_t* w, int64_t ws, int64_t nw, const uint8_t* x, int64_t xs, \
            int64_t nx, float* y, int64_t ys) {                                                \
    ForTile(w, ws, nw, x, xs, nx, y, ys,                                                       \
            [k](const uint8_t* wr, const uint8_t* xr) { return Dot(k, wr, xr); });             \
  }

SHARDSERVE_SCALAR_TILE(DotTileScalarQ4_0, DotQ4_0)
SHARDSERVE_SCALAR_TILE(DotTileScalarQ4_1, DotQ4_1)
SHARDSERVE_SCALAR_TILE(DotTileScalarQ8_0, DotQ8_0)
SHARDSERVE_SCALAR_TILE(DotTileScalarQ4_K, DotQ4_K)
SHARDSERVE_SCALAR_TILE(DotTileScalarQ6_K, DotQ6_K)

#undef SHARDSERVE_SCALAR_TILE

}  // namespace shardserve::cpu::internal
