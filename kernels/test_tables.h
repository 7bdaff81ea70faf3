// Test helper (testonly): weight tables with random contents in the GGUF storage types, and the
// value of every element worked out by plain math from the documented block layouts, without
// the code under test (kernels/cpu/quantize.*), so ops can be checked against it.
//
//   TestTable t = MakeTestTable(DType::kQ4_1, /*rows=*/40, /*cols=*/64, /*seed=*/7);
//   ops::Embedding(ctx, t.view(), ids, out);  // out[i, :] should equal t.Row(ids[i])
#ifndef SHARDSERVE_KERNELS_TEST_TABLES_H_
#define SHARDSERVE_KERNELS_TEST_TABLES_H_

#include <cstdint>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/tensor.h"

namespace shardserve {

struct TestTable {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> bytes;  // [rows, RowBytes(dtype, cols)] as GGUF stores it
  std::vector<double> values;  // [rows, cols] the element values the bytes encode

  // A CPU view of `bytes`; valid while this table lives and is not resized.
  TensorView view() const;
  const double* Row(int64_t r) const { return values.data() + r * cols; }
};

// A table of F32, F16, Q8_0 or Q4_1 elements with magnitudes of order 1: F32/F16 elements are
// random in sign, exponent and mantissa; quantized blocks get random fp16 scales (and Q4_1
// minimums) and random quants over their whole range. REQUIRES: cols % 32 == 0 for Q8_0/Q4_1.
TestTable MakeTestTable(DType dtype, int64_t rows, int64_t cols, uint32_t seed);

// IEEE half-precision bits to their value (subnormals included), by the definition.
double HalfBitsToDouble(uint16_t bits);

}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_TEST_TABLES_H_
