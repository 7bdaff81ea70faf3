#include "worker/stop_checker.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

constexpr int32_t kEos = 2;
constexpr int32_t kWord = 10;  // any ordinary token

// One generated token and what the checker must answer.
struct Step {
  int32_t token_id;
  std::string delta;
  std::string want_text;
  FinishReason want_finish = FinishReason::kNone;
};

struct Scenario {
  const char* name;
  SamplingParams params;
  std::vector<Step> steps;
  std::string want_output;
};

SamplingParams Params(std::vector<std::string> stop, int max_tokens = 100, bool include = false) {
  SamplingParams p;
  p.stop = std::move(stop);
  p.max_tokens = max_tokens;
  p.include_stop_str_in_output = include;
  return p;
}

void RunScenario(const Scenario& s) {
  ASSERT_TRUE(s.params.Validate().ok()) << s.name;
  StopChecker checker(s.params, {kEos});
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const Step& step = s.steps[i];
    ASSERT_FALSE(checker.finished()) << s.name << " step " << i;
    const StopChecker::Result r = checker.Append(step.token_id, step.delta);
    EXPECT_EQ(r.text, step.want_text) << s.name << " step " << i;
    EXPECT_EQ(r.finish_reason, step.want_finish) << s.name << " step " << i;
  }
  EXPECT_TRUE(checker.finished()) << s.name;
  EXPECT_EQ(checker.output_text(), s.want_output) << s.name;
  EXPECT_EQ(checker.num_output_tokens(), static_cast<int>(s.steps.size())) << s.name;
}

constexpr FinishReason kStop = FinishReason::kStop;
constexpr FinishReason kLength = FinishReason::kLength;

TEST(StopCheckerTest, Table) {
  SamplingParams with_stop_ids = Params({});
  with_stop_ids.stop_token_ids = {7};
  SamplingParams stop_ids_included = with_stop_ids;
  stop_ids_included.include_stop_str_in_output = true;
  SamplingParams ignore_eos = Params({}, 3);
  ignore_eos.ignore_eos = true;
  SamplingParams min_tokens = Params({"x"}, 10);
  min_tokens.min_tokens = 2;
  min_tokens.stop_token_ids = {7};

  const std::vector<Scenario> scenarios = {
      {"max_tokens",
       Params({}, 3),
       {{kWord, "a", "a"}, {kWord, "b", "b"}, {kWord, "c", "c", kLength}},
       "abc"},
      {"eos drops its text", Params({}), {{kWord, "Hi", "Hi"}, {kEos, "</s>", "", kStop}}, "Hi"},
      {"eos on the last allowed token is stop",
       Params({}, 2),
       {{kWord, "Hi", "Hi"}, {kEos, "</s>", "", kStop}},
       "Hi"},
      {"ignore_eos",
       ignore_eos,
       {{kEos, "<e>", "<e>"}, {kWord, "a", "a"}, {kEos, "<e>", "<e>", kLength}},
       "<e>a<e>"},
      {"stop token id", with_stop_ids, {{kWord, "a", "a"}, {7, "<|im_end|>", "", kStop}}, "a"},
      {"stop token id included",
       stop_ids_included,
       {{kWord, "a", "a"}, {7, "<|im_end|>", "<|im_end|>", kStop}},
       "a<|im_end|>"},
      {"stop string inside one token",
       Params({"END"}),
       {{kWord, "ab", "ab"}, {kWord, "cENDd", "c", kStop}},
       "abc"},
      {"stop string across three tokens is never streamed",
       Params({"STOP"}),
       {{kWord, "hi S", "hi "}, {kWord, "T", ""}, {kWord, "O", ""}, {kWord, "P!", "", kStop}},
       "hi "},
      {"included stop string",
       Params({"STOP"}, 100, true),
       {{kWord, "hi S", "hi "}, {kWord, "TOP and more", "STOP", kStop}},
       "hi STOP"},
      {"held prefix released when it diverges",
       Params({"STOP"}, 5),
       {{kWord, "a ST", "a "},
        {kWord, "x", "STx"},
        {kWord, "S", ""},
        {kWord, "S", "S"},
        {kWord, "!", "S!", kLength}},
       "a STxSS!"},
      {"overlapping prefix",
       Params({"aab"}),
       {{kWord, "a", ""}, {kWord, "a", ""}, {kWord, "a", "a"}, {kWord, "b", "", kStop}},
       "a"},
      {"earliest stop string wins",
       Params({"cd", "bc"}),
       {{kWord, "a", "a"}, {kWord, "bcd", "", kStop}},
       "a"},
      {"held text flushed at length",
       Params({"STOP"}, 2),
       {{kWord, "x", "x"}, {kWord, "ST", "ST", kLength}},
       "xST"},
      {"stop string beats length",
       Params({"!"}, 2),
       {{kWord, "x", "x"}, {kWord, "y!", "y", kStop}},
       "xy"},
      {"stop string at the start", Params({"Q"}), {{kWord, "Qrest", "", kStop}}, ""},
      {"utf-8 stop string",
       Params({"。"}),
       {{kWord, "日本", "日本"}, {kWord, "", ""}, {kWord, "語。終", "語", kStop}},
       "日本語"},
      {"min_tokens: nothing stops early",
       min_tokens,
       {{7, "<7>", "<7>"}, {kEos, "x", "x"}, {kWord, "x", "", kStop}},
       "<7>x"},
  };
  for (const Scenario& s : scenarios) RunScenario(s);
}

TEST(StopCheckerTest, ReportsStopReason) {
  SamplingParams params = Params({"ab", "zz"});
  params.stop_token_ids = {7, 8};
  {
    StopChecker checker(params, {kEos});
    const StopChecker::Result r = checker.Append(8, "");
    EXPECT_EQ(r.finish_reason, kStop);
    EXPECT_EQ(r.stop_token_id, 8);
    EXPECT_FALSE(r.stop_string.has_value());
  }
  {
    StopChecker checker(params, {kEos});
    EXPECT_EQ(checker.Append(kWord, "z").finish_reason, FinishReason::kNone);
    const StopChecker::Result r = checker.Append(kWord, "z");
    EXPECT_EQ(r.finish_reason, kStop);
    EXPECT_EQ(r.stop_string, "zz");
    EXPECT_FALSE(r.stop_token_id.has_value());
    EXPECT_EQ(checker.finish_reason(), kStop);
  }
  {
    StopChecker checker(params, {kEos, 3});
    const StopChecker::Result r = checker.Append(3, "");
    EXPECT_EQ(r.finish_reason, kStop);  // the second EOS id counts too
    EXPECT_FALSE(r.stop_token_id.has_value());
    EXPECT_FALSE(r.stop_string.has_value());
  }
}

TEST(StopCheckerTest, FinishReasonNames) {
  EXPECT_EQ(FinishReasonName(FinishReason::kNone), "");
  EXPECT_EQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonName(FinishReason::kAbort), "abort");
  EXPECT_EQ(FinishReasonName(FinishReason::kError), "error");
}

}  // namespace
}  // namespace shardserve
