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
#include <optional>
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
#include "proto/shardserve/v1/worker.pb.h"
#include "worker/engine_metrics.h"
#include "worker/finish_reason.h"
#include "worker/group_engine.h"
#include "worker/prefill_client.h"
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
  // Disaggregated serving on a decode group: how the leader has prompts prefilled elsewhere
  // (not owned, must outlive the engine) and where each rank of this group receives KV, in
  // group rank order. Requests submitted with a RemotePrefill need both.
  PrefillClient* prefill_client = nullptr;
  std::vector<v1::KvPeer> kv_peers;
};

// The prefill group that computes a decode group's request (Submit).
struct RemotePrefill {
  std::string leader_address;  // host:port of the prefill group's leader
  int32_t group_id = 0;
  // The request as the decode group received it: the prompt and sampling parameters the
  // prefill group gets.
  v1::GenerateOnGroupRequest request;
};

// Where a prefill group's request sends its prompt's KV (SubmitPrefill).
struct KvTarget {
  uint64_t transfer_id = 0;
  std::vector<v1::KvPeer> peers;  // every rank of the decode group
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
  // SubmitPrefill's token: the KV bytes the group sent and the seconds the transfer took.
  int64_t kv_bytes = 0;
  double kv_seconds = 0;
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
  //
  // With `remote` (a decode group, disaggregated serving) the prompt is not computed here: the
  // engine reserves fresh KV blocks for it, registers them with every rank's KV receiver, asks
  // the prefill group at `remote` to compute the prompt and send its KV there
  // (options.prefill_client), streams the token the prefill group sampled as the first event,
  // and generates the rest here. Requests wait for blocks in arrival order. When the prefill
  // group fails, cannot be reached or its transfer is incomplete, the request ends with
  // UNAVAILABLE (RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED when the prefill group said so) whose
  // message starts with "prefill group <id>", before any event, and its blocks are freed on
  // every rank.
  absl::StatusOr<std::shared_ptr<ServingRequest>> Submit(
      std::vector<int32_t> prompt, const SamplingParams& params, std::string request_id,
      const std::optional<RemotePrefill>& remote = std::nullopt);

  // A prefill group's part of a disaggregated request: computes the prompt like Submit (one
  // token, params.max_tokens is ignored), sending each chunk's KV to `target` layer by layer
  // from every rank as the step computes it. The one event comes once every decode rank has
  // confirmed all of the prompt's rows; a failed transfer ends the request with its error
  // instead (no event). Cancelling it aborts the transfer.
  absl::StatusOr<std::shared_ptr<ServingRequest>> SubmitPrefill(std::vector<int32_t> prompt,
                                                                const SamplingParams& params,
                                                                std::string request_id,
                                                                KvTarget target);

  ServingLoad Load() const;

  // OK while the engine works; the failure that stopped it otherwise.
  absl::Status health() const;

  // Ends every request (CANCELLED), stops the engine thread. Does not stop the group: the
  // caller then calls GroupEngine::Stop. Idempotent.
  void Shutdown();

 private:
  // A prefill request's transfer (SubmitPrefill).
  struct Outgoing {
    KvTarget target;
    int32_t sent_tokens = 0;  // prompt tokens whose KV every layer has sent
    double started = 0;       // Now() of the first send
    int64_t bytes = 0;        // sent by every rank, once the transfer finished
  };

  struct Active {
    std::shared_ptr<ServingRequest> request;
    SamplingParams params;
    SequenceHistory history;
    Rng rng;
    int32_t prompt_tokens = 0;
    std::optional<Outgoing> outgoing;
    std::optional<RemotePrefill> remote;
  };

