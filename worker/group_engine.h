// The engine of one rank of an engine group: a model replica spread over tp_size x pp_size
// ranks (model/shard_spec.h) that generates in lockstep.
//
// Every rank owns its Decoder shard and a KvCache of its stage's layers and its KV heads, with
// the same number of blocks everywhere, so the block ids of a plan are valid on every rank. The
// leader (group rank 0) also owns the BlockAllocator and the Sampler: for each step it builds a
// StepPlan (worker/step_plan.h), broadcasts it over the control communicator (the size, then the
// bytes), runs Decoder::Forward with it like every other rank, and samples from the logits,
// which the decoder delivers on the leader. Followers loop in ServeFollower(), running each
// plan they receive.
//
//   // every rank, on its own thread or process:
//   ASSIGN_OR_RETURN(auto engine, GroupEngine::Create(weights, shard, comms, options));
//   if (engine->is_leader()) {
//     ASSIGN_OR_RETURN(GenerationResult r, engine->Generate(prompt, params, on_token));
//     RETURN_IF_ERROR(engine->Stop());
//   } else {
//     RETURN_IF_ERROR(engine->ServeFollower());  // returns after the leader's Stop()
//   }
//
// Failures: every collective is bounded by its communicator's timeout, so a rank that dies or
// stops participating makes the others' pending call fail (UNAVAILABLE or DEADLINE_EXCEEDED)
// instead of hanging. The engine then is broken: the leader's Generate and the followers'
// ServeFollower return that status, and every later call returns it at once. A broken group is
// torn down and formed again; nothing is repaired in place.
//
// Idle followers wait in a broadcast, which is bounded by the control communicator's timeout
// too: while no request runs, the leader must call Ping() more often than that timeout.
//
// Thread safety: leader methods (Generate, Ping, Stop) may be called from any thread and are
// serialised by a mutex (one request at a time); ServeFollower runs on one thread.
#ifndef SHARDSERVE_WORKER_GROUP_ENGINE_H_
#define SHARDSERVE_WORKER_GROUP_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/thread_pool.h"
#include "kernels/communicator.h"
#include "model/decoder.h"
#include "model/shard_spec.h"
#include "model/weight_source.h"
#include "proto/shardserve/v1/worker.pb.h"
#include "worker/block_allocator.h"
#include "worker/engine.h"
#include "worker/kv_cache.h"
#include "worker/kv_transport.h"
#include "worker/sampler.h"
#include "worker/sampling_params.h"
#include "worker/step_plan.h"

namespace shardserve {

// The communicators of one rank; not owned, they must outlive the engine.
struct GroupComms {
  // All tp_size * pp_size ranks of the group, rank == ShardSpec::group_rank(). Carries the step
  // plans. Required when the group has more than one rank.
  Communicator* control = nullptr;
  // The decoder's tensor-parallel (per stage) and pipeline communicators.
  DecoderComms decoder;
  // Disaggregated serving (worker/kv_transport.h): a decode group's ranks receive prompts' KV
  // into their blocks, a prefill group's ranks send it. Null when the rank does not.
  KvReceiver* kv_receiver = nullptr;
  KvSender* kv_sender = nullptr;
};

// What became of one piece of a step's KV work (StepPlan::kv_work) on all the group's ranks.
struct KvOutcome {
  enum class Kind { kExpect, kCommit, kSend };
  Kind kind = Kind::kExpect;
  uint64_t transfer_id = 0;
  // OK when every rank succeeded; otherwise the leader's own error, or one naming how many
  // other ranks failed and the first failure's code.
  absl::Status status;
  // kSend: the bytes every rank of the group sent for the transfer, all steps together.
  int64_t bytes = 0;
};

class GroupEngine {
 public:
  // `options` has Engine's meanings and must be equal on every rank: kv_cache_bytes counts the
  // K and V of the whole replica (all ranks together), so every rank derives the same number of
  // blocks from it, kv_cache_dtype and the model's config (a rank with another dtype would get
  // another block count). REQUIRES: weights and comms outlive the engine.
  static absl::StatusOr<std::unique_ptr<GroupEngine>> Create(const WeightSource* weights,
                                                             const ShardSpec& shard,
                                                             const GroupComms& comms,
                                                             const EngineOptions& options);

