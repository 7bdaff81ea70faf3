// ops::Embedding against the table values worked out by plain math (kernels/test_tables.h):
// token rows gathered and dequantized from F32, F16, Q8_0 and Q4_1 tables.
#include <cstdint>
#include <vector>

#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"
#include "kernels/test_tables.h"

namespace shardserve {
namespace {

constexpr int64_t kVocab = 40;
constexpr int64_t kHidden = 96;  // three 32-element blocks per row

class EmbeddingTest : public ::testing::TestWithParam<DType> {
 protected:
  ThreadPool pool_{1};
  OpContext ctx_ = OpContext::Cpu(&pool_);
};

TEST_P(EmbeddingTest, GathersAndDequantizesTheTokenRows) {
  const TestTable table = MakeTestTable(GetParam(), kVocab, kHidden, /*seed=*/11);
  ASSERT_EQ(table.values.size(), static_cast<size_t>(kVocab * kHidden));
  // Repeats, out of order, the first and the last row.
  const std::vector<int32_t> ids = {3, 0, 39, 3, 17};
  std::vector<float> out(ids.size() * kHidden, -1.0f);
  ASSERT_TRUE(ops::Embedding(ctx_, table.view(), ids,
                             TensorView::Cpu(out.data(), DType::kF32,
                                             {static_cast<int64_t>(ids.size()), kHidden}))
                  .ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    const double* want = table.Row(ids[i]);
    for (int64_t c = 0; c < kHidden; ++c) {
      // Every element is exact in float: F16 values, Q8_0's q * d (8 by 11 significant bits),
      // and Q4_1's q * d + m rounded once.
      ASSERT_EQ(out[i * kHidden + c], static_cast<float>(want[c]))
          << DTypeName(GetParam()) << " id " << ids[i] << " col " << c;
    }
  }
}

TEST_P(EmbeddingTest, ReadsRowsOfASlicedTable) {
  // A vocab-parallel rank's slice [10, 30): local id 0 is the table's row 10.
  const TestTable table = MakeTestTable(GetParam(), kVocab, kHidden, /*seed=*/12);
  const TensorView slice = table.view().Rows(10, 30);
  const std::vector<int32_t> ids = {0, 19, 5};
  std::vector<float> out(ids.size() * kHidden);
  ASSERT_TRUE(ops::Embedding(ctx_, slice, ids,
                             TensorView::Cpu(out.data(), DType::kF32,
                                             {static_cast<int64_t>(ids.size()), kHidden}))
                  .ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t c = 0; c < kHidden; ++c) {
      ASSERT_EQ(out[i * kHidden + c], static_cast<float>(table.Row(10 + ids[i])[c]))
          << DTypeName(GetParam()) << " local id " << ids[i] << " col " << c;
    }
  }
  // Ids index the slice, so the table's own last row is out of range here.
  const std::vector<int32_t> outside = {20};
  EXPECT_EQ(
      ops::Embedding(ctx_, slice, outside, TensorView::Cpu(out.data(), DType::kF32, {1, kHidden}))
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_P(EmbeddingTest, RefusesBadIdsAndShapes) {
  const TestTable table = MakeTestTable(GetParam(), kVocab, kHidden, /*seed=*/13);
  std::vector<float> out(2 * kHidden);
  const TensorView two_rows = TensorView::Cpu(out.data(), DType::kF32, {2, kHidden});
  for (const std::vector<int32_t>& ids :
       {std::vector<int32_t>{0, kVocab}, std::vector<int32_t>{-1, 0}}) {
    EXPECT_EQ(ops::Embedding(ctx_, table.view(), ids, two_rows).code(),
              absl::StatusCode::kInvalidArgument)
        << ids[0] << ", " << ids[1];
  }
  const std::vector<int32_t> three = {0, 1, 2};
  EXPECT_EQ(ops::Embedding(ctx_, table.view(), three, two_rows).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> two = {0, 1};
  EXPECT_EQ(ops::Embedding(ctx_, table.view(), two,
                           TensorView::Cpu(out.data(), DType::kF32, {2, kHidden / 2}))
                .code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Types, EmbeddingTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ4_1),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace shardserve
