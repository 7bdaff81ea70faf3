// The statistics of `shardserve bench`, with the definitions of vLLM's benchmark_serving so the
// numbers compare:
//
//   TTFT  request sent -> first response carrying a token.
//   ITL   the gap before each later response carrying tokens (one value per response, however
//         many tokens it carries).
//   TPOT  (e2e - ttft) / (output_tokens - 1), for requests with more than one output token.
//   Percentiles interpolate linearly between the closest ranks (numpy's default).
//   Goodput: successful requests per second whose TTFT and TPOT meet every SLO given (a request
//   with one output token has TPOT 0).
//
// And the arrival schedule: a Poisson process (exponential gaps) starting at 0.
//
//   std::vector<double> arrivals = PoissonArrivals(100, /*rate=*/4.0, /*seed=*/0);
//   ... run the requests, fill one RequestRecord each ...
//   BenchSummary summary = Summarize(records, duration_s, slo);
#ifndef SHARDSERVE_TOOLS_BENCH_STATS_H_
#define SHARDSERVE_TOOLS_BENCH_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/types/optional.h"

namespace shardserve {

// What one request measured. Times in seconds, from the moment the request was sent.
struct RequestRecord {
  // The call ended OK with at least one token.
  bool success = false;
  // The gRPC status code name when the call failed ("UNAVAILABLE", ...), or "NO_TOKENS" for an OK
  // call that returned none.
  std::string error_code;
  std::string error_message;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double ttft_s = 0;
  double e2e_s = 0;
  // One per response carrying tokens after the first such response.
  std::vector<double> itl_s;
};

// Latency distribution in milliseconds; all zero when there are no values.
struct LatencyStats {
  int64_t count = 0;
  double mean_ms = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

// Service level objectives in milliseconds; absent means not checked.
struct SloOptions {
  absl::optional<double> ttft_ms;
  absl::optional<double> tpot_ms;
};

struct BenchSummary {
  int64_t successful = 0;
  int64_t failed = 0;
  // Failed requests per error code.
  std::map<std::string, int64_t> failures_by_code;
  double duration_s = 0;
  // Over successful requests.
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;      // successful requests / s
  double output_throughput = 0;       // output tokens / s
  double total_token_throughput = 0;  // (input + output tokens) / s
  double goodput = 0;                 // requests meeting every SLO / s
  int64_t good_requests = 0;
  LatencyStats ttft;
  LatencyStats tpot;
  LatencyStats itl;
  LatencyStats e2e;
};

// The p-th percentile (p in [0, 100]) of `values` by linear interpolation between closest ranks;
// 0 for no values.
double Percentile(std::vector<double> values, double p);

// Mean, p50 and p99 of `values_s` (seconds), reported in milliseconds.
LatencyStats Latencies(const std::vector<double>& values_s);

// (e2e - ttft) / (output_tokens - 1) in seconds; 0 when output_tokens <= 1.
double TimePerOutputToken(const RequestRecord& record);

// Summarizes the records of one run that took `duration_s` (first request sent to last finished).
BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                       const SloOptions& slo);

// Arrival times (seconds from the start) of `n` requests: the first at 0, each next one an
// exponentially distributed gap of mean 1/rate later, drawn from a generator seeded with `seed`
// (the same seed gives the same schedule). An infinite rate sends every request at 0.
// REQUIRES: rate > 0.
std::vector<double> PoissonArrivals(int n, double rate, uint64_t seed);

// The schedule PoissonArrivals derives from uniform draws u_i in [0, 1): gap_i = -ln(1 - u_i) /
// rate, arrivals 0, gap_1, gap_1 + gap_2, ...; one arrival more than there are draws.
std::vector<double> ArrivalsFromUniforms(const std::vector<double>& uniforms, double rate);

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_BENCH_STATS_H_
