#include "tools/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace shardserve {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

LatencyStats Latencies(const std::vector<double>& values_s) {
  LatencyStats stats;
  stats.count = static_cast<int64_t>(values_s.size());
  if (values_s.empty()) return stats;
  const double sum = std::accumulate(values_s.begin(), values_s.end(), 0.0);
  stats.mean_ms = 1000.0 * sum / static_cast<double>(values_s.size());
  stats.p50_ms = 1000.0 * Percentile(values_s, 50);
  stats.p99_ms = 1000.0 * Percentile(values_s, 99);
  return stats;
}

double TimePerOutputToken(const RequestRecord& record) {
  if (record.output_tokens <= 1) return 0;
  return (record.e2e_s - record.ttft_s) / static_cast<double>(record.output_tokens - 1);
}

BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                       const SloOptions& slo) {
  BenchSummary summary;
  summary.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2es;
  for (const RequestRecord& r : records) {
    if (!r.success) {
      ++summary.failed;
      ++summary.failures_by_code[r.error_code];
      continue;
    }
    ++summary.successful;
    summary.total_input_tokens += r.prompt_tokens;
    summary.total_output_tokens += r.output_tokens;
    ttfts.push_back(r.ttft_s);
    e2es.push_back(r.e2e_s);
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    const double tpot = TimePerOutputToken(r);
    if (r.output_tokens > 1) tpots.push_back(tpot);
    const bool good = (!slo.ttft_ms.has_value() || 1000.0 * r.ttft_s <= *slo.ttft_ms) &&
                      (!slo.tpot_ms.has_value() || 1000.0 * tpot <= *slo.tpot_ms);
    if (good) ++summary.good_requests;
  }
  if (duration_s > 0) {
    summary.request_throughput = static_cast<double>(summary.successful) / duration_s;
    summary.output_throughput = static_cast<double>(summary.total_output_tokens) / duration_s;
    summary.total_token_throughput =
        static_cast<double>(summary.total_input_tokens + summary.total_output_tokens) / duration_s;
    summary.goodput = static_cast<double>(summary.good_requests) / duration_s;
  }
  summary.ttft = Latencies(ttfts);
  summary.tpot = Latencies(tpots);
  summary.itl = Latencies(itls);
  summary.e2e = Latencies(e2es);
  return summary;
}

std::vector<double> ArrivalsFromUniforms(const std::vector<double>& uniforms, double rate) {
  std::vector<double> arrivals = {0.0};
  double t = 0;
  for (double u : uniforms) {
    t += -std::log1p(-u) / rate;
    arrivals.push_back(t);
  }
  return arrivals;
}

std::vector<double> PoissonArrivals(int n, double rate, uint64_t seed) {
  if (n <= 0) return {};
  if (std::isinf(rate)) return std::vector<double>(n, 0.0);
  // mt19937_64's output is fixed by the standard, and the top 53 bits make a double in [0, 1)
  // exactly, so a seed gives the same schedule with every standard library (the library's own
  // distributions are not specified that tightly).
  std::mt19937_64 rng(seed);
  std::vector<double> uniforms(n - 1);
  for (double& u : uniforms) u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return ArrivalsFromUniforms(uniforms, rate);
}

}  // namespace shardserve