  // A decode group's request while its prompt is prefilled elsewhere (Submit with a remote):
  //   kWaitingBlocks -> kExpecting (blocks taken, reservation in the next step's KV work)
  //   kExpecting -> kPrefilling (every rank registered it; Prefill call started) | kCancelling
  //   kPrefilling -> kCommitting (the prefill group confirmed the KV) | kCancelling
  //   kCommitting -> joins the scheduler's running batch | kCancelling
  //   kCancelling -> ended (the reservation dropped on every rank, then the blocks freed)
  enum class RemoteState { kWaitingBlocks, kExpecting, kPrefilling, kCommitting, kCancelling };
  struct Remote {
    Active active;
    RemoteState state = RemoteState::kWaitingBlocks;
    uint64_t transfer_id = 0;
    uint64_t call_id = 0;
    bool call_cancelled = false;
    v1::PrefillReply reply;
    absl::Status end_status;   // kCancelling: how the request ends
    bool cancel_sent = false;  // kCancelling: the drop went out with a step plan
  };

  ServingEngine(GroupEngine* engine, const ServingOptions& options);

  // Submit's and SubmitPrefill's common part: checks, admission, the inbox.
  absl::StatusOr<std::shared_ptr<ServingRequest>> Enqueue(std::vector<int32_t> prompt,
                                                          const SamplingParams& params,
                                                          std::string request_id, Active a);
  // Adds to kv_work_ the send of a prefill request's chunk, sequence seq_index of the plan.
  void AddSend(int32_t seq_index, const ScheduledChunk& c, Outgoing& outgoing);
  // Whether a prefill request's transfer was confirmed by the step just run; if not, ends the
  // request with the transfer's error. Engine thread.
  bool TransferDelivered(int64_t seq_id, Active& a);
  // The finish reason after `a` produced `token` (already in its history).
  FinishReason FinishAfter(const Active& a, int32_t token) const;

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

  // Decode side of disaggregated serving (serving_engine_remote.cc). Engine thread.
  // Moves remote requests through their states (see RemoteState) as far as they can go now,
  // adding their reservations, commits and cancels to kv_work_.
  void AdvanceRemotes();
  // Applies a step's outcomes to the remote requests that were waiting for them.
  void OnRemoteOutcomes(absl::Span<const KvOutcome> outcomes);
  // Starts a remote request's Prefill call.
  void StartPrefill(int64_t seq_id, Remote& r);
  // Ends a remote request early: drops its reservation on every rank at the next step, then
  // frees its blocks. `status` is how the request ends.
  void CancelRemote(int64_t seq_id, Remote& r, absl::Status status);
  void SetRemoteState(int64_t seq_id, Remote& r, RemoteState next);
  // A finished prefill call, from the PrefillClient's thread.
  void PrefillDone(int64_t seq_id, absl::StatusOr<v1::PrefillReply> reply);
  // Whether the next step has KV work even without tokens.
  bool HasKvWork() const;
  // Remote requests counted as running (blocks taken) for max_num_seqs.
  int NumRemoteRunning() const;

  GroupEngine* const engine_;
  const ServingOptions options_;
  const int64_t vocab_size_;

  // Engine-thread state.
  BlockAllocator blocks_;
  Scheduler scheduler_;
  Sampler sampler_;
  absl::flat_hash_map<int64_t, Active> active_;          // by sequence id
  absl::flat_hash_map<int64_t, Remote> remotes_;         // by sequence id
  std::deque<int64_t> remote_waiting_;                   // kWaitingBlocks, in arrival order
  absl::flat_hash_map<uint64_t, int64_t> transfer_seq_;  // transfer id -> sequence id
  // The next step's KV work: remote reservations, commits, cancels (decode) and aborted sends
  // (prefill); each step's sends are added by BuildPlan.
  v1::StepKvWork kv_work_;
  std::vector<KvOutcome> kv_outcomes_;
  uint64_t next_transfer_id_ = 0;
  StepPlan plan_;
  std::vector<float> logits_;
  int64_t next_seq_id_ = 1;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  std::vector<std::pair<int64_t, Active>> inbox_ ABSL_GUARDED_BY(mu_);
  // Finished Prefill calls, by sequence id, and the calls still running.
  std::vector<std::pair<int64_t, absl::StatusOr<v1::PrefillReply>>> prefill_done_
      ABSL_GUARDED_BY(mu_);
  int num_prefill_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  ServingLoad load_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SERVING_ENGINE_H_
