// Internal to the vec_dot kernels: the packed activation layout and the per-ISA entry points
// that vec_dot.cc registers. Not for use outside kernels/cpu.
//
// NOTES: the inline helpers here are `static` because files compiled with per-ISA flags include
// this header; a shared weak copy built with AVX-512 flags could be linked into baseline callers.
#ifndef SHARDSERVE_KERNELS_CPU_VEC_DOT_INTERNAL_H_
#define SHARDSERVE_KERNELS_CPU_VEC_DOT_INTERNAL_H_

#include <cstdint>

#include "kernels/cpu/quantize.h"
#include "kernels/cpu/vec_dot.h"

namespace shardserve::cpu::internal {

// A packed Q8 activation row of k elements: int8 qs[k], then float ds[2 * k / 32] holding
// (d, s) per block.
static inline const int8_t* ActQs(const uint8_t* row) {
  return reinterpret_cast<const int8_t*>(row);
}
static inline const float* ActDs(const uint8_t* row, int64_t k) {
  return reinterpret_cast<const float*>(row + k);
}
static inline int64_t ActQ8Bytes(int64_t k) { return k + 2 * sizeof(float) * (k / kQk); }

// Position in the packed qs of element j (0..31) of block b when blocks are stored by pairs of
// halves (see vec_dot.h); nb is the number of blocks in the row.
static inline int64_t PairedIndex(int64_t b, int j, int64_t nb) {
  if (b == nb - 1 && nb % 2 == 1) return kQk * b + j;
  const int64_t base = kQk * (b & ~int64_t{1});
  const int64_t first = b & 1;
  return j < 16 ? base + 16 * first + j : base + 32 + 16 * first + (j - 16);
}

// Scalar reference kernels (vec_dot_scalar.cc).
void DotTileScalarF32(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      float*, int64_t);
void DotTileScalarF16(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      float*, int64_t);
void DotTileScalarBF16(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileScalarQ4_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileScalarQ4_1(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileScalarQ8_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileScalarQ4_K(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileScalarQ6_K(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);

// AVX2 + FMA + F16C kernels (vec_dot_avx2*.cc); call only when the CPU has them.
// Packs a Q8 activation row exactly as the scalar packer in vec_dot.cc does.
// `fp16_sum`: s = fp16(d * sum) as Q8_1 stores it (for Q4_1); else s = fp16(d) * sum exactly.
void PackQ8Avx2(const float* x, int64_t k, uint8_t* dst, bool paired, bool fp16_sum);
void DotTileAvx2F32(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                    float*, int64_t);
void DotTileAvx2F16(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                    float*, int64_t);
void DotTileAvx2BF16(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);
void DotTileAvx2Q4_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);
void DotTileAvx2Q4_1(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);
void DotTileAvx2Q8_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);
void DotTileAvx2Q4_K(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);
void DotTileAvx2Q6_K(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                     float*, int64_t);

// AVX-512 F/BW/VL/DQ kernels (vec_dot_avx512.cc); the types without one use the AVX2 kernel.
void DotTileAvx512F32(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      float*, int64_t);
void DotTileAvx512F16(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                      float*, int64_t);
void DotTileAvx512Q4_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileAvx512Q4_1(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);
void DotTileAvx512Q8_0(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t*, int64_t, int64_t,
                       float*, int64_t);

}  // namespace shardserve::cpu::internal

#endif  // SHARDSERVE_KERNELS_CPU_VEC_DOT_INTERNAL_H_
