#include "worker/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {

absl::Status CheckGenerateRequest(const ModelConfig& c, int64_t context,
                                  absl::Span<const int32_t> prompt, const SamplingParams& params) {
  RETURN_IF_ERROR(params.Validate());
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len + params.max_tokens > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt_len, " tokens) plus max_tokens (", params.max_tokens,
                     ") exceeds the context window of ", context, " tokens",
                     context < c.max_position_embeddings
                         ? absl::StrCat(" (the KV cache's capacity; the model allows ",
                                        c.max_position_embeddings, ")")
                         : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const WeightSource* weights,
                                                       const EngineOptions& options) {
  if (options.block_size <= 0 || options.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError("block_size and max_num_batched_tokens must be positive");
  }
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  ASSIGN_OR_RETURN(e->pool_, ThreadPool::Create(options.num_threads));
  ASSIGN_OR_RETURN(e->decoder_, Decoder::Create(weights));
  const ModelConfig& c = e->decoder_->config();
  KvCacheShape shape;
  shape.num_layers = c.num_layers;
  shape.block_size = options.block_size;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.dtype = options.kv_cache_dtype;
  int64_t kv_bytes = options.kv_cache_bytes;
  if (kv_bytes == 0) {
    kv_bytes = std::min<int64_t>(
        int64_t{4} << 30, (c.max_position_embeddings + shape.block_size) * shape.BytesPerToken());
  }
  shape.num_blocks = kv_bytes / (shape.BytesPerToken() * shape.block_size);
  if (shape.num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes=", kv_bytes,
                                                   " holds less than one block of ",
                                                   shape.block_size, " tokens"));
  }
  ASSIGN_OR_RETURN(e->kv_cache_, KvCache::Create(shape));
  e->blocks_ = std::make_unique<BlockAllocator>(shape.num_blocks, shape.block_size);
  std::vector<int32_t> eos;
  for (int64_t id : c.eos_token_ids) eos.push_back(static_cast<int32_t>(id));
  e->sampler_ = std::make_unique<Sampler>(std::move(eos));
  return e;
}

int64_t Engine::max_context_tokens() const {
  const ModelConfig& c = decoder_->config();
  return std::min(c.max_position_embeddings,
                  kv_cache_->shape().num_blocks * kv_cache_->shape().block_size);
}

absl::Status Engine::Extend(int64_t seq_id, absl::Span<const int32_t> tokens,
                            int64_t start_position, float* logits) {
  PlanSequenceStep(*blocks_, seq_id, tokens, start_position, &step_);
  return decoder_->Forward(OpContext::Cpu(pool_.get()), step_.AsForwardBatch(), kv_cache_->layers(),
                           logits);
}

absl::StatusOr<GenerationResult> Engine::Generate(
    absl::Span<const int32_t> prompt, const SamplingParams& params,
    const std::function<bool(int32_t token)>& on_token) {
  const ModelConfig& c = decoder_->config();
  RETURN_IF_ERROR(CheckGenerateRequest(c, max_context_tokens(), prompt, params));
  auto extend = [this](int64_t seq_id, absl::Span<const int32_t> tokens, int64_t start,
                       float* logits) { return Extend(seq_id, tokens, start, logits); };
  return RunGeneration(*blocks_, *sampler_, next_seq_id_++, c.vocab_size,
                       options_.max_num_batched_tokens, prompt, params, extend, on_token);
}

}  // namespace shardserve
