// The coordinator's request metrics, in Prometheus form with vLLM's names (prefix `shardserve_`
// for `vllm:`) and histogram buckets, labelled by the `pool` and `group` that ran the request:
//
//   shardserve_time_to_first_token_seconds     histogram  arrival -> first token
//   shardserve_inter_token_latency_seconds     histogram  between tokens of one request
//   shardserve_e2e_request_latency_seconds     histogram  arrival -> last response
//   shardserve_request_queue_time_seconds      histogram  arrival -> routed to a group
//   shardserve_request_prompt_tokens           histogram  per finished request
//   shardserve_request_generation_tokens       histogram  per finished request
//   shardserve_prompt_tokens_total             counter    at the first token
//   shardserve_generation_tokens_total         counter    as tokens arrive
//   shardserve_request_success_total           counter    finished requests, + finished_reason
//   shardserve_num_requests_running            gauge      routed and not finished
//   shardserve_request_retries_total           counter    requests routed again because the
//                                                         labelled group failed before their first
//                                                         token (disaggregated requests only)
//
// A disaggregated request is labelled by two groups: its time to first token by the prefill group
// that computed the prompt (pool="prefill"), everything else (queue time, inter-token latency,
// end to end, token counts, success, running) by the decode group that generated (pool="decode"),
// so TTFT is the prefill pool's latency and ITL the decode pool's. Queue time is observed once per
// request, at its first routing; a retried request's other metrics carry the groups it finished
// on.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   RequestMetrics metrics(registry.get(), /*max_model_len=*/8192);
//   std::unique_ptr<RequestMetrics::Tracker> t = metrics.Start("both", 0, arrival);
//   t->Routed(absl::Now());
//   t->Token(absl::Now(), prompt_tokens);   // for every token
//   t->Finished("stop", absl::Now(), prompt_tokens, completion_tokens);
//
// Thread safety: RequestMetrics may be used from many threads; a Tracker belongs to one request
// (one thread). `registry` must outlive the RequestMetrics, which must outlive its Trackers.
#ifndef SHARDSERVE_COORDINATOR_REQUEST_METRICS_H_
#define SHARDSERVE_COORDINATOR_REQUEST_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace shardserve {

class RequestMetrics {
 public:
  // vLLM's buckets.
  static const std::vector<double>& TimeToFirstTokenBuckets();
  static const std::vector<double>& InterTokenLatencyBuckets();
  static const std::vector<double>& RequestLatencyBuckets();
  // 1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's build_1_2_5_buckets).
  static std::vector<double> Buckets125(int64_t max_value);

  // One request's metrics after it was routed to a group. Not thread-safe.
  class Tracker {
   public:
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;
    // Takes the request off num_requests_running.
    ~Tracker();

    // The request got its group.
    void Routed(absl::Time now);
    // A token arrived (one per call).
    void Token(absl::Time now, int32_t prompt_tokens);
    // The request ended with `finish_reason` ("stop", "length", "abort", "error").
    void Finished(absl::string_view finish_reason, absl::Time now, int32_t prompt_tokens,
                  int32_t completion_tokens);

   private:
    friend class RequestMetrics;
    Tracker(RequestMetrics* metrics, prometheus::Labels labels,
            const prometheus::Labels& first_token_labels, absl::Time arrival);

    RequestMetrics* const metrics_;
    const prometheus::Labels labels_;  // every metric but the time to first token
    const absl::Time arrival_;
    absl::Time last_token_ = absl::InfinitePast();
    bool finished_ = false;
    prometheus::Gauge& running_;
    prometheus::Histogram& ttft_;
    prometheus::Histogram& itl_;
    prometheus::Counter& generation_tokens_;
  };

  // Registers the families. `max_model_len` bounds the token-count buckets.
  RequestMetrics(prometheus::Registry* registry, int64_t max_model_len);

  // Starts tracking a request that arrived at `arrival` and runs on `group` of `pool`; counts it
  // in num_requests_running until the Tracker goes.
  std::unique_ptr<Tracker> Start(absl::string_view pool, int32_t group, absl::Time arrival);
  // The same for a disaggregated request (see the file comment for which group labels what).
  std::unique_ptr<Tracker> StartDisaggregated(int32_t prefill_group, int32_t decode_group,
                                              absl::Time arrival);

  // A request is routed again because `group` of `pool` failed before its first token.
  void Retried(absl::string_view pool, int32_t group);

 private:
  const std::vector<double> token_buckets_;
  prometheus::Family<prometheus::Histogram>& ttft_;
  prometheus::Family<prometheus::Histogram>& itl_;
  prometheus::Family<prometheus::Histogram>& e2e_;
  prometheus::Family<prometheus::Histogram>& queue_;
  prometheus::Family<prometheus::Histogram>& request_prompt_tokens_;
  prometheus::Family<prometheus::Histogram>& request_generation_tokens_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& generation_tokens_;
  prometheus::Family<prometheus::Counter>& success_;
  prometheus::Family<prometheus::Gauge>& running_;
  prometheus::Family<prometheus::Counter>& retries_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_REQUEST_METRICS_H_
