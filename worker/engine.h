// One rank's inference engine in a single process: the decoder, its paged KV cache, the block
// bookkeeping and the sampler. `shardserve run` drives it directly; a group leader's scheduler
// drives its Step() with batches of many sequences.
//
//   ASSIGN_OR_RETURN(auto engine, Engine::Create(weights.get(), EngineOptions{}));
//   ASSIGN_OR_RETURN(GenerationResult r,
//                    engine->Generate(prompt_ids, params, [&](int32_t token) { return true; }));
//
// Thread safety: not thread-safe; one caller at a time.
#ifndef SHARDSERVE_WORKER_ENGINE_H_
#define SHARDSERVE_WORKER_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/thread_pool.h"
#include "model/decoder.h"
#include "model/weight_source.h"
#include "worker/block_allocator.h"
#include "worker/generation_loop.h"
#include "worker/kv_cache.h"
#include "worker/sampler.h"
#include "worker/sampling_params.h"
#include "worker/step_plan.h"

namespace shardserve {

struct EngineOptions {
  int num_threads = 0;  // 0: every CPU this process may use; else 1..ThreadPool::MaxThreads()
  // K and V of all layers. 0: room for one sequence of the model's whole context window, at most
  // 4 GiB (pages are only touched when used).
  int64_t kv_cache_bytes = 0;
  // The KV cache's element type, kF16 or kF32. F16 is llama.cpp's default cache type: half the
  // memory per token (twice the blocks for the same kv_cache_bytes) and half the bytes attention
  // reads per step, for a rounding of K and V to 11 significant bits. F32 keeps K and V exact;
  // the llama.cpp reference fixtures under tests/fixtures were made with an F32 cache, so the
  // tests that compare with them ask for it.
  DType kv_cache_dtype = DType::kF16;
  int64_t block_size = 16;               // tokens per KV block
  int64_t max_num_batched_tokens = 512;  // prefill chunk size (tokens per step)
};

// The checks Generate applies before touching the KV cache, shared by every engine that
// generates for one prompt (Engine, GroupEngine) so that they fail alike: INVALID_ARGUMENT for bad
// params, an empty prompt, ids outside the vocabulary, or a prompt plus max_tokens longer than
// `max_context_tokens` (naming the KV cache when it, not the model, is the limit).
absl::Status CheckGenerateRequest(const ModelConfig& config, int64_t max_context_tokens,
                                  absl::Span<const int32_t> prompt, const SamplingParams& params);

class Engine {
 public:
  // REQUIRES: weights outlives the engine.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const WeightSource* weights,
                                                        const EngineOptions& options);

  const ModelConfig& config() const { return decoder_->config(); }
  const Decoder& decoder() const { return *decoder_; }
  int num_threads() const { return pool_->num_threads(); }
  int64_t max_context_tokens() const;
  // Blocks in the KV cache: kv_cache_bytes over the bytes of a block in kv_cache_dtype.
  int64_t num_kv_blocks() const { return kv_cache_->shape().num_blocks; }

  // Generates for one prompt: chunked prefill, then decode until params.max_tokens tokens or
  // until `on_token` (called after each token is sampled) returns false. The caller applies
  // stop conditions (EOS, stop ids, stop strings) in `on_token`. Frees the KV blocks on return.
  // INVALID_ARGUMENT for an empty prompt, ids outside the vocabulary, bad params, or a prompt
  // plus max_tokens longer than the context window; RESOURCE_EXHAUSTED when the KV cache is
  // too small.
  absl::StatusOr<GenerationResult> Generate(absl::Span<const int32_t> prompt,
                                            const SamplingParams& params,
                                            const std::function<bool(int32_t token)>& on_token);

  // Runs the decoder over `tokens` appended to sequence `seq_id` (whose KV blocks must already
  // cover them) and writes the last token's logits into `logits` [vocab_size].
  absl::Status Extend(int64_t seq_id, absl::Span<const int32_t> tokens, int64_t start_position,
                      float* logits);

 private:
  Engine() = default;

  EngineOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<KvCache> kv_cache_;
  std::unique_ptr<BlockAllocator> blocks_;
  std::unique_ptr<Sampler> sampler_;
  int64_t next_seq_id_ = 1;

  StepPlan step_;  // the current step's batch metadata, reused across steps
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_ENGINE_H_
