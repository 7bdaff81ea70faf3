#include "model/safetensors_file.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/safetensors_builder.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return SafetensorsFile::Parse("test.safetensors", absl::MakeConstSpan(bytes));
}

void ExpectRejected(const std::vector<uint8_t>& bytes, const std::string& part) {
  auto f = ParseBytes(bytes);
  ASSERT_FALSE(f.ok()) << "expected an error containing " << part;
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("test.safetensors"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(part));
}

void ExpectHeaderRejected(const std::string& header, size_t data_bytes, const std::string& part) {
  ExpectRejected(SafetensorsBuilder::Assemble(header, std::vector<uint8_t>(data_bytes)), part);
}

TEST(SafetensorsFileTest, ReadsEveryDtype) {
  const std::vector<float> norm = {1.0f, -2.0f, 0.5f};
  std::vector<uint8_t> norm_bytes(12);
  std::memcpy(norm_bytes.data(), norm.data(), 12);
  SafetensorsBuilder b;
  b.AddTensor("model.norm.weight", "F32", {3}, norm_bytes)
      .AddTensor("half", "F16", {2, 3})
      .AddTensor("brain", "BF16", {4, 1, 2})
      .AddTensor("ints", "I32", {5})
      .AddTensor("longs", "I64", {1, 2})
      .AddTensor("doubles", "F64", {2})
      .AddTensor("scalar", "F32", {})
      .AddTensor("empty", "F32", {0, 4})
      .SetMetadata({{"format", "pt"}});
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 8u);
  EXPECT_EQ((*f)->FindTensor("__metadata__"), nullptr);

  auto w = (*f)->Get("model.norm.weight");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->ShapeString(), "[3]");
  EXPECT_EQ(w->device, Device::Cpu());
  EXPECT_EQ(w->ptr<float>()[1], -2.0f);
  EXPECT_GE(static_cast<const uint8_t*>(w->data), bytes.data());
  EXPECT_LT(static_cast<const uint8_t*>(w->data), bytes.data() + bytes.size());

  EXPECT_EQ((*f)->Get("half")->dtype, DType::kF16);
  EXPECT_EQ((*f)->Get("half")->ShapeString(), "[2, 3]");
  EXPECT_EQ((*f)->Get("brain")->dtype, DType::kBF16);
  EXPECT_EQ((*f)->Get("brain")->ShapeString(), "[4, 1, 2]");
  EXPECT_EQ((*f)->Get("ints")->dtype, DType::kI32);
  EXPECT_EQ((*f)->Get("longs")->dtype, DType::kI64);
  EXPECT_EQ((*f)->Get("doubles")->dtype, DType::kF64);
  EXPECT_EQ((*f)->Get("scalar")->ndim, 0);
  EXPECT_EQ((*f)->Get("empty")->numel(), 0);
  EXPECT_EQ((*f)->FindTensor("brain")->end - (*f)->FindTensor("brain")->begin, 16u);

  absl::Status missing = (*f)->Get("lm_head.weight").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("test.safetensors"));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("lm_head.weight"));
}

TEST(SafetensorsFileTest, ReadsHandWrittenHeader) {
  // Two F32 tensors laid out back to back, as the reference writer would.
  std::vector<uint8_t> data(24);
  const float values[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(data.data(), values, 24);
  const std::vector<uint8_t> bytes = SafetensorsBuilder::Assemble(
      R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"__metadata__":{"x":"y"}})",
      data);
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->Get("a")->ptr<float>()[3], 4.0f);
  EXPECT_EQ((*f)->Get("b")->ptr<float>()[0], 5.0f);
}

TEST(SafetensorsFileTest, OpensFilesFromDisk) {
  const std::string path = testing::TempDir() + "/open_test.safetensors";
  ASSERT_TRUE(SafetensorsBuilder().AddTensor("x", "BF16", {2, 8}).WriteFile(path).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->Get("x")->ShapeString(), "[2, 8]");
  EXPECT_EQ(SafetensorsFile::Open(path + ".missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsFileTest, RejectsBadFraming) {
  ExpectRejected({1, 2, 3}, "truncated");
  std::vector<uint8_t> huge(16, 0);
  const uint64_t too_long = SafetensorsFile::kMaxHeaderBytes + 1;
  std::memcpy(huge.data(), &too_long, 8);
  ExpectRejected(huge, "exceeds the limit");
  std::vector<uint8_t> past(16, ' ');
  const uint64_t past_end = 9;
  std::memcpy(past.data(), &past_end, 8);
  ExpectRejected(past, "exceeds the 8 bytes after it");
  ExpectHeaderRejected("{\"a\":", 0, "not valid JSON");
  ExpectHeaderRejected("[1, 2]", 0, "not a JSON object");
}

TEST(SafetensorsFileTest, RejectsBadEntries) {
  ExpectHeaderRejected(R"({"t":5})", 0, "'t': entry is not an object");
  ExpectHeaderRejected(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4, "'t': missing string");
  ExpectHeaderRejected(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1,
                       "'t': dtype U8 is not supported");
  ExpectHeaderRejected(R"({"t":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1,
                       "F8_E4M3");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", 4, "missing array");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]}})", 4,
                       "5 dimensions");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
                       "non-negative integers");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4,
                       "non-negative integers");
  ExpectHeaderRejected(
      R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4,
      "overflows");
  // Empty, but a row of 2^62 floats would overflow any byte arithmetic on the view.
  ExpectHeaderRejected(
      R"({"t":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[0,0]}})", 4,
      "overflows");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1]}})", 4, "data_offsets");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
                       "data_offsets");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4, "outside");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4,
                       "outside the 4-byte data section");
  ExpectHeaderRejected(
      R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})", 4, "outside");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 16,
                       "span 8 bytes but F32 [3] needs 12");
  ExpectHeaderRejected(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8,
                       "not aligned");
}

TEST(SafetensorsFileTest, RejectsEveryTruncation) {
  const std::vector<uint8_t> bytes =
      SafetensorsBuilder().AddTensor("a", "F32", {2, 3}).AddTensor("b", "F16", {5}).Build();
  ASSERT_TRUE(ParseBytes(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    EXPECT_FALSE(ParseBytes(prefix).ok()) << "prefix of " << n << " bytes";
  }
}

}  // namespace
}  // namespace shardserve
