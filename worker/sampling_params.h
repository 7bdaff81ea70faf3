// The per-request sampling and stopping knobs, with vLLM's meanings.
//
//   SamplingParams params;
//   params.temperature = 0.7f;
//   params.top_p = 0.9f;
//   params.max_tokens = 128;
//   RETURN_IF_ERROR(params.Validate());
//
// Validate() is the single place that decides whether a request's parameters are acceptable; the
// coordinator calls it before admitting a request, and the Sampler and StopChecker assume it
// passed.
#ifndef SHARDSERVE_WORKER_SAMPLING_PARAMS_H_
#define SHARDSERVE_WORKER_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace shardserve {

struct SamplingParams {
  // Limits enforced by Validate().
  static constexpr int kMaxStopStrings = 16;
  static constexpr int kMaxStopStringBytes = 256;
  static constexpr int kMaxLogprobs = 20;
  // Temperatures below this sample greedily (as vLLM does), since dividing logits by a tiny
  // temperature overflows to inf/NaN without changing the argmax.
  static constexpr float kGreedyTemperature = 1e-5f;

  // >= 0. 0 (or below kGreedyTemperature) means greedy decoding.
  float temperature = 1.0f;
  // 0 or -1 disables; otherwise keep the top_k most likely tokens (>= 1).
  int32_t top_k = 0;
  // In (0, 1]: keep the smallest set of most likely tokens whose probability mass reaches top_p.
  float top_p = 1.0f;
  // In [0, 1]: drop tokens whose probability is below min_p times the most likely token's.
  float min_p = 0.0f;
  // > 0; 1 disables. Applies to every token seen in the prompt or the output: positive logits are
  // divided by it, negative logits multiplied.
  float repetition_penalty = 1.0f;
  // In [-2, 2]. Subtracted once from the logit of every token that appears in the output.
  float presence_penalty = 0.0f;
  // In [-2, 2]. Subtracted from a token's logit once per occurrence in the output.
  float frequency_penalty = 0.0f;
  // Makes sampling reproducible for this request; absent means a fresh random seed.
  std::optional<uint64_t> seed;

  // >= 1. The sequence finishes with reason "length" after this many output tokens.
  int32_t max_tokens = 16;
  // In [0, max_tokens]. Until this many output tokens exist, stop_token_ids (and EOS, unless
  // ignore_eos) cannot be sampled and nothing stops the sequence.
  int32_t min_tokens = 0;
  // Token ids (>= 0) that finish the sequence with reason "stop", besides EOS.
  std::vector<int32_t> stop_token_ids;
  // At most kMaxStopStrings non-empty strings of at most kMaxStopStringBytes bytes. The output
  // text is cut where the first of them appears.
  std::vector<std::string> stop;
  // Keep the matched stop string (or the text of the stop token) at the end of the output.
  bool include_stop_str_in_output = false;
  // Treat EOS as an ordinary token.
  bool ignore_eos = false;
  // -1: no logprobs. 0: the sampled token's logprob only. n in [1, kMaxLogprobs]: also the n most
  // likely tokens' logprobs.
  int32_t logprobs = -1;

  bool greedy() const { return temperature < kGreedyTemperature; }
  bool top_k_enabled() const { return top_k > 0; }

  // Returns INVALID_ARGUMENT naming the first offending field, its value and the allowed range
  // (e.g. "top_p must be in (0, 1], got 1.5"); NaN and infinities are rejected everywhere.
  absl::Status Validate() const;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SAMPLING_PARAMS_H_
