// Element types of tensors, including llama.cpp's block-quantized formats.
//
// Quantized types store a row of `k` elements as k / BlockSize(type) blocks of
// BlockBytes(type) bytes each; the block layouts are those of the GGUF format, so GGUF tensor
// data is used in place without conversion. The numeric values of the enum are the GGUF type ids.
#ifndef SHARDSERVE_KERNELS_DTYPE_H_
#define SHARDSERVE_KERNELS_DTYPE_H_

#include <cstdint>
#include <string>

namespace shardserve {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ4_K = 12,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
  kInvalid = 0xffffffffu,
};

// Elements per block: 1 for plain types, 32 for Q4_0/Q4_1/Q8_0/Q8_1, 256 for the K types.
int64_t BlockSize(DType t);
// Bytes per block (for plain types, bytes per element). 0 for kInvalid.
int64_t BlockBytes(DType t);
// Bytes of a row of `n` elements. REQUIRES: n % BlockSize(t) == 0.
inline int64_t RowBytes(DType t, int64_t n) { return n / BlockSize(t) * BlockBytes(t); }
bool IsQuantized(DType t);
// Maps a GGUF/ggml type id to a DType we support, or kInvalid.
DType DTypeFromGgufId(uint32_t id);
// "f32", "q4_k", ...
std::string DTypeName(DType t);

}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_DTYPE_H_
