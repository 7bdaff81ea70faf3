#include "kernels/cpu/vec_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "glog/logging.h"
#include "kernels/cpu/vec_dot_internal.h"

namespace shardserve::cpu {
namespace {

using internal::ActQ8Bytes;
using internal::PairedIndex;

// Quantizes activations as llama.cpp's x86 Q8_0 / Q8_1 quantizer does (scale 127 / amax, round
// half to even), so the integer products match its own.
// `fp16_sum`: store s as Q8_1 does, fp16(d * sum) with the unrounded d (Q4_1 weights); else s is
// fp16(d) * sum exactly, which Q4_0's offset term needs.
void PackQ8(const float* x, int64_t k, uint8_t* dst, bool paired, bool fp16_sum) {
  const int64_t nb = k / kQk;
  auto* qs = reinterpret_cast<int8_t*>(dst);
  float ds[2];
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + kQk * b;
    float amax = 0.0f;
    for (int j = 0; j < kQk; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQk; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * id));
      sum += q;
      qs[paired ? PairedIndex(b, j, nb) : kQk * b + j] = static_cast<int8_t>(q);
    }
    const float d = amax / 127.0f;
    ds[0] = Fp16ToFloat(FloatToFp16(d));
    ds[1] = fp16_sum ? Fp16ToFloat(FloatToFp16(d * static_cast<float>(sum)))
                     : ds[0] * static_cast<float>(sum);  // exact: 11-bit by 12-bit
    std::memcpy(dst + k + sizeof(ds) * b, ds, sizeof(ds));
  }
}

struct Entry {
  DType type;
  DotTileFn fn[3];  // by Isa; nullptr: fall back to the level below
};

constexpr Entry kEntries[] = {
    {DType::kF32,
     {internal::DotTileScalarF32, internal::DotTileAvx2F32, internal::DotTileAvx512F32}},
    {DType::kF16,
     {internal::DotTileScalarF16, internal::DotTileAvx2F16, internal::DotTileAvx512F16}},
    {DType::kBF16, {internal::DotTileScalarBF16, internal::DotTileAvx2BF16, nullptr}},
    {DType::kQ4_0,
     {internal::DotTileScalarQ4_0, internal::DotTileAvx2Q4_0, internal::DotTileAvx512Q4_0}},
    {DType::kQ4_1,
     {internal::DotTileScalarQ4_1, internal::DotTileAvx2Q4_1, internal::DotTileAvx512Q4_1}},
    {DType::kQ8_0,
     {internal::DotTileScalarQ8_0, internal::DotTileAvx2Q8_0, internal::DotTileAvx512Q8_0}},
    {DType::kQ4_K, {internal::DotTileScalarQ4_K, internal::DotTileAvx2Q4_K, nullptr}},
    {DType::kQ6_K, {internal::DotTileScalarQ6_K, internal::DotTileAvx2Q6_K, nullptr}},
};
constexpr int kNumEntries = sizeof(kEntries) / sizeof(kEntries[0]);

// kernels_[entry][isa], resolved once with the fallbacks applied.
struct Table {
  VecDotKernel kernels[kNumEntries][3];
  Table() {
    for (int e = 0; e < kNumEntries; ++e) {
      for (int level = 0; level < 3; ++level) {
        int l = level;
        while (kEntries[e].fn[l] == nullptr) --l;
        kernels[e][level] = {kEntries[e].type, static_cast<Isa>(l), kEntries[e].fn[l]};
      }
    }
  }
};

int EntryIndex(DType t) {
  for (int e = 0; e < kNumEntries; ++e) {
    if (kEntries[e].type == t) return e;
  }
  return -1;
}

}  // namespace

bool HasVecDot(DType weight_type) { return EntryIndex(weight_type) >= 0; }

const VecDotKernel* GetVecDotKernel(DType weight_type, Isa isa) {
  static const Table table;
  const int e = EntryIndex(weight_type);
  if (e < 0) return nullptr;
  return &table.kernels[e][static_cast<int>(isa)];
}

int64_t PackedActivationBytes(DType weight_type, int64_t k) {
  switch (weight_type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return k * static_cast<int64_t>(sizeof(float));
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_0:
      return ActQ8Bytes(k);
    case DType::kQ4_K:
    case DType::kQ6_K:
      return RowBytes(DType::kQ8_K, k);
    default:
      LOG(FATAL) << "no vec dot for " << DTypeName(weight_type);
  }
  return 0;
}

void PackActivations(DType weight_type, const float* x, int64_t k, uint8_t* dst) {
  PackActivations(weight_type, x, k, dst, ActiveIsa());
}

void PackActivations(DType weight_type, const float* x, int64_t k, uint8_t* dst, Isa isa) {
  const bool simd = isa >= Isa::kAvx2;
  switch (weight_type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      std::memcpy(dst, x, k * sizeof(float));
      return;
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_0: {
      const bool paired = weight_type != DType::kQ8_0;
      const bool fp16_sum = weight_type == DType::kQ4_1;
      return simd ? internal::PackQ8Avx2(x, k, dst, paired, fp16_sum)
                  : PackQ8(x, k, dst, paired, fp16_sum);
    }
    case DType::kQ4_K:
    case DType::kQ6_K:
      return QuantizeRow(DType::kQ8_K, x, dst, k);
    default:
      LOG(FATAL) << "no vec dot for " << DTypeName(weight_type);
  }
}

}  // namespace shardserve::cpu
