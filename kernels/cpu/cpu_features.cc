#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace shardserve::cpu {
namespace {

bool Bit(uint32_t reg, int bit) { return (reg >> bit) & 1u; }

// XCR0 says which register files the OS saves on a context switch; an extension is usable only
// if its state is saved.
uint64_t ReadXcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  uint32_t eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = Bit(ecx, 27);
  const bool avx = Bit(ecx, 28);
  const bool fma = Bit(ecx, 12);
  const bool f16c = Bit(ecx, 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = ReadXcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;    // SSE and AVX state
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // plus opmask and both ZMM halves
  if (!ymm_state) return f;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = Bit(ebx, 5);
  f.fma = fma;
  f.f16c = f16c;
  if (zmm_state) {
    f.avx512f = Bit(ebx, 16);
    f.avx512dq = Bit(ebx, 17);
    f.avx512bw = Bit(ebx, 30);
    f.avx512vl = Bit(ebx, 31);
    f.avx512vnni = Bit(ecx, 11);
  }
  uint32_t eax1, ebx1, ecx1, edx1;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  f.avxvnni = Bit(eax1, 4);
  if (zmm_state) f.avx512bf16 = Bit(eax1, 5);
  return f;
}

Isa HardwareIsa(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma && f.f16c)) return Isa::kScalar;
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) return Isa::kAvx512;
  return Isa::kAvx2;
}

Isa CappedByEnv(Isa hw) {
  const char* env = std::getenv("SHARDSERVE_ISA");
  if (env == nullptr || *env == '\0') return hw;
  Isa cap = hw;
  if (std::strcmp(env, "scalar") == 0) {
    cap = Isa::kScalar;
  } else if (std::strcmp(env, "avx2") == 0) {
    cap = Isa::kAvx2;
  } else if (std::strcmp(env, "avx512") == 0) {
    cap = Isa::kAvx512;
  }
  return static_cast<Isa>(std::min(static_cast<int>(cap), static_cast<int>(hw)));
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

Isa MaxSupportedIsa() { return HardwareIsa(GetCpuFeatures()); }

Isa ActiveIsa() {
  static const Isa isa = CappedByEnv(MaxSupportedIsa());
  return isa;
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

}  // namespace shardserve::cpu
