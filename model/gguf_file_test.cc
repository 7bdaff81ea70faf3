#include "model/gguf_file.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf_builder.h"

namespace shardserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  return GgufFile::Parse("test.gguf", absl::MakeConstSpan(bytes));
}

// Expects parsing to fail with INVALID_ARGUMENT and a message containing each of `parts`.
void ExpectRejected(const std::vector<uint8_t>& bytes, std::vector<std::string> parts) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
  ASSERT_FALSE(f.ok()) << "expected an error containing " << parts.front();
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("test.gguf"));
  for (const std::string& p : parts) EXPECT_THAT(std::string(f.status().message()), HasSubstr(p));
}

std::vector<uint8_t> U64(uint64_t v) {
  std::vector<uint8_t> b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}

TEST(GgufFileTest, ReadsEveryScalarType) {
  GgufBuilder b;
  b.AddUint8("u8", 200)
      .AddInt8("i8", -100)
      .AddUint16("u16", 60000)
      .AddInt16("i16", -30000)
      .AddUint32("u32", 4000000000u)
      .AddInt32("i32", -2000000000)
      .AddUint64("u64", 1ull << 40)
      .AddInt64("i64", -(1ll << 50))
      .AddFloat32("f32", 0.5f)
      .AddFloat64("f64", -2.25)
      .AddBool("yes", true)
      .AddBool("no", false)
      .AddString("s", "hello")
      .AddString("empty", "");
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.GetInt("u8"), 200);
  EXPECT_EQ(*g.GetInt("i8"), -100);
  EXPECT_EQ(*g.GetInt("u16"), 60000);
  EXPECT_EQ(*g.GetInt("i16"), -30000);
  EXPECT_EQ(*g.GetInt("u32"), 4000000000ll);
  EXPECT_EQ(*g.GetInt("i32"), -2000000000);
  EXPECT_EQ(*g.GetInt("u64"), 1ll << 40);
  EXPECT_EQ(*g.GetInt("i64"), -(1ll << 50));
  EXPECT_EQ(*g.GetFloat("f32"), 0.5);
  EXPECT_EQ(*g.GetFloat("f64"), -2.25);
  EXPECT_EQ(*g.GetFloat("i32"), -2000000000.0);  // integers read as numbers too
  EXPECT_TRUE(*g.GetBool("yes"));
  EXPECT_FALSE(*g.GetBool("no"));
  EXPECT_EQ(*g.GetString("s"), "hello");
  EXPECT_EQ(*g.GetString("empty"), "");
  EXPECT_TRUE(g.Has("s"));
  EXPECT_FALSE(g.Has("nope"));
  EXPECT_EQ(g.Keys().size(), 14u);
  EXPECT_EQ(g.Keys().front(), "u8");
  EXPECT_EQ(*g.TypeOf("f64"), GgufType::kFloat64);
  EXPECT_TRUE(g.tensors().empty());
}

TEST(GgufFileTest, ReadsArrays) {
  GgufBuilder b;
  b.AddStringArray("tokens", {"a", "", "<s>", "\xc4\xa0the"})
      .AddInt32Array("types", {1, -2, 3})
      .AddUint8Array("bytes", {7, 255})
      .AddFloat32Array("scores", {0.25f, -1.5f})
      .AddStringArray("none", {});
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_THAT(*g.GetStringArray("tokens"), ElementsAre("a", "", "<s>", "\xc4\xa0the"));
  EXPECT_THAT(*g.GetIntArray("types"), ElementsAre(1, -2, 3));
  EXPECT_THAT(*g.GetIntArray("bytes"), ElementsAre(7, 255));
  EXPECT_THAT(*g.GetFloatArray("scores"), ElementsAre(0.25, -1.5));
  EXPECT_THAT(*g.GetFloatArray("types"), ElementsAre(1.0, -2.0, 3.0));
  EXPECT_TRUE(g.GetStringArray("none")->empty());
  EXPECT_EQ(*g.GetArrayLength("tokens"), 4u);
  GgufType elem;
  EXPECT_EQ(*g.TypeOf("types", &elem), GgufType::kArray);
  EXPECT_EQ(elem, GgufType::kInt32);
}

TEST(GgufFileTest, GettersReportMissingKeysAndWrongTypes) {
  GgufBuilder b;
  b.AddString("name", "x").AddFloat32("f", 1.0f).AddInt32Array("ints", {1});
  b.AddUint64("huge", ~0ull);
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;

  absl::Status missing = g.GetInt("llama.block_count").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("test.gguf"));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("llama.block_count"));

  absl::Status wrong = g.GetInt("name").status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("'name' is string"));
  EXPECT_FALSE(g.GetInt("f").ok());  // a float is not an integer
  EXPECT_FALSE(g.GetBool("name").ok());
  EXPECT_FALSE(g.GetString("ints").ok());
  EXPECT_THAT(std::string(g.GetStringArray("ints").status().message()), HasSubstr("array[int32]"));
  EXPECT_FALSE(g.GetIntArray("name").ok());
  EXPECT_EQ(g.GetInt("huge").status().code(), absl::StatusCode::kOutOfRange);
}

