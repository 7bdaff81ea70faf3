#include "model/model_fingerprint.h"

#include <string>

#include "common/testing/test_env.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

std::string Fixture(const std::string& relative) {
  return TestRunfile("tests/fixtures/tiny/" + relative);
}

// FIPS 180-2 test vectors.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ModelFingerprintTest, GgufIsStableAndDistinguishesModels) {
  absl::StatusOr<std::string> a = ModelFingerprint(Fixture("qwen2moe/model.gguf"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->size(), 64u);
  absl::StatusOr<std::string> again = ModelFingerprint(Fixture("qwen2moe/model.gguf"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*a, *again);
  absl::StatusOr<std::string> b = ModelFingerprint(Fixture("olmoe/model.gguf"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(*a, *b);
}

TEST(ModelFingerprintTest, HfDirectoryDiffersFromGgufAndFromOtherModels) {
  absl::StatusOr<std::string> hf = ModelFingerprint(Fixture("qwen2moe"));
  ASSERT_TRUE(hf.ok()) << hf.status();
  absl::StatusOr<std::string> gguf = ModelFingerprint(Fixture("qwen2moe/model.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_NE(*hf, *gguf);
  absl::StatusOr<std::string> other = ModelFingerprint(Fixture("olmoe"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(*hf, *other);
}

TEST(ModelFingerprintTest, RefusesMissingAndForeignFiles) {
  EXPECT_EQ(ModelFingerprint(Fixture("does_not_exist.gguf")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ModelFingerprint(Fixture("qwen2moe/config.json")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardserve
