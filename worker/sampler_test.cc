#include "worker/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int32_t kEos = 2;

std::vector<float> RandomLogits(int vocab, float scale, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = normal(gen);
  return logits;
}

std::vector<double> ExactSoftmax(const std::vector<double>& logits) {
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double z = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) z += p[i] = std::exp(logits[i] - m);
  for (double& x : p) x /= z;
  return p;
}

// Draws `num_draws` tokens and returns the Pearson chi-square statistic against `probs`
// (token id -> expected probability; tokens outside it must never be drawn).
double ChiSquare(const Sampler& sampler, const std::vector<float>& logits,
                 const SamplingParams& params, const std::vector<TokenProb>& probs, int num_draws,
                 uint64_t seed) {
  Rng rng(seed);
  SequenceHistory history;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < num_draws; ++i) {
    std::vector<float> scratch = logits;
    ++counts[sampler.Sample(absl::MakeSpan(scratch), params, history, rng).token_id];
  }
  double chi2 = 0.0;
  int seen = 0;
  for (const TokenProb& tp : probs) {
    const double expected = tp.prob * num_draws;
    const double diff = counts[tp.token_id] - expected;
    chi2 += diff * diff / expected;
    seen += counts[tp.token_id];
  }
  EXPECT_EQ(seen, num_draws) << "drew a token outside the distribution";
  return chi2;
}

TEST(SamplerTest, GreedyTakesArgmaxLowestIdOnTies) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.temperature = 0.0f;
  params.top_k = 1;  // truncation is ignored when greedy
  Rng rng(1);
  SequenceHistory history;
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(sampler.Sample(absl::MakeSpan(logits), params, history, rng).token_id, 1);
  std::vector<float> all_neg_inf = {kNegInf, kNegInf, kNegInf};
  EXPECT_EQ(sampler.Sample(absl::MakeSpan(all_neg_inf), params, history, rng).token_id, 0);
}

// The greedy path against one plain scan with a strict comparison, on vocabularies of every
// length around the vectorised block size, with ties, NaNs and signed zeros placed anywhere.
TEST(SamplerTest, GreedyMatchesAStrictScan) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.temperature = 0.0f;
  Rng rng(1);
  SequenceHistory history;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::mt19937 gen(7);
  for (int vocab : {1, 2, 7, 8, 9, 15, 16, 17, 33, 1000, 49152}) {
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<float> logits(vocab);
      std::uniform_int_distribution<int> small(-3, 3);
      for (float& l : logits) l = static_cast<float>(small(gen));  // many ties
      std::uniform_int_distribution<int> at(0, vocab - 1);
      for (int e = 0; e < 3; ++e) {
        const float special[] = {nan, -0.0f, 0.0f, kNegInf, 3.0f};
        logits[at(gen)] = special[(trial + e) % 5];
      }
      if (trial % 7 == 0) logits[0] = nan;
      if (trial % 11 == 0) std::fill(logits.begin(), logits.end(), kNegInf);
      int32_t want = 0;
      for (int i = 1; i < vocab; ++i) {
        if (logits[i] > logits[want]) want = i;
      }
      std::vector<float> scratch = logits;
      EXPECT_EQ(sampler.Sample(absl::MakeSpan(scratch), params, history, rng).token_id, want)
          << "vocab " << vocab << " trial " << trial;
    }
  }
}

TEST(SamplerTest, GreedyUsesPenalisedLogits) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetition_penalty = 2.0f;
  Rng rng(1);
  SequenceHistory history(std::vector<int32_t>{1});
  std::vector<float> logits = {0.0f, 3.0f, -1.0f, 2.0f};  // 3 / 2 = 1.5 < 2
  EXPECT_EQ(sampler.Sample(absl::MakeSpan(logits), params, history, rng).token_id, 3);
}

TEST(SamplerTest, PenaltiesMatchHandComputedLogits) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  SequenceHistory history(std::vector<int32_t>{0, 1, 0});
  for (int32_t id : {3, 3, 4}) history.AppendOutput(id);

  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  // id 0, 1: prompt only -> repetition penalty only.
  // id 3: 3 / 2 - 0.5 * 2 - 0.25; id 4: -2 * 2 - 0.5 * 1 - 0.25; ids 2, 5 untouched.
  const std::vector<double> expected_logits = {1.0, -2.0, 0.5, 0.25, -4.75, 1.0};
  const std::vector<double> expected = ExactSoftmax(expected_logits);
  const std::vector<TokenProb> dist = sampler.Distribution(absl::MakeSpan(logits), params, history);
  ASSERT_EQ(dist.size(), expected.size());
  // Ranking order: 0 and 5 tie at 1.0, lower id first.
  const std::vector<int32_t> order = {0, 5, 2, 3, 1, 4};
  for (size_t i = 0; i < dist.size(); ++i) {
    EXPECT_EQ(dist[i].token_id, order[i]);
    EXPECT_NEAR(dist[i].prob, expected[order[i]], 1e-6) << "token " << order[i];
  }
}

