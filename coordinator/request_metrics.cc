#include "coordinator/request_metrics.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

prometheus::Family<prometheus::Histogram>& Histogram(prometheus::Registry* registry,
                                                     const std::string& name,
                                                     const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(*registry);
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry* registry,
                                                 const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry);
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

}  // namespace

const std::vector<double>& RequestMetrics::TimeToFirstTokenBuckets() {
  static const auto* buckets = new std::vector<double>{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *buckets;
}

const std::vector<double>& RequestMetrics::InterTokenLatencyBuckets() {
  static const auto* buckets =
      new std::vector<double>{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                              0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  return *buckets;
}

const std::vector<double>& RequestMetrics::RequestLatencyBuckets() {
  static const auto* buckets = new std::vector<double>{
      0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
      30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *buckets;
}

std::vector<double> RequestMetrics::Buckets125(int64_t max_value) {
  std::vector<double> buckets;
  for (int64_t exponent = 1; exponent <= max_value; exponent *= 10) {
    for (int64_t mantissa : {1, 2, 5}) {
      const int64_t value = mantissa * exponent;
      if (value > max_value) return buckets;
      buckets.push_back(static_cast<double>(value));
    }
  }
  return buckets;
}

RequestMetrics::RequestMetrics(prometheus::Registry* registry, int64_t max_model_len)
    : token_buckets_(Buckets125(max_model_len)),
      ttft_(Histogram(registry, "shardserve_time_to_first_token_seconds",
                      "Histogram of time to first token in seconds.")),
      itl_(Histogram(registry, "shardserve_inter_token_latency_seconds",
                     "Histogram of inter-token latency in seconds.")),
      e2e_(Histogram(registry, "shardserve_e2e_request_latency_seconds",
                     "Histogram of end to end request latency in seconds.")),
      queue_(Histogram(registry, "shardserve_request_queue_time_seconds",
                       "Histogram of time from arrival until the request was routed to a group.")),
      request_prompt_tokens_(Histogram(registry, "shardserve_request_prompt_tokens",
                                       "Number of prefill tokens processed.")),
      request_generation_tokens_(Histogram(registry, "shardserve_request_generation_tokens",
                                           "Number of generation tokens processed.")),
      prompt_tokens_(Counter(registry, "shardserve_prompt_tokens_total",
                             "Number of prefill tokens processed.")),
      generation_tokens_(Counter(registry, "shardserve_generation_tokens_total",
                                 "Number of generation tokens processed.")),
      success_(Counter(registry, "shardserve_request_success_total",
                       "Count of finished requests, by finish reason.")),
      running_(prometheus::BuildGauge()
                   .Name("shardserve_num_requests_running")
                   .Help("Requests routed to a group and not finished.")
                   .Register(*registry)),
      retries_(Counter(registry, "shardserve_request_retries_total",
                       "Requests routed again because the group failed before their first "
                       "token.")) {}

std::unique_ptr<RequestMetrics::Tracker> RequestMetrics::Start(absl::string_view pool,
                                                               int32_t group, absl::Time arrival) {
  prometheus::Labels labels{{"pool", std::string(pool)}, {"group", absl::StrCat(group)}};
  return std::unique_ptr<Tracker>(new Tracker(this, labels, labels, arrival));
}

std::unique_ptr<RequestMetrics::Tracker> RequestMetrics::StartDisaggregated(int32_t prefill_group,
                                                                            int32_t decode_group,
                                                                            absl::Time arrival) {
  return std::unique_ptr<Tracker>(
      new Tracker(this, {{"pool", "decode"}, {"group", absl::StrCat(decode_group)}},
                  {{"pool", "prefill"}, {"group", absl::StrCat(prefill_group)}}, arrival));
}

void RequestMetrics::Retried(absl::string_view pool, int32_t group) {
  retries_.Add({{"pool", std::string(pool)}, {"group", absl::StrCat(group)}}).Increment();
}

RequestMetrics::Tracker::Tracker(RequestMetrics* metrics, prometheus::Labels labels,
                                 const prometheus::Labels& first_token_labels, absl::Time arrival)
    : metrics_(metrics),
      labels_(std::move(labels)),
      arrival_(arrival),
      running_(metrics->running_.Add(labels_)),
      ttft_(metrics->ttft_.Add(first_token_labels, TimeToFirstTokenBuckets())),
      itl_(metrics->itl_.Add(labels_, InterTokenLatencyBuckets())),
      generation_tokens_(metrics->generation_tokens_.Add(labels_)) {
  running_.Increment();
}

RequestMetrics::Tracker::~Tracker() { running_.Decrement(); }

void RequestMetrics::Tracker::Routed(absl::Time now) {
  metrics_->queue_.Add(labels_, RequestLatencyBuckets()).Observe(Seconds(now - arrival_));
}

void RequestMetrics::Tracker::Token(absl::Time now, int32_t prompt_tokens) {
  if (last_token_ == absl::InfinitePast()) {
    ttft_.Observe(Seconds(now - arrival_));
    metrics_->prompt_tokens_.Add(labels_).Increment(prompt_tokens);
  } else {
    itl_.Observe(Seconds(now - last_token_));
  }
  last_token_ = now;
  generation_tokens_.Increment();
}

void RequestMetrics::Tracker::Finished(absl::string_view finish_reason, absl::Time now,
                                       int32_t prompt_tokens, int32_t completion_tokens) {
  if (finished_) return;
  finished_ = true;
  metrics_->e2e_.Add(labels_, RequestLatencyBuckets()).Observe(Seconds(now - arrival_));
  metrics_->request_prompt_tokens_.Add(labels_, metrics_->token_buckets_).Observe(prompt_tokens);
  metrics_->request_generation_tokens_.Add(labels_, metrics_->token_buckets_)
      .Observe(completion_tokens);
  prometheus::Labels with_reason = labels_;
  with_reason["finished_reason"] = std::string(finish_reason);
  metrics_->success_.Add(with_reason).Increment();
}

}  // namespace shardserve
