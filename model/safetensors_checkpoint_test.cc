#include "model/safetensors_checkpoint.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/safetensors_builder.h"

namespace shardserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A fresh empty directory under the test's temporary directory.
std::string MakeDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteText(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteBytesToFile(path, std::vector<uint8_t>(text.begin(), text.end())).ok());
}

TEST(SafetensorsCheckpointTest, OpensSingleFileDirectory) {
  const std::string dir = MakeDir("single");
  ASSERT_TRUE(SafetensorsBuilder()
                  .AddTensor("model.norm.weight", "F32", {8})
                  .AddTensor("lm_head.weight", "BF16", {4, 8})
                  .WriteFile(dir + "/model.safetensors")
                  .ok());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->num_shards(), 1u);
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("lm_head.weight", "model.norm.weight"));
  EXPECT_EQ((*ckpt)->Get("lm_head.weight")->ShapeString(), "[4, 8]");
  EXPECT_FALSE((*ckpt)->Has("model.embed_tokens.weight"));
  absl::Status missing = (*ckpt)->Get("model.embed_tokens.weight").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr(dir));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("model.embed_tokens.weight"));

  // The file itself can be opened too.
  auto file = SafetensorsCheckpoint::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Has("model.norm.weight"));
}

TEST(SafetensorsCheckpointTest, OpensShardedCheckpointOncePerShard) {
  const std::string dir = MakeDir("sharded");
  ASSERT_TRUE(SafetensorsBuilder()
                  .AddTensor("a", "F32", {2})
                  .AddTensor("b", "F16", {3, 2})
                  .WriteFile(dir + "/model-00001-of-00002.safetensors")
                  .ok());
  ASSERT_TRUE(SafetensorsBuilder()
                  .AddTensor("c", "BF16", {4})
                  .AddTensor("unlisted", "F32", {1})
                  .WriteFile(dir + "/model-00002-of-00002.safetensors")
                  .ok());
  WriteText(dir + "/model.safetensors.index.json",
            R"({"metadata": {"total_size": 24}, "weight_map": {
                 "a": "model-00001-of-00002.safetensors",
                 "b": "model-00001-of-00002.safetensors",
                 "c": "model-00002-of-00002.safetensors"}})");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->num_shards(), 2u);
  EXPECT_THAT((*ckpt)->TensorNames(), ElementsAre("a", "b", "c"));
  EXPECT_EQ((*ckpt)->Get("b")->ShapeString(), "[3, 2]");
  EXPECT_EQ((*ckpt)->Get("c")->dtype, DType::kBF16);
  EXPECT_THAT((*ckpt)->shard(1).name(), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(SafetensorsCheckpointTest, RejectsBadIndexes) {
  const std::string dir = MakeDir("bad_index");
  ASSERT_TRUE(
      SafetensorsBuilder().AddTensor("a", "F32", {2}).WriteFile(dir + "/shard.safetensors").ok());
  const std::string index = dir + "/model.safetensors.index.json";
  auto expect_error = [&](const std::string& text, const std::string& part) {
    WriteText(index, text);
    auto ckpt = SafetensorsCheckpoint::Open(dir);
    ASSERT_FALSE(ckpt.ok()) << text;
    EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(part)) << text;
  };
  expect_error("{", "not a JSON object");
  expect_error(R"({"metadata": {}})", "weight_map");
  expect_error(R"({"weight_map": {"a": 3}})", "'a' is not a file name");
  expect_error(R"({"weight_map": {"a": "../shard.safetensors"}})", "not a file in");
  expect_error(R"({"weight_map": {"zz": "shard.safetensors"}})",
               "maps 'zz' to shard.safetensors, which has no such tensor");
  expect_error(R"({"weight_map": {"a": "gone.safetensors"}})", "gone.safetensors");
}

TEST(SafetensorsCheckpointTest, ReportsMissingCheckpoint) {
  const std::string dir = MakeDir("empty");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr("model.safetensors"));
  EXPECT_EQ(SafetensorsCheckpoint::Open(dir + "/nothing").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace shardserve