TEST(SamplerTest, NegativePenaltiesRewardRepetition) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.temperature = 0.0f;
  params.frequency_penalty = -2.0f;
  SequenceHistory history;
  history.AppendOutput(0);
  history.AppendOutput(0);
  Rng rng(1);
  std::vector<float> logits = {1.0f, 4.0f};  // 1 + 2 * 2 = 5 > 4
  EXPECT_EQ(sampler.Sample(absl::MakeSpan(logits), params, history, rng).token_id, 0);
}

TEST(SamplerTest, TemperatureDrawsFollowSoftmax) {
  Sampler sampler({kEos});
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 1.5f, -1.0f, 0.0f, 0.7f};
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    std::vector<double> scaled(logits.begin(), logits.end());
    for (double& l : scaled) l /= temperature;
    const std::vector<double> exact = ExactSoftmax(scaled);
    std::vector<TokenProb> probs;
    for (size_t i = 0; i < exact.size(); ++i) probs.push_back({static_cast<int32_t>(i), exact[i]});
    // df = 7; P(chi2 > 29.9) = 1e-4. The seed is fixed, so this never flakes.
    EXPECT_LT(ChiSquare(sampler, logits, params, probs, 40000, 7), 29.9) << temperature;
  }
}

TEST(SamplerTest, TruncatedDrawsFollowTheirDistribution) {
  Sampler sampler({kEos});
  const std::vector<float> logits = RandomLogits(64, 1.5f, 11);
  SamplingParams params;
  params.temperature = 0.8f;
  params.top_k = 20;
  params.top_p = 0.8f;
  params.min_p = 0.05f;
  std::vector<float> scratch = logits;
  const std::vector<TokenProb> dist =
      sampler.Distribution(absl::MakeSpan(scratch), params, SequenceHistory());
  ASSERT_GE(dist.size(), 3u);
  ASSERT_LT(dist.size(), 20u);
  // df <= 19; P(chi2 > 50) < 1e-4.
  EXPECT_LT(ChiSquare(sampler, logits, params, dist, 40000, 3), 50.0);
}

// Brute-force reference for the kept set, in double precision, straight from the definitions.
// Sets *ambiguous when a token sits within float rounding of a top-p or min-p boundary.
std::vector<TokenProb> ReferenceDistribution(const std::vector<float>& logits,
                                             const SamplingParams& params, bool* ambiguous) {
  const int vocab = logits.size();
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> scaled(vocab);
  for (int i = 0; i < vocab; ++i) scaled[i] = logits[order[i]] / double{params.temperature};
  int keep = vocab;
  if (params.top_k > 0) keep = std::min(keep, params.top_k);
  std::vector<double> p = ExactSoftmax(std::vector<double>(scaled.begin(), scaled.begin() + keep));
  *ambiguous = false;
  if (params.top_p < 1.0f) {
    double before = 0.0;
    int cut = keep;
    for (int i = 0; i < keep; ++i) {
      if (std::abs(before - params.top_p) < 2e-6) *ambiguous = true;
      if (before >= params.top_p) {
        cut = i;
        break;
      }
      before += p[i];
    }
    keep = cut;
  }
  std::vector<TokenProb> out;
  for (int i = 0; i < keep; ++i) {
    const double ratio = p[i] / p[0];
    if (ratio != 1.0 && std::abs(ratio - params.min_p) < 2e-6 * params.min_p) *ambiguous = true;
    if (ratio >= params.min_p) out.push_back({order[i], p[i]});
  }
  double mass = 0.0;
  for (const TokenProb& tp : out) mass += tp.prob;
  for (TokenProb& tp : out) tp.prob /= mass;
  return out;
}

