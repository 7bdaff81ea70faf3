#include "tools/bench_stats.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

constexpr double kEps = 1e-9;

RequestRecord Ok(int64_t prompt, int64_t output, double ttft, double e2e, std::vector<double> itl) {
  RequestRecord r;
  r.success = true;
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.itl_s = std::move(itl);
  return r;
}

RequestRecord Failed(const std::string& code) {
  RequestRecord r;
  r.error_code = code;
  return r;
}

TEST(PercentileTest, InterpolatesBetweenClosestRanks) {
  // Sorted {1, 2, 3, 4}: rank = p / 100 * 3.
  const std::vector<double> values = {4, 1, 3, 2};
  EXPECT_NEAR(Percentile(values, 0), 1.0, kEps);
  EXPECT_NEAR(Percentile(values, 50), 2.5, kEps);   // rank 1.5
  EXPECT_NEAR(Percentile(values, 99), 3.97, kEps);  // rank 2.97
  EXPECT_NEAR(Percentile(values, 100), 4.0, kEps);
  EXPECT_NEAR(Percentile({5}, 99), 5.0, kEps);
  EXPECT_EQ(Percentile({}, 50), 0.0);
}

TEST(TimePerOutputTokenTest, ExcludesTheFirstToken) {
  EXPECT_NEAR(TimePerOutputToken(Ok(1, 5, 0.1, 0.5, {})), 0.1, kEps);  // 0.4 s / 4 tokens
  EXPECT_EQ(TimePerOutputToken(Ok(1, 1, 0.2, 0.2, {})), 0.0);
}

// Three successes and three failures over 2 s:
//   A: 10 prompt, 5 output, TTFT 0.1, e2e 0.5, ITLs 0.1 0.1 0.2 (one response carried 2 tokens)
//      TPOT (0.5 - 0.1) / 4 = 0.1
//   B: 10 prompt, 3 output, TTFT 0.3, e2e 0.7, ITLs 0.2 0.2; TPOT 0.4 / 2 = 0.2
//   C: 10 prompt, 1 output, TTFT 0.2, e2e 0.2; no TPOT
std::vector<RequestRecord> Records() {
  return {Ok(10, 5, 0.1, 0.5, {0.1, 0.1, 0.2}),
          Ok(10, 3, 0.3, 0.7, {0.2, 0.2}),
          Ok(10, 1, 0.2, 0.2, {}),
          Failed("UNAVAILABLE"),
          Failed("DEADLINE_EXCEEDED"),
          Failed("UNAVAILABLE")};
}

TEST(SummarizeTest, CountsAndThroughputs) {
  const BenchSummary s = Summarize(Records(), 2.0, SloOptions());
  EXPECT_EQ(s.successful, 3);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.failures_by_code.at("UNAVAILABLE"), 2);
  EXPECT_EQ(s.failures_by_code.at("DEADLINE_EXCEEDED"), 1);
  EXPECT_EQ(s.total_input_tokens, 30);
  EXPECT_EQ(s.total_output_tokens, 9);
  EXPECT_NEAR(s.request_throughput, 1.5, kEps);       // 3 / 2
  EXPECT_NEAR(s.output_throughput, 4.5, kEps);        // 9 / 2
  EXPECT_NEAR(s.total_token_throughput, 19.5, kEps);  // 39 / 2
  // No SLO given: every successful request counts.
  EXPECT_EQ(s.good_requests, 3);
  EXPECT_NEAR(s.goodput, 1.5, kEps);
}

TEST(SummarizeTest, LatencyDistributions) {
  const BenchSummary s = Summarize(Records(), 2.0, SloOptions());
  // TTFT sorted {100, 200, 300} ms; p99 rank 1.98.
  EXPECT_EQ(s.ttft.count, 3);
  EXPECT_NEAR(s.ttft.mean_ms, 200, 1e-6);
  EXPECT_NEAR(s.ttft.p50_ms, 200, 1e-6);
  EXPECT_NEAR(s.ttft.p99_ms, 298, 1e-6);
  // TPOT {100, 200} ms (C has one token); p99 rank 0.99.
  EXPECT_EQ(s.tpot.count, 2);
  EXPECT_NEAR(s.tpot.mean_ms, 150, 1e-6);
  EXPECT_NEAR(s.tpot.p50_ms, 150, 1e-6);
  EXPECT_NEAR(s.tpot.p99_ms, 199, 1e-6);
  // ITL {100, 100, 200, 200, 200} ms: one value per response, not per token.
  EXPECT_EQ(s.itl.count, 5);
  EXPECT_NEAR(s.itl.mean_ms, 160, 1e-6);
  EXPECT_NEAR(s.itl.p50_ms, 200, 1e-6);
  EXPECT_NEAR(s.itl.p99_ms, 200, 1e-6);
  // E2E sorted {200, 500, 700} ms; p99 rank 1.98.
  EXPECT_NEAR(s.e2e.mean_ms, 1400.0 / 3, 1e-6);
  EXPECT_NEAR(s.e2e.p50_ms, 500, 1e-6);
  EXPECT_NEAR(s.e2e.p99_ms, 696, 1e-6);
}

