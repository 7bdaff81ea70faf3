#include "worker/generation_loop.h"

#include <algorithm>
#include <chrono>

#include "common/status_macros.h"
#include "worker/sequence_history.h"

namespace shardserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

absl::StatusOr<GenerationResult> RunGeneration(BlockAllocator& blocks, const Sampler& sampler,
                                               int64_t seq_id, int64_t vocab_size,
                                               int64_t max_chunk_tokens,
                                               absl::Span<const int32_t> prompt,
                                               const SamplingParams& params, const ExtendFn& extend,
                                               const std::function<bool(int32_t)>& on_token) {
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  ASSIGN_OR_RETURN(const int num_cached, blocks.Allocate(seq_id, prompt));
  struct FreeOnExit {
    BlockAllocator& blocks;
    int64_t seq_id;
    ~FreeOnExit() { blocks.Free(seq_id); }
  } free_on_exit{blocks, seq_id};

  GenerationResult result;
  result.prompt_tokens = prompt_len;
  result.cached_tokens = num_cached;
  std::vector<float> logits(vocab_size);
  SequenceHistory history(prompt);
  Rng rng = Sampler::MakeRng(params);

  const double t0 = Now();
  for (int64_t start = num_cached; start < prompt_len; start += max_chunk_tokens) {
    const int64_t n = std::min(max_chunk_tokens, prompt_len - start);
    RETURN_IF_ERROR(extend(seq_id, prompt.subspan(start, n), start, logits.data()));
    blocks.MarkComputed(seq_id, static_cast<int>(start + n));
  }
  double t_first = 0;
  int64_t position = prompt_len;
  while (true) {
    SampleResult s = sampler.Sample(absl::MakeSpan(logits), params, history, rng);
    if (result.token_ids.empty()) t_first = Now();
    const int32_t token = s.token_id;
    result.token_ids.push_back(token);
    result.samples.push_back(std::move(s));
    history.AppendOutput(token);
    if (!on_token(token) || static_cast<int64_t>(result.token_ids.size()) >= params.max_tokens) {
      break;
    }
    RETURN_IF_ERROR(blocks.AppendSlot(seq_id, token));
    RETURN_IF_ERROR(extend(seq_id, absl::MakeConstSpan(&token, 1), position, logits.data()));
    ++position;
    blocks.MarkComputed(seq_id, static_cast<int>(position));
  }
  result.prefill_seconds = t_first - t0;
  result.decode_seconds = Now() - t_first;
  return result;
}

}  // namespace shardserve
