#include "worker/group_engine.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

// Bounds a plan's size header before anything is allocated for it: a plan carries a few
// integers per token and per block.
constexpr int64_t kMaxPlanBytes = int64_t{1} << 30;

// How long a rank's receiver may take to confirm a reservation the prefill group already
// reported complete.
constexpr absl::Duration kKvCommitWait = absl::Seconds(2);

// A plan's decode ranks for one transfer, as the KV sender takes them.
std::vector<KvPeer> PeersOf(const google::protobuf::RepeatedPtrField<v1::KvPeer>& list) {
  std::vector<KvPeer> peers;
  for (const v1::KvPeer& p : list) {
    peers.push_back({p.address(), IndexRange{p.layer_begin(), p.layer_end()},
                     IndexRange{p.kv_head_begin(), p.kv_head_end()}});
  }
  return peers;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GroupEngine>> GroupEngine::Create(const WeightSource* weights,
                                                                 const ShardSpec& shard,
                                                                 const GroupComms& comms,
                                                                 const EngineOptions& options) {
  if (options.block_size <= 0 || options.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError("block_size and max_num_batched_tokens must be positive");
  }
  const int world = shard.layout.tp_size * shard.layout.pp_size;
  if (world > 1 && (comms.control == nullptr || comms.control->world_size() != world ||
                    comms.control->rank() != shard.group_rank())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the control communicator must span the group's ", world, " ranks with rank ",
                     shard.group_rank()));
  }
  std::unique_ptr<GroupEngine> e(new GroupEngine(shard, comms));
  e->options_ = options;
  ASSIGN_OR_RETURN(e->pool_, ThreadPool::Create(options.num_threads));
  ASSIGN_OR_RETURN(e->decoder_, Decoder::Create(weights, shard, comms.decoder));
  const ModelConfig& c = e->decoder_->config();

  // The block count comes from the whole replica's KV per token, identical on every rank.
  KvCacheShape whole;
  whole.num_layers = c.num_layers;
  whole.num_kv_heads = c.num_kv_heads;
  whole.head_dim = c.head_dim;
  whole.block_size = options.block_size;
  whole.dtype = options.kv_cache_dtype;
  int64_t kv_bytes = options.kv_cache_bytes;
  if (kv_bytes == 0) {
    kv_bytes = std::min<int64_t>(
        int64_t{4} << 30, (c.max_position_embeddings + whole.block_size) * whole.BytesPerToken());
  }
  const int64_t num_blocks = kv_bytes / (whole.BytesPerToken() * whole.block_size);
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes=", kv_bytes,
                                                   " holds less than one block of ",
                                                   whole.block_size, " tokens"));
  }
  KvCacheShape shape;
  shape.num_layers = shard.layers.size();
  shape.num_kv_heads = shard.kv_heads.size();
  shape.head_dim = c.head_dim;
  shape.block_size = options.block_size;
  shape.dtype = options.kv_cache_dtype;
  shape.num_blocks = num_blocks;
  ASSIGN_OR_RETURN(e->kv_cache_, KvCache::Create(shape));
  if (e->is_leader()) {
    absl::MutexLock lock(&e->mu_);
    e->blocks_ = std::make_unique<BlockAllocator>(num_blocks, shape.block_size);
    std::vector<int32_t> eos;
    for (int64_t id : c.eos_token_ids) eos.push_back(static_cast<int32_t>(id));
    e->sampler_ = std::make_unique<Sampler>(std::move(eos));
  }
  return e;
}

int64_t GroupEngine::max_context_tokens() const {
  return std::min(config().max_position_embeddings,
                  kv_cache_->shape().num_blocks * kv_cache_->shape().block_size);
}

StepPlanLimits GroupEngine::limits() const {
  return {kv_cache_->shape().num_blocks, kv_cache_->shape().block_size, config().vocab_size};
}

absl::Status GroupEngine::Fail(absl::Status status) {
  if (broken_.ok()) broken_ = status;
  return status;
}

absl::Status GroupEngine::BroadcastPlan(std::string* bytes) {
  if (comms_.control == nullptr) return absl::OkStatus();
  int64_t size = static_cast<int64_t>(bytes->size());
  RETURN_IF_ERROR(comms_.control->Broadcast(TensorView::Cpu(&size, DType::kI64, {1}), 0));
  if (size <= 0 || size > kMaxPlanBytes) {
    return absl::InvalidArgumentError(absl::StrCat("step plan of ", size, " bytes"));
  }
  bytes->resize(size);
  return comms_.control->Broadcast(TensorView::Cpu(bytes->data(), DType::kI8, {size}), 0);
}

