#include "worker/engine_metrics.h"

#include <algorithm>

namespace shardserve {
namespace {

// vLLM's iteration_tokens_total buckets; batch sizes use the same powers of two.
const prometheus::Histogram::BucketBoundaries kTokenBuckets = {
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
const prometheus::Histogram::BucketBoundaries kBatchBuckets = {1,  2,  4,   8,   16,  32,
                                                               64, 96, 128, 192, 256, 512};
const prometheus::Histogram::BucketBoundaries kStepBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

prometheus::Gauge& Gauge(prometheus::Registry& registry, const char* name, const char* help,
                         const prometheus::Labels& labels) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
}

prometheus::Counter& Counter(prometheus::Registry& registry, const char* name, const char* help,
                             const prometheus::Labels& labels) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
}

prometheus::Histogram& Histogram(prometheus::Registry& registry, const char* name, const char* help,
                                 const prometheus::Labels& labels,
                                 const prometheus::Histogram::BucketBoundaries& buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add(labels, buckets);
}

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& registry, const std::string& pool, int group_id)
    : labels_{{"pool", pool}, {"group", std::to_string(group_id)}},
      running_(Gauge(registry, "shardserve_num_requests_running",
                     "Requests in the group's running batch", labels_)),
      waiting_(Gauge(registry, "shardserve_num_requests_waiting",
                     "Requests queued on the group's leader", labels_)),
      kv_usage_(Gauge(registry, "shardserve_kv_cache_usage_perc",
                      "Fraction of KV blocks in use by some request (1 = full)", labels_)),
      prefix_queries_(Counter(registry, "shardserve_prefix_cache_queries_total",
                              "Prompt tokens looked up in the prefix cache", labels_)),
      prefix_hits_(Counter(registry, "shardserve_prefix_cache_hits_total",
                           "Prompt tokens found in the prefix cache", labels_)),
      preemptions_(Counter(registry, "shardserve_num_preemptions_total",
                           "Requests preempted (to be recomputed) because KV blocks ran out",
                           labels_)),
      batch_size_(Histogram(registry, "shardserve_batch_size", "Sequences per engine step", labels_,
                            kBatchBuckets)),
      iteration_tokens_(Histogram(registry, "shardserve_iteration_tokens_total",
                                  "Tokens per engine step (decode plus prefill)", labels_,
                                  kTokenBuckets)),
      step_seconds_(Histogram(registry, "shardserve_step_duration_seconds",
                              "Wall time of one engine step across the group", labels_,
                              kStepBuckets)),
      finished_(prometheus::BuildCounter()
                    .Name("shardserve_engine_requests_finished_total")
                    .Help("Requests the group's engine ended, by reason")
                    .Register(registry)),
      kv_transfer_bytes_(Counter(registry, "shardserve_kv_transfer_bytes_total",
                                 "KV cache bytes sent from prefill to decode groups", labels_)),
      kv_transfer_seconds_(Histogram(registry, "shardserve_kv_transfer_seconds",
                                     "Seconds from a prompt's first KV layer sent to the decode "
                                     "group's confirmation",
                                     labels_, kStepBuckets)),
      kv_transfer_failures_(Counter(registry, "shardserve_kv_transfer_failures_total",
                                    "KV transfers that failed, were cancelled or timed out",
                                    labels_)) {}

void EngineMetrics::RecordStep(int64_t num_seqs, int64_t num_tokens, double seconds) {
  batch_size_.Observe(static_cast<double>(num_seqs));
  iteration_tokens_.Observe(static_cast<double>(num_tokens));
  step_seconds_.Observe(seconds);
}

void EngineMetrics::RecordState(int running, int waiting, double kv_usage,
                                int64_t prefix_queried_tokens, int64_t prefix_hit_tokens,
                                int64_t preemptions) {
  running_.Set(running);
  waiting_.Set(waiting);
  kv_usage_.Set(kv_usage);
  prefix_queries_.Increment(
      static_cast<double>(std::max<int64_t>(0, prefix_queried_tokens - last_prefix_queried_)));
  prefix_hits_.Increment(
      static_cast<double>(std::max<int64_t>(0, prefix_hit_tokens - last_prefix_hits_)));
  preemptions_.Increment(
      static_cast<double>(std::max<int64_t>(0, preemptions - last_preemptions_)));
  last_prefix_queried_ = prefix_queried_tokens;
  last_prefix_hits_ = prefix_hit_tokens;
  last_preemptions_ = preemptions;
}

void EngineMetrics::RecordFinish(const std::string& reason) {
  prometheus::Labels labels = labels_;
  labels.emplace("finished_reason", reason);
  finished_.Add(labels).Increment();
}

void EngineMetrics::RecordKvTransfer(int64_t bytes, double seconds) {
  kv_transfer_bytes_.Increment(static_cast<double>(bytes));
  kv_transfer_seconds_.Observe(seconds);
}

void EngineMetrics::RecordKvTransferFailure() { kv_transfer_failures_.Increment(); }

}  // namespace shardserve
