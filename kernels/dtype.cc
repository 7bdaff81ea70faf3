#include "kernels/dtype.h"

namespace shardserve {

int64_t BlockSize(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ8_0:
    case DType::kQ8_1:
      return 32;
    case DType::kQ4_K:
    case DType::kQ6_K:
    case DType::kQ8_K:
      return 256;
    default:
      return 1;
  }
}

int64_t BlockBytes(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
      return 1;
    case DType::kI64:
    case DType::kF64:
      return 8;
    case DType::kQ4_0:
      return 2 + 16;  // fp16 scale, 32 x 4-bit
    case DType::kQ4_1:
      return 2 + 2 + 16;  // fp16 scale, fp16 min, 32 x 4-bit
    case DType::kQ8_0:
      return 2 + 32;  // fp16 scale, 32 x int8
    case DType::kQ8_1:
      return 2 + 2 + 32;  // fp16 scale, fp16 scale*sum, 32 x int8
    case DType::kQ4_K:
      return 2 + 2 + 12 + 128;  // fp16 d, fp16 dmin, 8 x 6-bit scale/min pairs, 256 x 4-bit
    case DType::kQ6_K:
      return 128 + 64 + 16 + 2;  // low 4 bits, high 2 bits, 16 x int8 scales, fp16 d
    case DType::kQ8_K:
      return 4 + 256 + 2 * 16;  // f32 d, 256 x int8, 16 x int16 block sums
    case DType::kInvalid:
      return 0;
  }
  return 0;
}

bool IsQuantized(DType t) { return BlockSize(t) > 1; }

DType DTypeFromGgufId(uint32_t id) {
  switch (id) {
    case 0:
      return DType::kF32;
    case 1:
      return DType::kF16;
    case 2:
      return DType::kQ4_0;
    case 3:
      return DType::kQ4_1;
    case 8:
      return DType::kQ8_0;
    case 9:
      return DType::kQ8_1;
    case 12:
      return DType::kQ4_K;
    case 14:
      return DType::kQ6_K;
    case 15:
      return DType::kQ8_K;
    case 24:
      return DType::kI8;
    case 25:
      return DType::kI16;
    case 26:
      return DType::kI32;
    case 27:
      return DType::kI64;
    case 28:
      return DType::kF64;
    case 30:
      return DType::kBF16;
    default:
      return DType::kInvalid;
  }
}

std::string DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kQ4_0:
      return "q4_0";
    case DType::kQ4_1:
      return "q4_1";
    case DType::kQ8_0:
      return "q8_0";
    case DType::kQ8_1:
      return "q8_1";
    case DType::kQ4_K:
      return "q4_k";
    case DType::kQ6_K:
      return "q6_k";
    case DType::kQ8_K:
      return "q8_k";
    case DType::kI8:
      return "i8";
    case DType::kI16:
      return "i16";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
    case DType::kF64:
      return "f64";
    case DType::kInvalid:
      return "invalid";
  }
  return "invalid";
}

}  // namespace shardserve