TEST(SummarizeTest, GoodputCountsRequestsMeetingEverySlo) {
  SloOptions both;
  both.ttft_ms = 250;
  both.tpot_ms = 150;
  // A meets both; B misses TTFT (300); C meets TTFT and has TPOT 0.
  BenchSummary s = Summarize(Records(), 2.0, both);
  EXPECT_EQ(s.good_requests, 2);
  EXPECT_NEAR(s.goodput, 1.0, kEps);

  SloOptions tpot_only;
  tpot_only.tpot_ms = 150;  // B's TPOT is 200
  s = Summarize(Records(), 2.0, tpot_only);
  EXPECT_EQ(s.good_requests, 2);

  SloOptions strict;
  strict.ttft_ms = 50;
  s = Summarize(Records(), 2.0, strict);
  EXPECT_EQ(s.good_requests, 0);
  EXPECT_EQ(s.goodput, 0.0);
}

TEST(SummarizeTest, NothingSucceeded) {
  const BenchSummary s = Summarize({Failed("UNIMPLEMENTED")}, 0.5, SloOptions());
  EXPECT_EQ(s.successful, 0);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.request_throughput, 0.0);
  EXPECT_EQ(s.ttft.count, 0);
  EXPECT_EQ(s.ttft.p99_ms, 0.0);
}

TEST(ArrivalsTest, ExponentialGapsFromUniforms) {
  // gap = -ln(1 - u) / rate: ln 2 / 2, ln 4 / 2, 0.
  const std::vector<double> a = ArrivalsFromUniforms({0.5, 0.75, 0.0}, 2.0);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0], 0.0);
  EXPECT_NEAR(a[1], 0.34657359027997264, kEps);
  EXPECT_NEAR(a[2], 1.0397207708399179, kEps);
  EXPECT_NEAR(a[3], 1.0397207708399179, kEps);
}

TEST(ArrivalsTest, SeededScheduleIsFixed) {
  // The first output of mt19937_64 seeded with 5489 is 14514284786278117030; its top 53 bits
  // give u = 0.7868209548678019 and the gap -ln(1 - u) / 2 = 0.7728114394466985.
  const std::vector<double> a = PoissonArrivals(2, 2.0, 5489);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], 0.0);
  EXPECT_NEAR(a[1], 0.7728114394466985, 1e-12);

  EXPECT_EQ(PoissonArrivals(50, 3.0, 7), PoissonArrivals(50, 3.0, 7));
  EXPECT_NE(PoissonArrivals(50, 3.0, 7), PoissonArrivals(50, 3.0, 8));
}

TEST(ArrivalsTest, MeanGapIsOneOverRate) {
  const int n = 20001;
  const std::vector<double> a = PoissonArrivals(n, 4.0, 0);
  ASSERT_EQ(a.size(), static_cast<size_t>(n));
  for (int i = 1; i < n; ++i) ASSERT_GE(a[i], a[i - 1]);
  // 20000 gaps of mean 0.25 and standard deviation 0.25: the sample mean is within 0.0075
  // (four standard errors) of 0.25.
  EXPECT_NEAR(a.back() / (n - 1), 0.25, 0.0075);
}

TEST(ArrivalsTest, InfiniteRateSendsEverythingAtOnce) {
  EXPECT_EQ(PoissonArrivals(3, std::numeric_limits<double>::infinity(), 0),
            std::vector<double>({0, 0, 0}));
  EXPECT_EQ(PoissonArrivals(1, 5.0, 0), std::vector<double>({0}));
  EXPECT_TRUE(PoissonArrivals(0, 5.0, 0).empty());
}

}  // namespace
}  // namespace shardserve