TEST(GgufFileTest, TensorShapesAreOutermostFirst) {
  GgufBuilder b;
  b.AddString("general.architecture", "llama");
  b.AddTensor("token_embd.weight", DType::kQ8_0, {10, 64});
  b.AddTensor("norm.weight", DType::kF32, {64});
  b.AddTensor("cube", DType::kF16, {2, 3, 4});
  b.AddTensor("k4", DType::kQ4_K, {3, 256});
  b.AddTensor("none", DType::kQ8_0, {0, 64});
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  ASSERT_EQ(g.tensors().size(), 5u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.data_offset() % 32, 0u);

  const GgufTensorInfo* embd = g.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_EQ(embd->ndim, 2);
  EXPECT_EQ(embd->shape[0], 10);
  EXPECT_EQ(embd->shape[1], 64);
  EXPECT_EQ(embd->nbytes, 10 * 2 * 34);
  EXPECT_EQ(embd->data, bytes.data() + g.data_offset() + embd->offset);
  const std::vector<uint8_t> expected = PatternBytes("token_embd.weight", 10 * 2 * 34);
  EXPECT_EQ(std::memcmp(embd->data, expected.data(), expected.size()), 0);

  TensorView v = g.FindTensor("cube")->view();
  EXPECT_EQ(v.ndim, 3);
  EXPECT_EQ(v.ShapeString(), "[2, 3, 4]");
  EXPECT_EQ(v.dtype, DType::kF16);
  EXPECT_EQ(v.nbytes(), 2 * 3 * 4 * 2);
  EXPECT_EQ(g.FindTensor("k4")->nbytes, 3 * 144);
  EXPECT_EQ(g.FindTensor("norm.weight")->view().ShapeString(), "[64]");
  EXPECT_EQ(g.FindTensor("nope"), nullptr);
  EXPECT_EQ(g.FindTensor("none")->nbytes, 0);
  for (const GgufTensorInfo& t : g.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
}

TEST(GgufFileTest, HonoursCustomAlignmentAndVersion2) {
  GgufBuilder b;
  b.SetVersion(2).SetAlignment(64);
  b.AddTensor("a", DType::kF32, {3});
  b.AddTensor("b", DType::kF32, {5});
  const std::vector<uint8_t> bytes = b.Build();
  auto f = ParseBytes(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_offset() % 64, 0u);
  EXPECT_EQ((*f)->FindTensor("b")->offset, 64u);
}

TEST(GgufFileTest, OpensFilesFromDisk) {
  const std::string path = testing::TempDir() + "/open_test.gguf";
  GgufBuilder b;
  b.AddString("general.architecture", "qwen2");
  b.AddTensor("x", DType::kBF16, {4, 8});
  ASSERT_TRUE(b.WriteFile(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->name(), path);
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "qwen2");
  EXPECT_EQ((*f)->FindTensor("x")->view().ShapeString(), "[4, 8]");

  auto missing = GgufFile::Open(testing::TempDir() + "/does_not_exist.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(GgufFileTest, RejectsBadHeaders) {
  ExpectRejected({}, {"truncated header"});
  ExpectRejected(GgufBuilder().SetMagic(0x12345678).Build(), {"bad magic"});
  ExpectRejected(GgufBuilder().SetVersion(1).Build(), {"version 1"});
  ExpectRejected(GgufBuilder().SetVersion(0x03000000).Build(), {"big-endian"});
  ExpectRejected(GgufBuilder().SetVersion(7).Build(), {"version 7"});
  ExpectRejected(GgufBuilder().OverrideKvCount(~0ull).Build(), {"metadata count"});
  ExpectRejected(GgufBuilder().OverrideTensorCount(1ull << 60).Build(), {"tensor count"});
  // A count the remaining bytes could hold, but that runs into the end of the file.
  ExpectRejected(GgufBuilder().AddUint32("a", 1).OverrideKvCount(3).Build(), {"truncated"});
}

TEST(GgufFileTest, RejectsEveryTruncation) {
  GgufBuilder b;
  b.AddString("general.architecture", "llama").AddStringArray("toks", {"x", "yy"});
  b.AddTensor("t", DType::kQ4_0, {2, 32});
  const std::vector<uint8_t> bytes = b.Build();
  ASSERT_TRUE(ParseBytes(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    // Copy so that AddressSanitizer sees the true end of the buffer.
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    EXPECT_FALSE(ParseBytes(prefix).ok()) << "prefix of " << n << " bytes";
  }
}

TEST(GgufFileTest, RejectsBadMetadata) {
  ExpectRejected(GgufBuilder().AddRawValue("k", 13, {0}).Build(), {"'k'", "unknown value type"});
  ExpectRejected(GgufBuilder().AddRawValue("k", 8, U64(1ull << 62)).Build(),
                 {"'k'", "string length"});
  std::vector<uint8_t> nested = {9, 0, 0, 0};  // array of arrays
  std::vector<uint8_t> count = U64(1);
  nested.insert(nested.end(), count.begin(), count.end());
  ExpectRejected(GgufBuilder().AddRawValue("k", 9, nested).Build(), {"'k'", "nested arrays"});
  std::vector<uint8_t> huge = {4, 0, 0, 0};  // array of uint32 with 2^61 elements
  std::vector<uint8_t> huge_count = U64(1ull << 61);
  huge.insert(huge.end(), huge_count.begin(), huge_count.end());
  ExpectRejected(GgufBuilder().AddRawValue("k", 9, huge).Build(), {"'k'", "cannot fit"});
  std::vector<uint8_t> strs = {8, 0, 0, 0};  // array of 2^40 strings
  std::vector<uint8_t> strs_count = U64(1ull << 40);
  strs.insert(strs.end(), strs_count.begin(), strs_count.end());
  ExpectRejected(GgufBuilder().AddRawValue("k", 9, strs).Build(), {"'k'", "strings"});
  ExpectRejected(GgufBuilder().AddUint32("dup", 1).AddUint32("dup", 2).Build(),
                 {"duplicate metadata key 'dup'"});
  ExpectRejected(GgufBuilder().AddUint32("general.alignment", 24).Build(), {"alignment"});
  ExpectRejected(GgufBuilder().AddUint32("general.alignment", 0).Build(), {"alignment"});
  ExpectRejected(GgufBuilder().AddString("general.alignment", "32").Build(), {"alignment"});
}

TEST(GgufFileTest, RejectsBadTensorInfos) {
  const std::vector<uint8_t> f32x4(16, 0);
  ExpectRejected(GgufBuilder().AddRawTensor("t", {}, 0, {}).Build(), {"'t'", "0 dimensions"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {1, 1, 1, 1, 1}, 0, {}).Build(),
                 {"'t'", "5 dimensions"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {4}, 13, f32x4).Build(),
                 {"'t'", "q5_k", "not supported"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {4}, 77, f32x4).Build(),
                 {"'t'", "unknown tensor type id 77"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {1ull << 62, 1ull << 62}, 0, {}).Build(),
                 {"'t'", "overflows"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {1ull << 63}, 0, {}).Build(),
                 {"'t'", "too large"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {1ull << 61, 2}, 0, {}).Build(),
                 {"'t'", "byte size overflows"});
  // Empty, but a row of 2^62 halves would overflow any byte arithmetic on the view.
  ExpectRejected(GgufBuilder().AddRawTensor("t", {1ull << 62, 0}, 1, {}).Build(),
                 {"'t'", "overflows"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {48, 2}, 8, std::vector<uint8_t>(102)).Build(),
                 {"'t'", "not a multiple of the q8_0 block size 32"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {8}, 0, f32x4).Build(),
                 {"'t'", "extends past the end"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {4}, 0, f32x4, 1ull << 63).Build(),
                 {"'t'", "extends past the end"});
  ExpectRejected(GgufBuilder().AddRawTensor("t", {4}, 0, f32x4, 8).Build(),
                 {"'t'", "not a multiple of the alignment 32"});
  ExpectRejected(
      GgufBuilder().AddTensor("t", DType::kF32, {4}).AddTensor("t", DType::kF32, {4}).Build(),
      {"duplicate tensor name 't'"});
  // Data section dropped entirely: it would start past the end of the file.
  std::vector<uint8_t> no_data = GgufBuilder().AddRawTensor("t", {4}, 0, f32x4).Build();
  no_data.resize(no_data.size() - 16);
  ExpectRejected(no_data, {"'t'"});
}

// The default model, when the environment provides it.
TEST(GgufFileTest, ReadsTheDefaultModel) {
  const char* path = std::getenv("SHARDSERVE_TEST_GGUF");
  if (path == nullptr)
    FAIL() << "SHARDSERVE_TEST_GGUF must name the default model (tools/test.sh sets it)";
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.block_count"), 30);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count"), 9);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(*g.GetArrayLength("tokenizer.ggml.tokens"), 49152u);
  auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(tokens->size(), 49152u);
  EXPECT_EQ(g.tensors().size(), 272u);
  const GgufTensorInfo* embd = g.FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_EQ(embd->view().ShapeString(), "[49152, 576]");
  EXPECT_EQ(g.FindTensor("blk.0.attn_k.weight")->view().ShapeString(), "[192, 576]");
  EXPECT_EQ(g.FindTensor("blk.29.ffn_down.weight")->view().ShapeString(), "[576, 1536]");
}

}  // namespace
}  // namespace shardserve
