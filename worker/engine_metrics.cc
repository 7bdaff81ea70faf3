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

prometheus::Labels Labels(const std::string& pool, const std::string& group) {
  return {{"pool", pool}, {"group", group}};
}

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& registry, const std::string& pool, int group_id)
    : running_(prometheus::BuildGauge()
                   .Name("shardserve_num_requests_running")
                   .Help("Requests in the group's running batch")
                   .Register(registry)
                   .Add(Labels(pool, std::to_string(group_id)))),
      waiting_(prometheus::BuildGauge()
                   .Name("shardserve_num_requests_waiting")
                   .Help("Requests queued on the group's leader")
                   .Register(registry)
                   .Add(Labels(pool, std::to_string(group_id)))),
      kv_usage_(prometheus::BuildGauge()
                    .Name("shardserve_kv_cache_usage_perc")
                    .Help("Fraction of KV blocks in use by some request (1 = full)")
                    .Register(registry)
                    .Add(Labels(pool, std::to_string(group_id)))),
      prefix_queries_(prometheus::BuildCounter()
                          .Name("shardserve_prefix_cache_queries_total")
                          .Help("Prompt tokens looked up in the prefix cache")
                          .Register(registry)
                          .Add(Labels(pool, std::to_string(group_id)))),
      prefix_hits_(prometheus::BuildCounter()
                       .Name("shardserve_prefix_cache_hits_total")
                       .Help("Prompt tokens found in the prefix cache")
                       .Register(registry)
                       .Add(Labels(pool, std::to_string(group_id)))),
      preemptions_(prometheus::BuildCounter()
                       .Name("shardserve_num_preemptions_total")
                       .Help("Requests preempted (to be recomputed) because KV blocks ran out")
                       .Register(registry)
                       .Add(Labels(pool, std::to_string(group_id)))),
      batch_size_(prometheus::BuildHistogram()
                      .Name("shardserve_batch_size")
                      .Help("Sequences per engine step")
                      .Register(registry)
                      .Add(Labels(pool, std::to_string(group_id)), kBatchBuckets)),
      iteration_tokens_(prometheus::BuildHistogram()
                            .Name("shardserve_iteration_tokens_total")
                            .Help("Tokens per engine step (decode plus prefill)")
                            .Register(registry)
                            .Add(Labels(pool, std::to_string(group_id)), kTokenBuckets)),
      step_seconds_(prometheus::BuildHistogram()
                        .Name("shardserve_step_duration_seconds")
                        .Help("Wall time of one engine step across the group")
                        .Register(registry)
                        .Add(Labels(pool, std::to_string(group_id)), kStepBuckets)),
      finished_(prometheus::BuildCounter()
                    .Name("shardserve_engine_requests_finished_total")
                    .Help("Requests the group's engine ended, by reason")
                    .Register(registry)),
      pool_(pool),
      group_(std::to_string(group_id)) {}

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
  finished_.Add({{"pool", pool_}, {"group", group_}, {"finished_reason", reason}}).Increment();
}

}  // namespace shardserve
