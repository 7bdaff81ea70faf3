// GGUF block formats and row conversions between them and float.
//
// The structs below are byte-exact copies of the layouts llama.cpp writes into GGUF files, so a
// tensor mapped from a file is read in place. Every quantized row of `n` elements is n / 32
// (n / 256 for the K types) consecutive blocks.
//
//   std::vector<uint8_t> q(RowBytes(DType::kQ4_1, 576));
//   QuantizeRow(DType::kQ4_1, weights, q.data(), 576);
//   DequantizeRow(DType::kQ4_1, q.data(), back, 576);
//
// The quantizers of Q8_0, Q8_1, Q4_0 and Q4_1 reproduce llama.cpp's reference quantizers bit for
// bit; those of Q4_K and Q6_K use plain round-to-nearest (valid blocks, not llama.cpp's search for
// the best scales) and exist to make test weights.
#ifndef SHARDSERVE_KERNELS_CPU_QUANTIZE_H_
#define SHARDSERVE_KERNELS_CPU_QUANTIZE_H_

#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/dtype.h"

namespace shardserve::cpu {

inline constexpr int kQk = 32;    // elements per block of the 32-element formats
inline constexpr int kQkK = 256;  // elements per super-block of the K formats

// value = (q - 8) * d; element j in the low nibble of qs[j], element j + 16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQk / 2];
};

// value = q * d + m; nibbles as Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[kQk / 2];
};

// value = q * d.
struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQk];
};

// value = q * d; s = d * sum(qs), which lets a dot product with Q4_1 fold in the minimum.
struct BlockQ8_1 {
  uint16_t d;  // fp16
  uint16_t s;  // fp16
  int8_t qs[kQk];
};

// Eight sub-blocks of 32; sub-block i has value = d * sc[i] * q - dmin * mn[i] with 6-bit sc and mn
// packed into `scales` (see UnpackQ4KScales). Within each 64 elements, the low nibbles of 32
// bytes are the first sub-block and the high nibbles the second.
struct BlockQ4_K {
  uint16_t d;     // fp16
  uint16_t dmin;  // fp16
  uint8_t scales[12];
  uint8_t qs[kQkK / 2];
};

// Sixteen sub-blocks of 16; value = d * scales[i] * (q - 32) with 6-bit q split into four low
// bits (ql) and two high bits (qh). In each half of 128 elements, element l + 32 * t (t = 0..3)
// takes ql[l + 32 * (t & 1)] (low nibble for t < 2, high nibble otherwise) and bits 2t..2t+1 of
// qh[l].
struct BlockQ6_K {
  uint8_t ql[kQkK / 2];
  uint8_t qh[kQkK / 4];
  int8_t scales[kQkK / 16];
  uint16_t d;  // fp16
};

// Activation format for the K types: value = q * d, bsums[i] = sum of qs[16 i .. 16 i + 15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQkK];
  int16_t bsums[kQkK / 16];
};

static_assert(sizeof(BlockQ4_0) == 18, "GGUF layout");
static_assert(sizeof(BlockQ4_1) == 20, "GGUF layout");
static_assert(sizeof(BlockQ8_0) == 34, "GGUF layout");
static_assert(sizeof(BlockQ8_1) == 36, "GGUF layout");
static_assert(sizeof(BlockQ4_K) == 144, "GGUF layout");
static_assert(sizeof(BlockQ6_K) == 210, "GGUF layout");
static_assert(sizeof(BlockQ8_K) == 292, "GGUF layout");

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block: scales[0..3] hold the low six
// bits of sc[0..3], scales[4..7] those of mn[0..3], scales[8..11] the low nibbles of sc[4..7]
// and mn[4..7] (as low/high nibble), with their top two bits in the top bits of scales[0..7].
inline void UnpackQ4KScales(const uint8_t* scales, int j, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *mn = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4);
    *mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// True for the types DequantizeRow accepts: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q8_1, Q4_K, Q6_K,
// Q8_K.
bool CanDequantize(DType type);
// True for the types QuantizeRow accepts: the above.
bool CanQuantize(DType type);

// dst[0, n) = the values of the row at src.
// REQUIRES: CanDequantize(type), n % BlockSize(type) == 0.
void DequantizeRow(DType type, const void* src, float* dst, int64_t n);

// DequantizeRow using the SIMD level `isa` where one exists (else the scalar code): faster, and
// may differ from DequantizeRow in the last bit. REQUIRES: as DequantizeRow, and
// isa <= MaxSupportedIsa().
void DequantizeRowFast(DType type, const void* src, float* dst, int64_t n, Isa isa);

// Writes RowBytes(type, n) bytes at dst encoding src[0, n).
// REQUIRES: CanQuantize(type), n % BlockSize(type) == 0.
void QuantizeRow(DType type, const float* src, void* dst, int64_t n);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_QUANTIZE_H_
