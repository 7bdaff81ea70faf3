// Run-time detection of the x86 SIMD extensions the CPU kernels are specialised for.
//
// Kernels are compiled per instruction-set level in separate translation units and chosen here at
// run time, so one binary runs on any x86-64-v2 machine and uses AVX2 or AVX-512 where the CPU
// and the OS (saved register state, checked with xgetbv) allow it.
//
// The environment variable SHARDSERVE_ISA=scalar|avx2|avx512 caps the level (it never raises it
// above what the hardware supports); tests and benchmarks use it to compare paths.
//
//   if (ActiveIsa() >= Isa::kAvx2) { ... }
#ifndef SHARDSERVE_KERNELS_CPU_CPU_FEATURES_H_
#define SHARDSERVE_KERNELS_CPU_CPU_FEATURES_H_

namespace shardserve::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool avxvnni = false;  // the VEX-encoded VNNI of CPUs without AVX-512
};

// Kernel levels, ordered: a higher level implies every lower one.
enum class Isa : int {
  kScalar = 0,
  kAvx2 = 1,    // AVX2 + FMA + F16C
  kAvx512 = 2,  // AVX-512 F, BW, VL, DQ
};

// What this CPU and OS support. Computed once; thread-safe.
const CpuFeatures& GetCpuFeatures();

// The highest level the hardware supports, ignoring SHARDSERVE_ISA.
Isa MaxSupportedIsa();

// The level kernels dispatch to: MaxSupportedIsa() capped by SHARDSERVE_ISA, read once on
// first use.
Isa ActiveIsa();

// "scalar", "avx2", "avx512".
const char* IsaName(Isa isa);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_CPU_FEATURES_H_