absl::Status GroupEngine::RunPlan(const StepPlan& plan, float* logits,
                                  std::vector<KvOutcome>* kv_outcomes) {
  if (plan.kv_work.empty()) {
    return decoder_->Forward(OpContext::Cpu(pool_.get()), plan.AsForwardBatch(),
                             kv_cache_->layers(), logits);
  }
  v1::StepKvWork work;
  if (!work.ParseFromString(plan.kv_work)) {
    return absl::InvalidArgumentError("step plan: unreadable KV work");
  }
  const int64_t num_seqs = static_cast<int64_t>(plan.kv_lens.size());
  for (const v1::StepKvWork::Send& send : work.send()) {
    if (send.seq_index() < 0 || send.seq_index() >= num_seqs || send.token_begin() < 0 ||
        send.token_begin() > send.token_end() ||
        send.token_end() > plan.kv_lens[send.seq_index()]) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: KV send of transfer ", send.transfer_id(), " names tokens [",
                       send.token_begin(), ", ", send.token_end(), ") of sequence ",
                       send.seq_index(), ", outside the batch"));
    }
  }
  std::vector<KvOutcome> outcomes;
  auto no_receiver = absl::FailedPreconditionError(
      absl::StrCat("rank ", group_rank(), " has no KV receiver (not a decode group)"));
  auto no_sender = absl::FailedPreconditionError(
      absl::StrCat("rank ", group_rank(), " has no KV sender (not a prefill group)"));

  // Reservations first, so that a step may also use the KV it commits.
  for (const v1::StepKvWork::Expect& expect : work.expect()) {
    KvOutcome& o = outcomes.emplace_back();
    o.kind = KvOutcome::Kind::kExpect;
    o.transfer_id = expect.transfer_id();
    if (comms_.kv_receiver == nullptr) {
      o.status = no_receiver;
      continue;
    }
    KvDestination dst;
    dst.block_ids.assign(expect.block_ids().begin(), expect.block_ids().end());
    dst.num_tokens = expect.num_tokens();
    dst.layers = shard_.layers;
    dst.kv_heads = shard_.kv_heads;
    dst.layer_views.assign(kv_cache_->layers().begin(), kv_cache_->layers().end());
    o.status = comms_.kv_receiver->Expect(expect.transfer_id(), dst);
  }
  for (uint64_t id : work.commit()) {
    KvOutcome& o = outcomes.emplace_back();
    o.kind = KvOutcome::Kind::kCommit;
    o.transfer_id = id;
    // The prefill group confirmed every row before the leader commits, so this does not wait
    // unless a rank's receiver disagrees; the bound keeps a disagreement from stalling the group.
    o.status =
        comms_.kv_receiver == nullptr ? no_receiver : comms_.kv_receiver->Wait(id, kKvCommitWait);
  }
  for (uint64_t id : work.cancel()) {
    if (comms_.kv_receiver != nullptr) comms_.kv_receiver->Cancel(id);
  }

  if (!plan.token_ids.empty()) {
    Decoder::LayerHook hook;
    if (work.send_size() > 0) {
      hook = [&](int64_t layer) { return SendLayer(work, plan, layer); };
    }
    RETURN_IF_ERROR(decoder_->Forward(OpContext::Cpu(pool_.get()), plan.AsForwardBatch(),
                                      kv_cache_->layers(), logits, hook));
  }

  for (const v1::StepKvWork::Send& send : work.send()) {
    if (!send.finish()) continue;
    KvOutcome& o = outcomes.emplace_back();
    o.kind = KvOutcome::Kind::kSend;
    o.transfer_id = send.transfer_id();
    OutgoingTransfer transfer = outgoing_[send.transfer_id()];
    outgoing_.erase(send.transfer_id());
    o.bytes = transfer.bytes;
    if (comms_.kv_sender == nullptr) {
      o.status = no_sender;
      continue;
    }
    const absl::Status finished =
        comms_.kv_sender->Finish(send.transfer_id(), PeersOf(send.peers()), transfer.failure);
    o.status = transfer.failure.ok() ? finished : transfer.failure;
  }
  for (const v1::StepKvWork::Abort& abort : work.abort()) {
    outgoing_.erase(abort.transfer_id());
    if (comms_.kv_sender == nullptr) continue;
    const absl::Status s =
        comms_.kv_sender->Finish(abort.transfer_id(), PeersOf(abort.peers()),
                                 absl::CancelledError("the prefill request was cancelled"));
    if (!s.ok()) VLOG(1) << "aborting KV transfer " << abort.transfer_id() << ": " << s;
  }
  if (outcomes.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(AgreeOutcomes(&outcomes));
  if (kv_outcomes != nullptr) *kv_outcomes = std::move(outcomes);
  return absl::OkStatus();
}

