// AVX2 dequantization of the common weight types, for MatMul's dequantize-then-sgemm path.
#include <immintrin.h>

#include "kernels/cpu/quantize.h"
#include "kernels/cpu/quantize_internal.h"
#include "kernels/cpu/simd_avx2.h"

namespace shardserve::cpu::internal {
namespace {

// Eight bytes from p as floats, unsigned or signed.
inline __m256 U8ToFloat(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
inline __m256 I8ToFloat(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// q * d + offset for the 32 nibbles of a Q4 block.
inline void Nibbles(const uint8_t* qs, __m256 d, __m256 offset, float* y) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(raw, m4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
  _mm256_storeu_ps(y, _mm256_fmadd_ps(U8ToFloat(lo), d, offset));
  _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(U8ToFloat(_mm_srli_si128(lo, 8)), d, offset));
  _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(U8ToFloat(hi), d, offset));
  _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(U8ToFloat(_mm_srli_si128(hi, 8)), d, offset));
}

}  // namespace

bool DequantizeRowAvx2(DType type, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kQk; ++b, p += sizeof(BlockQ4_0), dst += kQk) {
        const __m256 d = _mm256_set1_ps(HalfToFloat(p));
        Nibbles(p + 2, d, _mm256_mul_ps(d, _mm256_set1_ps(-8.0f)), dst);
      }
      return true;
    case DType::kQ4_1:
      for (int64_t b = 0; b < n / kQk; ++b, p += sizeof(BlockQ4_1), dst += kQk) {
        Nibbles(p + 4, _mm256_set1_ps(HalfToFloat(p)), _mm256_set1_ps(HalfToFloat(p + 2)), dst);
      }
      return true;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kQk; ++b, p += sizeof(BlockQ8_0), dst += kQk) {
        const __m256 d = _mm256_set1_ps(HalfToFloat(p));
        for (int j = 0; j < kQk; j += 8) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + j));
          _mm256_storeu_ps(dst + j, _mm256_mul_ps(I8ToFloat(q), d));
        }
      }
      return true;
    case DType::kF16:
    case DType::kBF16: {
      int64_t j = 0;
      for (; j + 8 <= n; j += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * j));
        const __m256 f = type == DType::kF16
                             ? _mm256_cvtph_ps(h)
                             : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        _mm256_storeu_ps(dst + j, f);
      }
      for (; j < n; ++j) {
        const uint8_t* h = p + 2 * j;
        dst[j] = type == DType::kF16
                     ? HalfToFloat(h)
                     : _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(
                           static_cast<int>(static_cast<uint32_t>(h[0] | (h[1] << 8)) << 16))));
      }
      return true;
    }
    default:
      return false;
  }
}

}  // namespace shardserve::cpu::internal
