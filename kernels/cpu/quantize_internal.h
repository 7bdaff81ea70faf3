// Internal to kernels/cpu: SIMD versions of quantize.h's row conversions.
#ifndef SHARDSERVE_KERNELS_CPU_QUANTIZE_INTERNAL_H_
#define SHARDSERVE_KERNELS_CPU_QUANTIZE_INTERNAL_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace shardserve::cpu::internal {

// DequantizeRow with AVX2 + FMA + F16C for F16, BF16, Q4_0, Q4_1 and Q8_0; returns false (and
// writes nothing) for other types. Results may differ from DequantizeRow in the last bit
// (fused multiply-add). Call only when the CPU has AVX2.
bool DequantizeRowAvx2(DType type, const void* src, float* dst, int64_t n);

}  // namespace shardserve::cpu::internal

#endif  // SHARDSERVE_KERNELS_CPU_QUANTIZE_INTERNAL_H_
