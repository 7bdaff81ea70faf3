#include "worker/group_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

// Bounds a plan's size header before anything is allocated for it: a plan carries a few
// integers per token and per block.
constexpr int64_t kMaxPlanBytes = int64_t{1} << 30;

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
  const int threads = options.num_threads > 0 ? options.num_threads : ThreadPool::DefaultThreads();
  e->pool_ = std::make_unique<ThreadPool>(threads);
  ASSIGN_OR_RETURN(e->decoder_, Decoder::Create(weights, shard, comms.decoder));
  const ModelConfig& c = e->decoder_->config();

  // The block count comes from the whole replica's KV per token, identical on every rank.
  KvCacheShape whole;
  whole.num_layers = c.num_layers;
  whole.num_kv_heads = c.num_kv_heads;
  whole.head_dim = c.head_dim;
  whole.block_size = options.block_size;
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

absl::Status GroupEngine::RunPlan(const StepPlan& plan, float* logits) {
  return decoder_->Forward(OpContext::Cpu(pool_.get()), plan.AsForwardBatch(), kv_cache_->layers(),
                           logits);
}

absl::Status GroupEngine::LeaderStep(const StepPlan& plan, float* logits) {
  if (!broken_.ok()) return broken_;
  if (stopped_) return absl::FailedPreconditionError("the group engine was stopped");
  std::string bytes = SerializeStepPlan(plan);
  if (absl::Status s = BroadcastPlan(&bytes); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat("broadcasting a step plan: ", s.message())));
  }
  if (plan.command == StepPlan::Command::kStop) stopped_ = true;
  if (plan.command != StepPlan::Command::kRun) return absl::OkStatus();
  if (absl::Status s = RunPlan(plan, logits); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat("group step on rank 0: ", s.message())));
  }
  return absl::OkStatus();
}

absl::Status GroupEngine::RunStep(const StepPlan& plan, float* logits) {
  if (!is_leader()) return absl::FailedPreconditionError("RunStep is for the group leader");
  if (plan.command != StepPlan::Command::kRun) {
    return absl::InvalidArgumentError("RunStep takes RUN plans; use Ping or Stop");
  }
  RETURN_IF_ERROR(ValidateStepPlan(plan, limits()));
  absl::MutexLock lock(&mu_);
  return LeaderStep(plan, logits);
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
      if (absl::Status s = RunPlan(*plan, nullptr); !s.ok()) {
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
