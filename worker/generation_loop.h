// The generation loop of one prompt, shared by the single-process Engine and the GroupEngine:
// block allocation (with prefix-cache reuse), chunked prefill, sampling and decode, stopping at
// max_tokens or when the caller's callback says so. How a step runs is the caller's: `extend`
// runs the decoder over tokens appended to the sequence (in one process, or broadcast to a
// group) and writes the last token's logits.
#ifndef SHARDSERVE_WORKER_GENERATION_LOOP_H_
#define SHARDSERVE_WORKER_GENERATION_LOOP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/block_allocator.h"
#include "worker/sampler.h"
#include "worker/sampling_params.h"

namespace shardserve {

struct GenerationResult {
  std::vector<int32_t> token_ids;     // generated tokens
  std::vector<SampleResult> samples;  // per token (logprobs when requested)
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;   // prompt tokens whose KV came from the prefix cache
  double prefill_seconds = 0;  // prompt processing until the first token is sampled
  double decode_seconds = 0;   // the remaining tokens
};

// Runs the decoder over `tokens`, already appended to sequence `seq_id`'s blocks, starting at
// `start_position`, and writes the last token's logits into `logits` [vocab_size].
using ExtendFn = std::function<absl::Status(int64_t seq_id, absl::Span<const int32_t> tokens,
                                            int64_t start_position, float* logits)>;

// Allocates `seq_id`'s blocks for `prompt`, prefills the uncached part in chunks of at most
// `max_chunk_tokens`, then samples and decodes until params.max_tokens tokens or until
// `on_token` (called after each sampled token) returns false. Publishes computed blocks to the
// prefix cache and frees the sequence's blocks on return, also on error.
// REQUIRES: the request passed CheckGenerateRequest (worker/engine.h); `seq_id` is new.
absl::StatusOr<GenerationResult> RunGeneration(BlockAllocator& blocks, const Sampler& sampler,
                                               int64_t seq_id, int64_t vocab_size,
                                               int64_t max_chunk_tokens,
                                               absl::Span<const int32_t> prompt,
                                               const SamplingParams& params, const ExtendFn& extend,
                                               const std::function<bool(int32_t)>& on_token);

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_GENERATION_LOOP_H_
