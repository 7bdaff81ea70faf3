#include "worker/sampling_params.h"

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(SamplingParamsTest, DefaultsAreValid) {
  SamplingParams params;
  EXPECT_TRUE(params.Validate().ok());
  EXPECT_FALSE(params.greedy());
  EXPECT_FALSE(params.top_k_enabled());
}

TEST(SamplingParamsTest, GreedyBelowEpsilon) {
  SamplingParams params;
  params.temperature = 0.0f;
  EXPECT_TRUE(params.greedy());
  params.temperature = 1e-6f;
  EXPECT_TRUE(params.greedy());
  params.temperature = 0.01f;
  EXPECT_FALSE(params.greedy());
}

struct Case {
  const char* name;
  std::function<void(SamplingParams&)> mutate;
  // Empty when the mutated params are valid; otherwise a substring of the error message.
  std::string error;
};

TEST(SamplingParamsTest, ValidateTable) {
  const std::vector<Case> cases = {
      {"temp zero", [](SamplingParams& p) { p.temperature = 0.0f; }, ""},
      {"temp large", [](SamplingParams& p) { p.temperature = 100.0f; }, ""},
      {"temp negative", [](SamplingParams& p) { p.temperature = -0.5f; },
       "temperature must be finite and >= 0, got -0.5"},
      {"temp nan", [](SamplingParams& p) { p.temperature = kNaN; }, "temperature must be"},
      {"temp inf", [](SamplingParams& p) { p.temperature = kInf; }, "temperature must be"},
      {"top_k -1", [](SamplingParams& p) { p.top_k = -1; }, ""},
      {"top_k 1", [](SamplingParams& p) { p.top_k = 1; }, ""},
      {"top_k -2", [](SamplingParams& p) { p.top_k = -2; },
       "top_k must be 0 or -1 (disabled) or >= 1, got -2"},
      {"top_p 1", [](SamplingParams& p) { p.top_p = 1.0f; }, ""},
      {"top_p small", [](SamplingParams& p) { p.top_p = 1e-6f; }, ""},
      {"top_p 1.5", [](SamplingParams& p) { p.top_p = 1.5f; }, "top_p must be in (0, 1], got 1.5"},
      {"top_p 0", [](SamplingParams& p) { p.top_p = 0.0f; }, "top_p must be in (0, 1], got 0"},
      {"top_p nan", [](SamplingParams& p) { p.top_p = kNaN; }, "top_p must be in (0, 1], got nan"},
      {"min_p 0", [](SamplingParams& p) { p.min_p = 0.0f; }, ""},
      {"min_p 1", [](SamplingParams& p) { p.min_p = 1.0f; }, ""},
      {"min_p -0.1", [](SamplingParams& p) { p.min_p = -0.1f; }, "min_p must be in [0, 1]"},
      {"min_p nan", [](SamplingParams& p) { p.min_p = kNaN; }, "min_p must be in [0, 1]"},
      {"rep 0.5", [](SamplingParams& p) { p.repetition_penalty = 0.5f; }, ""},
      {"rep 0", [](SamplingParams& p) { p.repetition_penalty = 0.0f; },
       "repetition_penalty must be finite and > 0, got 0"},
      {"rep inf", [](SamplingParams& p) { p.repetition_penalty = kInf; }, "repetition_penalty"},
      {"presence -2", [](SamplingParams& p) { p.presence_penalty = -2.0f; }, ""},
      {"presence 2.5", [](SamplingParams& p) { p.presence_penalty = 2.5f; },
       "presence_penalty must be in [-2, 2], got 2.5"},
      {"frequency nan", [](SamplingParams& p) { p.frequency_penalty = kNaN; },
       "frequency_penalty must be in [-2, 2], got nan"},
      {"max_tokens 0", [](SamplingParams& p) { p.max_tokens = 0; },
       "max_tokens must be >= 1, got 0"},
      {"min_tokens = max", [](SamplingParams& p) { p.min_tokens = p.max_tokens; }, ""},
      {"min_tokens > max", [](SamplingParams& p) { p.min_tokens = p.max_tokens + 1; },
       "min_tokens must be in [0, max_tokens=16], got 17"},
      {"min_tokens < 0", [](SamplingParams& p) { p.min_tokens = -1; }, "min_tokens"},
      {"stop id ok",
       [](SamplingParams& p) {
         p.stop_token_ids = {0, 7};
       },
       ""},
      {"stop id neg",
       [](SamplingParams& p) {
         p.stop_token_ids = {3, -4};
       },
       "stop_token_ids entries must be >= 0, got -4"},
      {"stop ok",
       [](SamplingParams& p) {
         p.stop = std::vector<std::string>(SamplingParams::kMaxStopStrings,
                                           std::string(SamplingParams::kMaxStopStringBytes, 'x'));
       },
       ""},
      {"stop too many",
       [](SamplingParams& p) {
         p.stop = std::vector<std::string>(SamplingParams::kMaxStopStrings + 1, "x");
       },
       "stop must hold at most 16 strings, got 17"},
      {"stop empty",
       [](SamplingParams& p) {
         p.stop = {"a", ""};
       },
       "stop[1] must be 1 to 256 bytes long, got 0"},
      {"stop long",
       [](SamplingParams& p) {
         p.stop = {std::string(SamplingParams::kMaxStopStringBytes + 1, 'x')};
       },
       "stop[0] must be 1 to 256 bytes long, got 257"},
      {"logprobs -1", [](SamplingParams& p) { p.logprobs = -1; }, ""},
      {"logprobs 0", [](SamplingParams& p) { p.logprobs = 0; }, ""},
      {"logprobs 20", [](SamplingParams& p) { p.logprobs = 20; }, ""},
      {"logprobs 21", [](SamplingParams& p) { p.logprobs = 21; },
       "logprobs must be in [0, 20] or -1 (none), got 21"},
      {"seed", [](SamplingParams& p) { p.seed = ~uint64_t{0}; }, ""},
  };
  for (const Case& c : cases) {
    SamplingParams params;
    c.mutate(params);
    const absl::Status status = params.Validate();
    if (c.error.empty()) {
      EXPECT_TRUE(status.ok()) << c.name << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
      EXPECT_THAT(std::string(status.message()), HasSubstr(c.error)) << c.name;
    }
  }
}

}  // namespace
}  // namespace shardserve