TEST(SamplerTest, TruncationKeepsExactlyTheReferenceSet) {
  Sampler sampler({kEos});
  int checked = 0;
  int ambiguous_cases = 0;
  uint64_t seed = 100;
  for (int vocab : {1, 7, 1000, 5000}) {
    for (int top_k : {0, -1, 1, 5, 50, 200, 999, 1000, 2000}) {
      for (float top_p : {1.0f, 0.05f, 0.5f, 0.9f, 0.99f}) {
        for (float min_p : {0.0f, 0.02f, 0.3f, 1.0f}) {
          for (float temperature : {0.3f, 1.0f, 2.5f}) {
            SamplingParams params;
            params.top_k = top_k;
            params.top_p = top_p;
            params.min_p = min_p;
            params.temperature = temperature;
            std::vector<float> logits = RandomLogits(vocab, 3.0f, ++seed);
            // Exact ties exercise the lower-id-first rule.
            if (vocab > 10) logits[vocab - 1] = logits[3];
            bool ambiguous = false;
            const std::vector<TokenProb> want = ReferenceDistribution(logits, params, &ambiguous);
            if (ambiguous) {
              ++ambiguous_cases;
              continue;
            }
            std::vector<float> scratch = logits;
            const std::vector<TokenProb> got =
                sampler.Distribution(absl::MakeSpan(scratch), params, SequenceHistory());
            ASSERT_EQ(got.size(), want.size())
                << "vocab=" << vocab << " k=" << top_k << " p=" << top_p << " min_p=" << min_p
                << " T=" << temperature;
            for (size_t i = 0; i < got.size(); ++i) {
              ASSERT_EQ(got[i].token_id, want[i].token_id) << i;
              ASSERT_NEAR(got[i].prob, want[i].prob, 1e-5) << i;
            }
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 400);
  EXPECT_LT(ambiguous_cases, 10);
}

TEST(SamplerTest, TopKTieAtTheBoundaryKeepsLowerIds) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.top_k = 2;
  std::vector<float> logits = {1.0f, 5.0f, 1.0f, 1.0f, 0.0f};
  const std::vector<TokenProb> dist =
      sampler.Distribution(absl::MakeSpan(logits), params, SequenceHistory());
  ASSERT_EQ(dist.size(), 2u);
  EXPECT_EQ(dist[0].token_id, 1);
  EXPECT_EQ(dist[1].token_id, 0);
}

TEST(SamplerTest, TopPCountsOnlyMassStrictlyBefore) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.top_p = 0.5f;
  // Ten equally likely tokens: ids 0..4 hold exactly half the mass, so id 5 (mass before it
  // = 0.5) is dropped and ties are broken by id.
  std::vector<float> logits(10, 1.25f);
  const std::vector<TokenProb> dist =
      sampler.Distribution(absl::MakeSpan(logits), params, SequenceHistory());
  ASSERT_EQ(dist.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(dist[i].token_id, i);
    EXPECT_DOUBLE_EQ(dist[i].prob, 0.2);
  }
}

TEST(SamplerTest, LargeVocabularyMatchesReference) {
  Sampler sampler({kEos});
  const std::vector<float> logits = RandomLogits(152064, 2.0f, 5);
  for (auto [top_k, top_p, min_p] : {std::tuple{50, 1.0f, 0.0f}, std::tuple{0, 0.8f, 0.0f},
                                     std::tuple{0, 1.0f, 0.001f}, std::tuple{40, 0.95f, 0.05f}}) {
    SamplingParams params;
    params.temperature = 0.7f;
    params.top_k = top_k;
    params.top_p = top_p;
    params.min_p = min_p;
    bool ambiguous = false;
    const std::vector<TokenProb> want = ReferenceDistribution(logits, params, &ambiguous);
    ASSERT_FALSE(ambiguous) << top_k << " " << top_p << " " << min_p;
    std::vector<float> scratch = logits;
    const std::vector<TokenProb> got =
        sampler.Distribution(absl::MakeSpan(scratch), params, SequenceHistory());
    ASSERT_EQ(got.size(), want.size()) << top_k << " " << top_p << " " << min_p;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i].token_id, want[i].token_id);
  }
}

TEST(SamplerTest, LogprobsAreRawLogSoftmax) {
  Sampler sampler({kEos});
  const std::vector<float> logits = RandomLogits(5000, 2.0f, 21);
  std::vector<double> raw(logits.begin(), logits.end());
  const std::vector<double> p = ExactSoftmax(raw);

  SamplingParams params;
  params.logprobs = 5;
  params.temperature = 0.5f;
  params.repetition_penalty = 1.8f;
  params.presence_penalty = 1.0f;
  SequenceHistory history(std::vector<int32_t>{1, 2, 3});
  Rng rng(3);
  for (int step = 0; step < 20; ++step) {
    std::vector<float> scratch = logits;
    const SampleResult r = sampler.Sample(absl::MakeSpan(scratch), params, history, rng);
    EXPECT_NEAR(r.logprob, std::log(p[r.token_id]), 1e-4) << r.token_id;
    history.AppendOutput(r.token_id);  // penalised tokens must still report raw logprobs

    std::vector<int32_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    ASSERT_EQ(r.top_logprobs.size(), 5u);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(r.top_logprobs[i].token_id, order[i]);
      EXPECT_NEAR(r.top_logprobs[i].logprob, std::log(p[order[i]]), 1e-4);
    }
  }
}

