#include "coordinator/response_builder.h"

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/testing/test_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

std::unique_ptr<Tokenizer> LoadTokenizer() {
  const std::string path = TestRunfile("tests/tokenizer/smollm2_tokenizer.json");
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromHfJson(buffer.str(), "smollm2_tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

v1::GenerateOnGroupResponse Token(int32_t id, std::string finish_reason = "") {
  v1::GenerateOnGroupResponse r;
  r.set_token_id(id);
  r.set_finish_reason(std::move(finish_reason));
  return r;
}

class ResponseBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = LoadTokenizer();
    ASSERT_NE(tokenizer_, nullptr);
  }
  std::vector<int32_t> Encode(const std::string& text) {
    return tokenizer_->Encode(text, /*add_special_tokens=*/false);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(ResponseBuilderTest, TokensWhoseTextIsHeldBackRideWithTheNextResponse) {
  SamplingParams params;
  params.max_tokens = 100;
  params.stop = {" STOP NOW"};
  const std::vector<int32_t> tokens = Encode(" go STOP later");
  ResponseBuilder builder(*tokenizer_, params, {2}, "r", 4);
  std::vector<v1::GenerateResponse> sent;
  for (int32_t id : tokens) {
    absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder.Add(Token(id));
    ASSERT_TRUE(out.ok()) << out.status();
    if (out->has_value()) sent.push_back(**out);
  }
  ASSERT_FALSE(builder.finished());
  sent.push_back(builder.Finish(FinishReason::kAbort));
  std::string text;
  std::vector<int32_t> ids;
  for (const v1::GenerateResponse& r : sent) {
    text += r.text();
    ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
    // Every response that carries tokens also carries text: " STOP" waited for " later".
    if (r.token_ids_size() > 0 && r.finish_reason().empty()) {
      EXPECT_FALSE(r.text().empty());
    }
  }
  EXPECT_EQ(ids, tokens);
  EXPECT_EQ(text, " go STOP later");
  // " STOP" waits for " later": those tokens share one response.
  EXPECT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent.back().finish_reason(), "abort");
  EXPECT_EQ(sent.back().usage().completion_tokens(), static_cast<int>(tokens.size()));
  EXPECT_EQ(sent.back().usage().prompt_tokens(), 4);
}

TEST_F(ResponseBuilderTest, StopStringBeforeTheGroupFinishesAsksForCancellation) {
  SamplingParams params;
  params.max_tokens = 100;
  params.stop = {"b"};
  params.include_stop_str_in_output = true;
  ResponseBuilder builder(*tokenizer_, params, {2}, "r", 1);
  std::string text;
  for (int32_t id : Encode(" a b c")) {
    if (builder.finished()) break;
    absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder.Add(Token(id));
    ASSERT_TRUE(out.ok());
    if (out->has_value()) text += (*out)->text();
  }
  EXPECT_TRUE(builder.finished());
  EXPECT_TRUE(builder.finished_before_group());
  EXPECT_EQ(builder.finish_reason(), FinishReason::kStop);
  EXPECT_EQ(text, " a b");
}

TEST_F(ResponseBuilderTest, GroupFinishReleasesHeldBackTextAndIncompleteCharacters) {
  SamplingParams params;
  params.max_tokens = 100;
  params.stop = {"\xF0\x9F\x99\x82!"};  // a character then "!": its first bytes are held back
  const std::vector<int32_t> tokens = Encode(" x \xF0\x9F\x99\x82");
  ResponseBuilder builder(*tokenizer_, params, {2}, "r", 1);
  std::string text;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const bool last = i + 1 == tokens.size();
    absl::StatusOr<std::optional<v1::GenerateResponse>> out =
        builder.Add(Token(tokens[i], last ? "length" : ""));
    ASSERT_TRUE(out.ok());
    if (out->has_value()) text += (*out)->text();
  }
  ASSERT_TRUE(builder.finished());
  EXPECT_FALSE(builder.finished_before_group());
  EXPECT_EQ(builder.finish_reason(), FinishReason::kLength);
  EXPECT_EQ(text, tokenizer_->Decode(tokens, true).value());
}

TEST_F(ResponseBuilderTest, StopTokenIdIsTheStopReason) {
  SamplingParams params;
  params.max_tokens = 100;
  const std::vector<int32_t> tokens = Encode(" a b");
  params.stop_token_ids = {tokens.back()};
  ResponseBuilder builder(*tokenizer_, params, {2}, "r", 1);
  absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder.Add(Token(tokens[0]));
  ASSERT_TRUE(out.ok());
  out = builder.Add(Token(tokens[1], "stop"));
  ASSERT_TRUE(out.ok() && out->has_value());
  EXPECT_EQ((*out)->finish_reason(), "stop");
  EXPECT_EQ((*out)->stop_reason(), std::to_string(tokens.back()));
  EXPECT_EQ((*out)->text(), "");  // the stop token's text is not output
}

TEST_F(ResponseBuilderTest, UnknownTokenIdIsAnInternalError) {
  SamplingParams params;
  ResponseBuilder builder(*tokenizer_, params, {2}, "r", 1);
  absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder.Add(Token(1 << 30));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace shardserve