absl::Status GroupEngine::SendLayer(const v1::StepKvWork& work, const StepPlan& plan,
                                    int64_t layer) {
  const KvLayerView& view = kv_cache_->layers()[layer - shard_.layers.begin];
  const int64_t head_dim = kv_cache_->shape().head_dim;
  for (const v1::StepKvWork::Send& send : work.send()) {
    OutgoingTransfer& transfer = outgoing_[send.transfer_id()];
    if (!transfer.failure.ok() || send.token_begin() == send.token_end()) continue;
    if (comms_.kv_sender == nullptr) {
      transfer.failure = absl::FailedPreconditionError(
          absl::StrCat("rank ", group_rank(), " has no KV sender (not a prefill group)"));
      continue;
    }
    const std::vector<KvPeer> peers = PeersOf(send.peers());
    const int32_t s = send.seq_index();
    KvSource source;
    source.view = view;
    source.block_ids = absl::MakeConstSpan(plan.kv_indices)
                           .subspan(plan.kv_indptr[s], plan.kv_indptr[s + 1] - plan.kv_indptr[s]);
    source.num_tokens = send.token_end();
    source.kv_heads = shard_.kv_heads;
    source.tokens = IndexRange{send.token_begin(), send.token_end()};
    absl::Status sent = comms_.kv_sender->SendLayer(send.transfer_id(), peers, layer, source);
    if (!sent.ok()) {
      transfer.failure = std::move(sent);
      continue;
    }
    for (const KvPeer& peer : peers) {
      if (layer < peer.layers.begin || layer >= peer.layers.end) continue;
      const int64_t heads = std::min(peer.kv_heads.end, shard_.kv_heads.end) -
                            std::max(peer.kv_heads.begin, shard_.kv_heads.begin);
      if (heads > 0) {
        transfer.bytes += 2 * source.tokens.size() * heads * head_dim * view.elem_bytes();
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GroupEngine::AgreeOutcomes(std::vector<KvOutcome>* outcomes) {
  if (comms_.control == nullptr || comms_.control->world_size() == 1) return absl::OkStatus();
  // Per outcome: ranks that failed, the failures' status codes summed (the first failing code
  // is recovered when one rank failed), and the bytes split so that float sums stay exact.
  constexpr int kFields = 4;
  constexpr int64_t kLow = int64_t{1} << 20;
  std::vector<float> values(outcomes->size() * kFields, 0.0f);
  for (size_t i = 0; i < outcomes->size(); ++i) {
    const KvOutcome& o = (*outcomes)[i];
    values[i * kFields + 0] = o.status.ok() ? 0.0f : 1.0f;
    values[i * kFields + 1] = static_cast<float>(static_cast<int>(o.status.code()));
    values[i * kFields + 2] = static_cast<float>(o.bytes / kLow);
    values[i * kFields + 3] = static_cast<float>(o.bytes % kLow);
  }
  RETURN_IF_ERROR(comms_.control->AllReduceSum(
      TensorView::Cpu(values.data(), DType::kF32, {static_cast<int64_t>(values.size())})));
  for (size_t i = 0; i < outcomes->size(); ++i) {
    KvOutcome& o = (*outcomes)[i];
    const int failed = static_cast<int>(values[i * kFields + 0]);
    o.bytes = static_cast<int64_t>(values[i * kFields + 2]) * kLow +
              static_cast<int64_t>(values[i * kFields + 3]);
    if (!o.status.ok() || failed == 0) continue;
    // The leader succeeded and others did not.
    const auto code = failed == 1
                          ? static_cast<absl::StatusCode>(static_cast<int>(values[i * kFields + 1]))
                          : absl::StatusCode::kUnavailable;
    o.status =
        absl::Status(code, absl::StrCat(failed, " rank(s) of the group failed the KV ",
                                        o.kind == KvOutcome::Kind::kSend ? "send" : "receive",
                                        " of transfer ", o.transfer_id));
  }
  return absl::OkStatus();
}

absl::Status GroupEngine::LeaderStep(const StepPlan& plan, float* logits,
                                     std::vector<KvOutcome>* kv_outcomes) {
  if (!broken_.ok()) return broken_;
  if (stopped_) return absl::FailedPreconditionError("the group engine was stopped");
  std::string bytes = SerializeStepPlan(plan);
  if (absl::Status s = BroadcastPlan(&bytes); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat("broadcasting a step plan: ", s.message())));
  }
  if (plan.command == StepPlan::Command::kStop) stopped_ = true;
  if (plan.command != StepPlan::Command::kRun) return absl::OkStatus();
  if (absl::Status s = RunPlan(plan, logits, kv_outcomes); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat("group step on rank 0: ", s.message())));
  }
  return absl::OkStatus();
}