  bool is_leader() const { return shard_.group_rank() == 0; }
  int group_rank() const { return shard_.group_rank(); }
  const ModelConfig& config() const { return decoder_->config(); }
  const Decoder& decoder() const { return *decoder_; }
  const KvCacheShape& kv_cache_shape() const { return kv_cache_->shape(); }
  int64_t max_context_tokens() const;

  // Leader only. Engine::Generate across the group: the same validation, errors and result.
  // `on_token` runs on the calling thread after each token is sampled.
  absl::StatusOr<GenerationResult> Generate(absl::Span<const int32_t> prompt,
                                            const SamplingParams& params,
                                            const std::function<bool(int32_t token)>& on_token);

  // Leader only. Broadcasts `plan` (a RUN step built by the caller's own scheduler and block
  // allocator over this engine's num_kv_blocks() blocks) and runs it on every rank; `logits`
  // receives [plan.logits_rows.size(), vocab_size]. INVALID_ARGUMENT for a plan outside the KV
  // cache; a failed step breaks the engine as Generate's do. Do not mix with Generate: the two
  // would hand out the same blocks.
  //
  // The plan's kv_work (v1::StepKvWork) is done on every rank: reservations registered,
  // committed or cancelled before the forward pass, layers sent as each finishes, finished
  // transfers confirmed after it. `kv_outcomes`, when given, receives one entry per Expect, per
  // commit and per finishing Send, in that order. A failed KV operation fails only its
  // transfer, never the step.
  absl::Status RunStep(const StepPlan& plan, float* logits,
                       std::vector<KvOutcome>* kv_outcomes = nullptr);

  // Blocks in every rank's KV cache (equal on all ranks).
  int64_t num_kv_blocks() const { return kv_cache_->shape().num_blocks; }

  // Leader only. Broadcasts an empty step so idle followers' waits do not time out.
  absl::Status Ping();

  // Leader only. Sends STOP: followers return OK from ServeFollower. Later calls do nothing.
  absl::Status Stop();

  // Followers only. Runs the leader's steps until STOP (OK) or until a collective or a step
  // fails (that status). When `should_stop` is given it is asked after every plan received
  // (steps and pings), and a true answer returns CANCELLED: the leader's next collective then
  // fails, so stopping one rank tears the group down.
  absl::Status ServeFollower(const std::function<bool()>& should_stop = nullptr);

 private:
  GroupEngine(const ShardSpec& shard, const GroupComms& comms) : shard_(shard), comms_(comms) {}

  // Broadcasts `plan` (leader) and, for RUN, runs it; `logits` receives the requested rows.
  absl::Status LeaderStep(const StepPlan& plan, float* logits,
                          std::vector<KvOutcome>* kv_outcomes = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The size then the bytes of a serialised plan, from the leader to every rank.
  absl::Status BroadcastPlan(std::string* bytes);
  // Runs a RUN plan on this rank, its KV work included; the outcomes of that work, agreed
  // across the ranks, go to `kv_outcomes` (may be null on followers).
  absl::Status RunPlan(const StepPlan& plan, float* logits, std::vector<KvOutcome>* kv_outcomes);
  // Sends layer `layer` of every Send in `work` (the Decoder's after-attention hook).
  absl::Status SendLayer(const v1::StepKvWork& work, const StepPlan& plan, int64_t layer);
  // Sums the ranks' views of the outcomes over the control communicator.
  absl::Status AgreeOutcomes(std::vector<KvOutcome>* outcomes);
  // Records the first failure; every later call returns it.
  absl::Status Fail(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StepPlanLimits limits() const;

  const ShardSpec shard_;
  const GroupComms comms_;
  EngineOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<KvCache> kv_cache_;

  absl::Mutex mu_;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Leader state.
  std::unique_ptr<BlockAllocator> blocks_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Sampler> sampler_;
  int64_t next_seq_id_ ABSL_GUARDED_BY(mu_) = 1;
  StepPlan plan_ ABSL_GUARDED_BY(mu_);
  // Sending transfers on this rank (prefill), from their first Send to their finish or abort:
  // the first failure (later layers are then skipped) and the bytes sent so far.
  struct OutgoingTransfer {
    absl::Status failure;
    int64_t bytes = 0;
  };
  absl::flat_hash_map<uint64_t, OutgoingTransfer> outgoing_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_GROUP_ENGINE_H_
