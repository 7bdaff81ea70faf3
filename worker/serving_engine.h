// The serving loop of an engine group's leader: continuous batching of many concurrent requests
// over a GroupEngine (worker/group_engine.h).
//
// One engine thread owns the Scheduler (worker/scheduler.h), the BlockAllocator and the
// Sampler. Each iteration it takes in new requests and cancellations, asks the scheduler for the
// next step (decode tokens first, then chunked prefill, preemption by recompute when blocks run
// out), packs it into one StepPlan, runs it on every rank of the group with
// GroupEngine::RunStep, samples a token for every sequence whose logits came back, and pushes
// the tokens to the requests' streams. While idle it pings the group so that followers' waits
// do not time out.
//
//   ASSIGN_OR_RETURN(auto serving, ServingEngine::Create(group_engine, ServingOptions{}));
//   ASSIGN_OR_RETURN(std::shared_ptr<ServingRequest> r, serving->Submit(prompt, params, "id"));
//   TokenEvent event;
//   while (r->Next(&event, absl::Seconds(1)) == ServingRequest::kEvent) { ...stream event... }
//   absl::Status final_status = r->status();   // OK, or why the request ended early
//   serving->Shutdown();
//
// Stopping: a request finishes on EOS (unless ignore_eos), a stop token id or max_tokens; or
// when Cancel() is called (client gone, deadline): its blocks are freed before the next step,
// so every rank stops attending to them within one step.
//
// Failures: when a step fails (a rank died or timed out), every request ends with that status,
// later Submits return it, and the engine thread exits. The group is formed again from scratch.
//
// Thread safety: Submit, Cancel (through ServingRequest), Load and Shutdown may be called from
// any thread. Events are produced on the engine thread and consumed by the request's owner.
#ifndef SHARDSERVE_WORKER_SERVING_ENGINE_H_
#define SHARDSERVE_WORKER_SERVING_ENGINE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "worker/engine_metrics.h"
#include "worker/finish_reason.h"
#include "worker/group_engine.h"
#include "worker/sampler.h"
#include "worker/sampling_params.h"
#include "worker/scheduler.h"
#include "worker/sequence_history.h"
#include "worker/step_plan.h"

namespace shardserve {

struct ServingOptions {
  SchedulerOptions scheduler;
  // How often an idle leader pings its followers; must be well within their collective timeout.
  absl::Duration ping_interval = absl::Milliseconds(500);
  // Where the engine records its metrics; not owned, may be null, must outlive the engine.
  EngineMetrics* metrics = nullptr;
};

// One sampled token, in order.
struct TokenEvent {
  int32_t token_id = -1;
  float logprob = 0;                          // when params.logprobs >= 0
  std::vector<TokenLogprob> top_logprobs;     // params.logprobs of them, best first
  FinishReason finish = FinishReason::kNone;  // set on the request's last token
  // Prompt length and prompt tokens taken from the prefix cache (at the last admission).
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
};

// Snapshot of the leader's state, for load reports and metrics.
struct ServingLoad {
  int32_t running = 0;
  int32_t waiting = 0;  // queued in the scheduler and not yet taken in
  int32_t num_kv_blocks = 0;
  int32_t free_kv_blocks = 0;
  double kv_usage = 0;
  int64_t prefix_cache_queried_tokens = 0;
  int64_t prefix_cache_hit_tokens = 0;
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t last_step_tokens = 0;
  int64_t last_step_seqs = 0;
  double last_step_seconds = 0;
};

// One request's stream of tokens, from the engine thread to its consumer.
class ServingRequest {
 public:
  enum NextResult { kEvent, kDone, kTimeout };

  // Waits up to `timeout` for the next token. kDone once the last event was taken and the
  // request ended (see status()).
  NextResult Next(TokenEvent* event, absl::Duration timeout);

  // Asks the engine to end the request; it frees its blocks before the next step. The stream
  // then ends with CANCELLED unless the request had already finished.
  void Cancel();

  // OK when the request finished normally (the last event has a finish reason); otherwise why
  // it ended. Meaningful once Next returned kDone.
  absl::Status status() const;

  const std::string& request_id() const { return request_id_; }

 private:
  friend class ServingEngine;
  explicit ServingRequest(std::string request_id) : request_id_(std::move(request_id)) {}

  void Push(TokenEvent event);
  void End(absl::Status status);
  bool cancelled() const;

  const std::string request_id_;
  mutable absl::Mutex mu_;
  std::deque<TokenEvent> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class ServingEngine {
 public:
  // Starts the engine thread. REQUIRES: engine is a group leader, outlives this object, and is
  // used only through it from now on (no Generate calls).
  static absl::StatusOr<std::unique_ptr<ServingEngine>> Create(GroupEngine* engine,
                                                               const ServingOptions& options);
  ~ServingEngine();  // Shutdown()

  ServingEngine(const ServingEngine&) = delete;
  ServingEngine& operator=(const ServingEngine&) = delete;

  // Queues a request. INVALID_ARGUMENT as CheckGenerateRequest (worker/engine.h);
  // RESOURCE_EXHAUSTED when max_waiting requests already wait; the engine's failure once it
  // failed; FAILED_PRECONDITION after Shutdown.
  absl::StatusOr<std::shared_ptr<ServingRequest>> Submit(std::vector<int32_t> prompt,
                                                         const SamplingParams& params,
                                                         std::string request_id);

  ServingLoad Load() const;

  // OK while the engine works; the failure that stopped it otherwise.
  absl::Status health() const;

  // Ends every request (CANCELLED), stops the engine thread. Does not stop the group: the
  // caller then calls GroupEngine::Stop. Idempotent.
  void Shutdown();

 private:
  struct Active {
    std::shared_ptr<ServingRequest> request;
    SamplingParams params;
    SequenceHistory history;
    Rng rng;
    int32_t prompt_tokens = 0;
  };

  ServingEngine(GroupEngine* engine, const ServingOptions& options);

  void Loop();
  // Moves new requests into the scheduler and drops cancelled ones. Engine thread.
  void TakeInbox();
  // Packs the chunks of `out` into plan_, one logits row per chunk that wants logits.
  void BuildPlan(const SchedulerOutput& out);
  // Samples and delivers the tokens of one step. Engine thread.
  void DeliverTokens(const SchedulerOutput& out, absl::Span<float> logits);
  // Ends a finished request normally and frees its blocks. Engine thread.
  void FinishSequence(int64_t seq_id, FinishReason reason);
  // Ends a request early with `status` (cancelled, failed). Engine thread.
  void EndEarly(Active& a, const absl::Status& status);
  // Records the group's failure, then EndAll. Engine thread.
  void FailAll(const absl::Status& status);
  // Ends every queued and active request with `status` and frees their blocks. Engine thread,
  // once Submit refuses new requests (failure or shutdown).
  void EndAll(const absl::Status& status);
  void UpdateLoad(double step_seconds, int64_t step_tokens, int64_t step_seqs);

  GroupEngine* const engine_;
  const ServingOptions options_;
  const int64_t vocab_size_;

  // Engine-thread state.
  BlockAllocator blocks_;
  Scheduler scheduler_;
  Sampler sampler_;
  absl::flat_hash_map<int64_t, Active> active_;  // by sequence id
  StepPlan plan_;
  std::vector<float> logits_;
  int64_t next_seq_id_ = 1;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  std::vector<std::pair<int64_t, Active>> inbox_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  ServingLoad load_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SERVING_ENGINE_H_
