// Prometheus metrics of one group leader's serving engine (continuous batching, KV cache,
// prefix cache), with vLLM's metric names under the shardserve_ prefix and vLLM's buckets, so
// existing dashboards translate. Every series is labelled with the group's pool and id.
//
//   prometheus::Registry registry;                   // exposed on the worker's --metrics_port
//   EngineMetrics metrics(registry, "both", 0);
//   ServingOptions options;
//   options.metrics = &metrics;                      // the engine thread records into it
//
// Thread safety: RecordState keeps the previous totals, so one thread (the engine's) calls it;
// RecordStep and RecordFinish may be called from any thread.
#ifndef SHARDSERVE_WORKER_ENGINE_METRICS_H_
#define SHARDSERVE_WORKER_ENGINE_METRICS_H_

#include <cstdint>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace shardserve {

class EngineMetrics {
 public:
  // REQUIRES: registry outlives this object.
  EngineMetrics(prometheus::Registry& registry, const std::string& pool, int group_id);

  // One executed step: its sequences, its tokens (decode plus prefill) and its wall time.
  void RecordStep(int64_t num_seqs, int64_t num_tokens, double seconds);
  // The scheduler's and the KV cache's state after a step. The prefix-cache and preemption
  // arguments are running totals; the counters advance by their growth.
  void RecordState(int running, int waiting, double kv_usage, int64_t prefix_queried_tokens,
                   int64_t prefix_hit_tokens, int64_t preemptions);
  // A request ended: its reason ("stop", "length", "abort", "error").
  void RecordFinish(const std::string& reason);
  // A prompt's KV sent to a decode group (prefill side): its bytes, all ranks together, and the
  // seconds from the first layer sent to the last confirmation.
  void RecordKvTransfer(int64_t bytes, double seconds);
  // A KV transfer that failed, was cancelled or timed out (either side).
  void RecordKvTransferFailure();

 private:
  const prometheus::Labels labels_;  // pool and group
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& kv_usage_;
  prometheus::Counter& prefix_queries_;
  prometheus::Counter& prefix_hits_;
  prometheus::Counter& preemptions_;
  prometheus::Histogram& batch_size_;
  prometheus::Histogram& iteration_tokens_;
  prometheus::Histogram& step_seconds_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Counter& kv_transfer_bytes_;
  prometheus::Histogram& kv_transfer_seconds_;
  prometheus::Counter& kv_transfer_failures_;
  int64_t last_prefix_queried_ = 0;
  int64_t last_prefix_hits_ = 0;
  int64_t last_preemptions_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_ENGINE_METRICS_H_
