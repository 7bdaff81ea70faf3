// Expected pieces come from Hugging Face `tokenizers` 0.23 (`pre_tokenize_str` of the same
// pre-tokenizer), so these pin down the split semantics, not just our reading of them.
#include "model/pre_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shardserve {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Split(const PreTokenizerConfig& config, absl::string_view text) {
  auto pre = PreTokenizer::Create(config);
  EXPECT_TRUE(pre.ok()) << pre.status();
  std::vector<absl::string_view> pieces;
  (*pre)->Split(text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

PreTokenizerConfig OneSplit(std::string pattern, SplitBehavior behavior, bool invert = false) {
  PreTokenizerConfig config;
  config.splits.push_back({std::move(pattern), behavior, invert});
  return config;
}

TEST(PreTokenizerTest, Gpt2Pattern) {
  EXPECT_THAT(Split(OneSplit(kGpt2Pattern, SplitBehavior::kIsolated),
                    "Hello there       dear\nfriend's 123!"),
              ElementsAre("Hello", " there", "      ", " dear", "\n", "friend", "'s", " 123", "!"));
}

TEST(PreTokenizerTest, Behaviors) {
  const std::string text = "a1b22c  333 d-e--f";
  const std::string digit_or_dash = R"(\d|-)";
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kRemoved), text),
              ElementsAre("a", "b", "c  ", " d", "e", "f"));
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kRemoved, true), text),
              ElementsAre("1", "2", "2", "3", "3", "3", "-", "-", "-"));
  EXPECT_THAT(
      Split(OneSplit(digit_or_dash, SplitBehavior::kIsolated), text),
      ElementsAre("a", "1", "b", "2", "2", "c  ", "3", "3", "3", " d", "-", "e", "-", "-", "f"));
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kMergedWithPrevious), text),
              ElementsAre("a1", "b2", "2", "c  3", "3", "3", " d-", "e-", "-", "f"));
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kMergedWithPrevious, true), text),
              ElementsAre("a", "1b", "2", "2c  ", "3", "3", "3 d", "-e", "-", "-f"));
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kMergedWithNext), text),
              ElementsAre("a", "1b", "2", "2c  ", "3", "3", "3 d", "-e", "-", "-f"));
  EXPECT_THAT(Split(OneSplit(digit_or_dash, SplitBehavior::kContiguous), text),
              ElementsAre("a", "1", "b", "22", "c  ", "333", " d", "-", "e", "--", "f"));
}

TEST(PreTokenizerTest, EmptyMatchesAreSkipped) {
  EXPECT_THAT(Split(OneSplit("x*", SplitBehavior::kIsolated), "axxbc"),
              ElementsAre("a", "xx", "b", "c"));
}

TEST(PreTokenizerTest, SequenceSplitsEachPieceOnItsOwn) {
  // SmolLM2: digits first, then GPT-2's pattern on each piece. " 123" keeps its space apart.
  auto config = PreTokenizer::ConfigForName("smollm");
  ASSERT_TRUE(config.ok());
  EXPECT_THAT(Split(*config, "Hello world! 123"),
              ElementsAre("Hello", " world", "!", " ", "1", "2", "3"));
}

TEST(PreTokenizerTest, Llama3GroupsDigitsByThree) {
  auto config = PreTokenizer::ConfigForName("llama-bpe");
  ASSERT_TRUE(config.ok());
  EXPECT_THAT(Split(*config, "1234567 I'M ok\n\n  x"),
              ElementsAre("123", "456", "7", " I", "'M", " ok", "\n\n", " ", " x"));
}

TEST(PreTokenizerTest, Names) {
  for (const char* name : {"", "default", "gpt-2", "smollm", "llama-bpe", "llama3", "qwen2",
                           "tekken", "starcoder", "deepseek-r1-qwen"}) {
    auto config = PreTokenizer::ConfigForName(name);
    ASSERT_TRUE(config.ok()) << name;
    EXPECT_TRUE(PreTokenizer::Create(*config).ok()) << name;
  }
  EXPECT_FALSE(PreTokenizer::ConfigForName("bloom").ok());
}

TEST(PreTokenizerTest, BadPattern) {
  auto pre = PreTokenizer::Create(OneSplit("(", SplitBehavior::kIsolated));
  EXPECT_EQ(pre.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardserve
