#include "kernels/cpu/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "glog/logging.h"
#include "kernels/cpu/quantize_internal.h"

namespace shardserve::cpu {
namespace {

// Round half to even, as llama.cpp's nearest_int (the default FP rounding mode).
int NearestInt(float v) { return static_cast<int>(std::nearbyint(v)); }

// ---------------------------------------------------------------------------------------------
// Dequantization.

void DequantizeQ4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQk) {
    const float d = Fp16ToFloat(b[i].d);
    for (int j = 0; j < kQk / 2; ++j) {
      y[j] = static_cast<float>((b[i].qs[j] & 0xf) - 8) * d;
      y[j + kQk / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4_1(const BlockQ4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQk) {
    const float d = Fp16ToFloat(b[i].d);
    const float m = Fp16ToFloat(b[i].m);
    for (int j = 0; j < kQk / 2; ++j) {
      y[j] = static_cast<float>(b[i].qs[j] & 0xf) * d + m;
      y[j + kQk / 2] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void DequantizeQ8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQk) {
    const float d = Fp16ToFloat(b[i].d);
    for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void DequantizeQ8_1(const BlockQ8_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQk) {
    const float d = Fp16ToFloat(b[i].d);
    for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void DequantizeQ4_K(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFloat(b[i].d);
    const float dmin = Fp16ToFloat(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int g = 0; g < kQkK / 64; ++g, q += 32) {
      uint8_t sc, mn;
      UnpackQ4KScales(b[i].scales, 2 * g, &sc, &mn);
      const float d_lo = d * sc, m_lo = dmin * mn;
      UnpackQ4KScales(b[i].scales, 2 * g + 1, &sc, &mn);
      const float d_hi = d * sc, m_hi = dmin * mn;
      for (int l = 0; l < 32; ++l) *y++ = d_lo * static_cast<float>(q[l] & 0xf) - m_lo;
      for (int l = 0; l < 32; ++l) *y++ = d_hi * static_cast<float>(q[l] >> 4) - m_hi;
    }
  }
}

void DequantizeQ6_K(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFloat(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

void DequantizeQ8_K(const BlockQ8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQkK) {
    for (int j = 0; j < kQkK; ++j) y[j] = b[i].d * static_cast<float>(b[i].qs[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// Quantization.

void QuantizeQ4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQk) {
    float amax = 0.0f, max = 0.0f;  // max keeps the sign of the largest magnitude
    for (int j = 0; j < kQk; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = FloatToFp16(d);
    for (int j = 0; j < kQk / 2; ++j) {
      // Truncation after +8.5 rounds to nearest; matches llama.cpp's reference quantizer.
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int hi =
          std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kQk / 2] * id + 8.5f)));
      b[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void QuantizeQ4_1(const float* x, BlockQ4_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQk) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQk; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = FloatToFp16(d);
    b[i].m = FloatToFp16(min);
    for (int j = 0; j < kQk / 2; ++j) {
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const int hi =
          std::min(15, static_cast<int>(static_cast<int8_t>((x[j + kQk / 2] - min) * id + 0.5f)));
      b[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// Shared by Q8_0 and Q8_1; returns the unrounded scale and writes qs.
float QuantizeBlock8(const float* x, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < kQk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQk; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  return d;
}

void QuantizeQ8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQk) b[i].d = FloatToFp16(QuantizeBlock8(x, b[i].qs));
}

void QuantizeQ8_1(const float* x, BlockQ8_1* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQk) {
    const float d = QuantizeBlock8(x, b[i].qs);
    int sum = 0;
    for (int j = 0; j < kQk; ++j) sum += b[i].qs[j];
    b[i].d = FloatToFp16(d);
    b[i].s = FloatToFp16(static_cast<float>(sum) * d);
  }
}

void QuantizeQ8_K(const float* x, BlockQ8_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQkK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    std::memset(&b[i], 0, sizeof(b[i]));
    if (amax == 0.0f) continue;
    // Scaling by -127 / max (not 127 / amax) reproduces llama.cpp's rounding exactly.
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQkK; ++j) b[i].qs[j] = std::min(127, NearestInt(iscale * x[j]));
    for (int j = 0; j < kQkK / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

// Round-to-nearest Q4_K: each sub-block of 32 gets scale (max - min) / 15 and offset -min (the
// format only stores non-negative offsets, so min is clamped to <= 0); scales and offsets are
// then quantized to 6 bits against the super-block's largest.
void QuantizeQ4_K(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    float scale[8], offset[8];
    float max_scale = 0.0f, max_offset = 0.0f;
    for (int s = 0; s < 8; ++s) {
      const float* xs = x + 32 * s;
      float min = 0.0f, max = 0.0f;
      for (int l = 0; l < 32; ++l) {
        min = std::min(min, xs[l]);
        max = std::max(max, xs[l]);
      }
      scale[s] = (max - min) / 15;
      offset[s] = -min;
      max_scale = std::max(max_scale, scale[s]);
      max_offset = std::max(max_offset, offset[s]);
    }
    const float d = max_scale / 63, dmin = max_offset / 63;
    b[i].d = FloatToFp16(d);
    b[i].dmin = FloatToFp16(dmin);
    uint8_t sc[8], mn[8];
    for (int s = 0; s < 8; ++s) {
      sc[s] = static_cast<uint8_t>(d > 0 ? std::min(63, NearestInt(scale[s] / d)) : 0);
      mn[s] = static_cast<uint8_t>(dmin > 0 ? std::min(63, NearestInt(offset[s] / dmin)) : 0);
    }
    for (int j = 0; j < 4; ++j) {
      b[i].scales[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
      b[i].scales[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
      b[i].scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
    // Quantize against the stored (rounded) scales so dequantization sees consistent values.
    const float d_r = Fp16ToFloat(b[i].d), dmin_r = Fp16ToFloat(b[i].dmin);
    uint8_t q[kQkK];
    for (int s = 0; s < 8; ++s) {
      const float ds = d_r * sc[s], ms = dmin_r * mn[s];
      for (int l = 0; l < 32; ++l) {
        const int v = ds > 0 ? NearestInt((x[32 * s + l] + ms) / ds) : 0;
        q[32 * s + l] = static_cast<uint8_t>(std::clamp(v, 0, 15));
      }
    }
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) {
        b[i].qs[32 * g + l] = static_cast<uint8_t>(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
      }
    }
  }
}

// Round-to-nearest Q6_K: each sub-block of 16 gets scale max|x| / 31, quantized to int8 against
// the super-block's largest.
void QuantizeQ6_K(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQkK) {
    float scale[16];
    float max_scale = 0.0f;
    for (int s = 0; s < 16; ++s) {
      float amax = 0.0f;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * s + l]));
      scale[s] = amax / 31;
      max_scale = std::max(max_scale, scale[s]);
    }
    const float d = max_scale / 127;
    b[i].d = FloatToFp16(d);
    const float d_r = Fp16ToFloat(b[i].d);
    uint8_t q[kQkK];
    for (int s = 0; s < 16; ++s) {
      const int sc = d > 0 ? std::min(127, NearestInt(scale[s] / d)) : 0;
      b[i].scales[s] = static_cast<int8_t>(sc);
      const float ds = d_r * sc;
      for (int l = 0; l < 16; ++l) {
        const int v = ds > 0 ? NearestInt(x[16 * s + l] / ds) : 0;
        q[16 * s + l] = static_cast<uint8_t>(std::clamp(v, -32, 31) + 32);
      }
    }
    for (int half = 0; half < 2; ++half) {
      const uint8_t* qq = q + 128 * half;
      uint8_t* ql = b[i].ql + 64 * half;
      uint8_t* qh = b[i].qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((qq[l] & 0xf) | ((qq[l + 64] & 0xf) << 4));
        ql[l + 32] = static_cast<uint8_t>((qq[l + 32] & 0xf) | ((qq[l + 96] & 0xf) << 4));
        qh[l] = static_cast<uint8_t>((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                     ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

bool CanDequantize(DType type) {
  switch (type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_0:
    case DType::kQ8_1:
    case DType::kQ4_K:
    case DType::kQ6_K:
    case DType::kQ8_K:
      return true;
    default:
      return false;
  }
}

bool CanQuantize(DType type) { return CanDequantize(type); }

void DequantizeRow(DType type, const void* src, float* dst, int64_t n) {
  CHECK(CanDequantize(type)) << DTypeName(type);
  CHECK_EQ(n % BlockSize(type), 0);
  const int64_t nb = n / BlockSize(type);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFloat(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(h[i]);
      return;
    }
    case DType::kQ4_0:
      return DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case DType::kQ4_1:
      return DequantizeQ4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case DType::kQ8_0:
      return DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case DType::kQ8_1:
      return DequantizeQ8_1(static_cast<const BlockQ8_1*>(src), dst, nb);
    case DType::kQ4_K:
      return DequantizeQ4_K(static_cast<const BlockQ4_K*>(src), dst, nb);
    case DType::kQ6_K:
      return DequantizeQ6_K(static_cast<const BlockQ6_K*>(src), dst, nb);
    case DType::kQ8_K:
      return DequantizeQ8_K(static_cast<const BlockQ8_K*>(src), dst, nb);
    default:
      return;
  }
}

void DequantizeRowFast(DType type, const void* src, float* dst, int64_t n, Isa isa) {
  if (isa >= Isa::kAvx2 && internal::DequantizeRowAvx2(type, src, dst, n)) return;
  DequantizeRow(type, src, dst, n);
}

void QuantizeRow(DType type, const float* src, void* dst, int64_t n) {
  CHECK(CanQuantize(type)) << DTypeName(type);
  CHECK_EQ(n % BlockSize(type), 0);
  const int64_t nb = n / BlockSize(type);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = FloatToFp16(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = FloatToBf16(src[i]);
      return;
    }
    case DType::kQ4_0:
      return QuantizeQ4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case DType::kQ4_1:
      return QuantizeQ4_1(src, static_cast<BlockQ4_1*>(dst), nb);
    case DType::kQ8_0:
      return QuantizeQ8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case DType::kQ8_1:
      return QuantizeQ8_1(src, static_cast<BlockQ8_1*>(dst), nb);
    case DType::kQ4_K:
      return QuantizeQ4_K(src, static_cast<BlockQ4_K*>(dst), nb);
    case DType::kQ6_K:
      return QuantizeQ6_K(src, static_cast<BlockQ6_K*>(dst), nb);
    case DType::kQ8_K:
      return QuantizeQ8_K(src, static_cast<BlockQ8_K*>(dst), nb);
    default:
      return;
  }
}

}  // namespace shardserve::cpu