absl::Status GroupEngine::RunStep(const StepPlan& plan, float* logits,
                                  std::vector<KvOutcome>* kv_outcomes) {
  if (kv_outcomes != nullptr) kv_outcomes->clear();
  if (!is_leader()) return absl::FailedPreconditionError("RunStep is for the group leader");
  if (plan.command != StepPlan::Command::kRun) {
    return absl::InvalidArgumentError("RunStep takes RUN plans; use Ping or Stop");
  }
  RETURN_IF_ERROR(ValidateStepPlan(plan, limits()));
  absl::MutexLock lock(&mu_);
  return LeaderStep(plan, logits, kv_outcomes);
}

absl::Status GroupEngine::Ping() {
  if (!is_leader()) return absl::FailedPreconditionError("Ping is for the group leader");
  absl::MutexLock lock(&mu_);
  plan_ = StepPlan();
  plan_.command = StepPlan::Command::kPing;
  return LeaderStep(plan_, nullptr);
}

absl::Status GroupEngine::Stop() {
  if (!is_leader()) return absl::FailedPreconditionError("Stop is for the group leader");
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::OkStatus();
  plan_ = StepPlan();
  plan_.command = StepPlan::Command::kStop;
  return LeaderStep(plan_, nullptr);
}

absl::Status GroupEngine::ServeFollower(const std::function<bool()>& should_stop) {
  if (is_leader()) return absl::FailedPreconditionError("ServeFollower is for followers");
  absl::MutexLock lock(&mu_);
  if (!broken_.ok()) return broken_;
  std::string bytes;
  for (int64_t step = 0;; ++step) {
    if (absl::Status s = BroadcastPlan(&bytes); !s.ok()) {
      return Fail(absl::Status(s.code(), absl::StrCat("rank ", group_rank(), " waiting for step ",
                                                      step, ": ", s.message())));
    }
    absl::StatusOr<StepPlan> plan = ParseStepPlan(bytes, limits());
    if (!plan.ok()) return Fail(plan.status());
    if (plan->command == StepPlan::Command::kStop) return absl::OkStatus();
    if (plan->command == StepPlan::Command::kRun) {
      if (absl::Status s = RunPlan(*plan, nullptr, nullptr); !s.ok()) {
        return Fail(absl::Status(
            s.code(), absl::StrCat("rank ", group_rank(), " step ", step, ": ", s.message())));
      }
    }
    if (should_stop && should_stop()) {
      return Fail(absl::CancelledError(absl::StrCat("rank ", group_rank(), " stopped")));
    }
  }
}

absl::StatusOr<GenerationResult> GroupEngine::Generate(
    absl::Span<const int32_t> prompt, const SamplingParams& params,
    const std::function<bool(int32_t token)>& on_token) {
  if (!is_leader()) return absl::FailedPreconditionError("Generate is for the group leader");
  const ModelConfig& c = config();
  RETURN_IF_ERROR(CheckGenerateRequest(c, max_context_tokens(), prompt, params));

  absl::MutexLock lock(&mu_);
  if (!broken_.ok()) return broken_;
  if (stopped_) return absl::FailedPreconditionError("the group engine was stopped");
  // Runs under mu_ (held for the whole request), which plan_ and LeaderStep need.
  auto extend = [this](int64_t seq_id, absl::Span<const int32_t> tokens, int64_t start,
                       float* logits) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    PlanSequenceStep(*blocks_, seq_id, tokens, start, &plan_);
    return LeaderStep(plan_, logits);
  };
  return RunGeneration(*blocks_, *sampler_, next_seq_id_++, c.vocab_size,
                       options_.max_num_batched_tokens, prompt, params, extend, on_token);
}

}  // namespace shardserve
