// The AVX2 inner loop of SwiGlu (swiglu.h). Internal to kernels/cpu.
#ifndef SHARDSERVE_KERNELS_CPU_SWIGLU_INTERNAL_H_
#define SHARDSERVE_KERNELS_CPU_SWIGLU_INTERNAL_H_

#include <cstdint>

namespace shardserve::cpu::internal {

// out[i] = silu(gate[i]) * up[i] for i < n, eight at a time with AVX2, with the same bits as the
// portable loop; every element goes through the same vector code (a partial last group is
// padded). out may alias gate or up exactly.
// REQUIRES: MaxSupportedIsa() >= Isa::kAvx2.
void SwiGluSpanAvx2(const float* gate, const float* up, int64_t n, float* out);

}  // namespace shardserve::cpu::internal

#endif  // SHARDSERVE_KERNELS_CPU_SWIGLU_INTERNAL_H_
