// Dot products between weight rows stored in a GGUF type and activation rows: the inner loop of
// MatMul, with a scalar reference and AVX2 / AVX-512 versions picked at run time.
//
// Weights are read as stored. Activations are first packed, once per row, into the layout the
// weight type's kernel reads (PackActivations):
//   F32, F16, BF16 weights: float.
//   Q8_0, Q4_0, Q4_1 weights: int8 in blocks of 32, quantized exactly as llama.cpp quantizes
//     activations to Q8_0 / Q8_1, followed by one (d, s) float pair per block: d is the block
//     scale rounded to fp16 (as llama.cpp stores it) and s = d * sum(qs). For the 4-bit weight
//     types each pair of blocks is stored by halves (A0..15, B0..15, A16..31, B16..31) so one
//     256-bit load meets the low (or high) nibbles of two weight blocks; a last odd block stays
//     in order.
//   Q4_K, Q6_K weights: Q8_K blocks (quantize.h).
// Integer products are summed exactly within a block and scaled and accumulated in float across
// blocks, as llama.cpp does, so results track its own to float rounding.
//
//   const VecDotKernel* kern = GetVecDotKernel(DType::kQ4_1, ActiveIsa());
//   std::vector<uint8_t> xq(PackedActivationBytes(DType::kQ4_1, k));
//   PackActivations(DType::kQ4_1, x, k, xq.data());
//   kern->dot_tile(k, w, w_row_bytes, n, xq.data(), 0, 1, y, 0);  // y[j] = w_j . x
#ifndef SHARDSERVE_KERNELS_CPU_VEC_DOT_H_
#define SHARDSERVE_KERNELS_CPU_VEC_DOT_H_

#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/dtype.h"

namespace shardserve::cpu {

// y[i * y_stride + j] = dot(w_j, x_i) for j < nw, i < nx, where w_j starts at
// w + j * w_stride_bytes (a weight row of k elements) and x_i at x + i * x_stride_bytes (a packed
// activation row). Strides are in bytes except y_stride (floats).
using DotTileFn = void (*)(int64_t k, const uint8_t* w, int64_t w_stride_bytes, int64_t nw,
                           const uint8_t* x, int64_t x_stride_bytes, int64_t nx, float* y,
                           int64_t y_stride);

struct VecDotKernel {
  DType weight_type;
  Isa isa;  // the level this kernel was compiled for (may be below the level asked for)
  DotTileFn dot_tile;
};

// True for the weight types with a kernel: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K.
bool HasVecDot(DType weight_type);

// The kernel for `weight_type` at the highest level <= `isa` that has one; nullptr if the type
// has no kernel. REQUIRES: isa <= MaxSupportedIsa() (the kernel uses those instructions).
const VecDotKernel* GetVecDotKernel(DType weight_type, Isa isa);

// Bytes of one packed activation row of k elements. REQUIRES: HasVecDot(weight_type),
// k % BlockSize(weight_type) == 0.
int64_t PackedActivationBytes(DType weight_type, int64_t k);

// Writes PackedActivationBytes(weight_type, k) bytes at dst from x[0, k). Every ISA level writes
// the same bytes; the first form uses ActiveIsa(). REQUIRES: isa <= MaxSupportedIsa().
void PackActivations(DType weight_type, const float* x, int64_t k, uint8_t* dst);
void PackActivations(DType weight_type, const float* x, int64_t k, uint8_t* dst, Isa isa);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_VEC_DOT_H_