TEST(SamplerTest, LogprobsZeroAndTinyVocab) {
  Sampler sampler({kEos});
  SequenceHistory history;
  Rng rng(3);
  SamplingParams params;
  params.temperature = 0.0f;
  params.logprobs = 0;
  std::vector<float> logits = {0.0f, std::log(3.0f)};
  SampleResult r = sampler.Sample(absl::MakeSpan(logits), params, history, rng);
  EXPECT_EQ(r.token_id, 1);
  EXPECT_NEAR(r.logprob, std::log(0.75), 1e-6);
  EXPECT_TRUE(r.top_logprobs.empty());

  params.logprobs = 20;  // more than the vocabulary
  logits = {0.0f, std::log(3.0f)};
  r = sampler.Sample(absl::MakeSpan(logits), params, history, rng);
  ASSERT_EQ(r.top_logprobs.size(), 2u);
  EXPECT_EQ(r.top_logprobs[0].token_id, 1);
  EXPECT_NEAR(r.top_logprobs[1].logprob, std::log(0.25), 1e-6);

  params.logprobs = -1;
  logits = {0.0f, std::log(3.0f)};
  r = sampler.Sample(absl::MakeSpan(logits), params, history, rng);
  EXPECT_EQ(r.logprob, 0.0f);
  EXPECT_TRUE(r.top_logprobs.empty());
}

std::vector<int32_t> DrawMany(const Sampler& sampler, const SamplingParams& params, int n) {
  const std::vector<float> logits = RandomLogits(1000, 1.0f, 8);
  Rng rng = Sampler::MakeRng(params);
  SequenceHistory history;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> scratch = logits;
    out.push_back(sampler.Sample(absl::MakeSpan(scratch), params, history, rng).token_id);
  }
  return out;
}

TEST(SamplerTest, SeededSamplingIsDeterministic) {
  Sampler sampler({kEos});
  SamplingParams params;
  params.top_p = 0.95f;
  params.seed = 1234;
  const std::vector<int32_t> a = DrawMany(sampler, params, 200);
  EXPECT_EQ(a, DrawMany(sampler, params, 200));
  params.seed = 1235;
  EXPECT_NE(a, DrawMany(sampler, params, 200));
  params.seed.reset();
  EXPECT_NE(DrawMany(sampler, params, 200), DrawMany(sampler, params, 200));
}

TEST(SamplerTest, MinTokensSuppressesEosAndStopTokens) {
  Sampler sampler({kEos, 5});
  SamplingParams params;
  params.temperature = 0.0f;
  params.min_tokens = 2;
  params.stop_token_ids = {4, 99999};  // out-of-vocab ids are ignored
  // Per step: expected greedy token given the number of output tokens so far.
  const std::vector<float> logits = {0.0f, 1.0f, 9.0f, 2.0f, 8.0f, 7.0f};
  struct Step {
    int num_outputs;
    bool ignore_eos;
    int32_t want;
  };
  const std::vector<Step> steps = {
      {0, false, 3},  // 2, 4 and 5 suppressed
      {1, false, 3},
      {2, false, kEos},  // min_tokens reached
      {0, true, kEos},   // ignore_eos: EOS is ordinary, only the stop token is suppressed
  };
  for (const Step& s : steps) {
    params.ignore_eos = s.ignore_eos;
    SequenceHistory history;
    for (int i = 0; i < s.num_outputs; ++i) history.AppendOutput(0);
    Rng rng(1);
    std::vector<float> scratch = logits;
    EXPECT_EQ(sampler.Sample(absl::MakeSpan(scratch), params, history, rng).token_id, s.want)
        << s.num_outputs << " " << s.ignore_eos;
  }
  // Sampling (not greedy) must never draw a suppressed token either.
  params.temperature = 1.0f;
  params.ignore_eos = false;
  Rng rng(5);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> scratch = logits;
    const int32_t t =
        sampler.Sample(absl::MakeSpan(scratch), params, SequenceHistory(), rng).token_id;
    EXPECT_TRUE(t == 0 || t == 1 || t == 3) << t;
  }
}

}  // namespace
}  // namespace shardserve
