// Picks the next token of one sequence from its logits, applying the request's SamplingParams.
//
// Processing order (vLLM's): repetition penalty, then frequency and presence penalties;
// min_tokens suppression of EOS and stop tokens; temperature; top-k, then top-p over the
// renormalised top-k, then min-p; finally a draw from the renormalised survivors. Greedy
// requests (temperature below SamplingParams::kGreedyTemperature) take the argmax after penalties
// and suppression, the lowest token id winning ties, and ignore truncation.
//
// Ranking convention: tokens are ordered by descending processed logit, lower id first on ties.
// top-k keeps the first k; top-p keeps the shortest prefix whose probability mass reaches top_p
// (a token is kept iff the mass strictly before it is < top_p); min-p keeps tokens with
// prob >= min_p * max prob.
//
// Logprobs follow vLLM's default ("raw_logprobs"): log_softmax of the unmodified model logits,
// so penalties, temperature and truncation never change them.
//
//   Sampler sampler(/*eos_token_ids=*/{2});
//   Rng rng = Sampler::MakeRng(params);        // once per request
//   SampleResult r = sampler.Sample(absl::MakeSpan(logits), params, history, rng);
//
// Thread safety: Sampler is immutable after construction and may be used from many threads;
// each Rng and logits buffer belongs to one caller.
#ifndef SHARDSERVE_WORKER_SAMPLER_H_
#define SHARDSERVE_WORKER_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "worker/sampling_params.h"
#include "worker/sequence_history.h"

namespace shardserve {

// Per-request random engine. mt19937_64's output sequence is fixed by the C++ standard, so a
// seeded request draws the same tokens on every platform (we convert to floats ourselves).
using Rng = std::mt19937_64;

struct TokenLogprob {
  int32_t token_id = -1;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token_id = -1;
  // Raw logprob of token_id; meaningful only when params.logprobs >= 0 (0 otherwise).
  float logprob = 0.0f;
  // The params.logprobs most likely tokens under the raw logits, best first; empty when
  // params.logprobs <= 0.
  std::vector<TokenLogprob> top_logprobs;
};

struct TokenProb {
  int32_t token_id = -1;
  double prob = 0.0;
};

class Sampler {
 public:
  // eos_token_ids: the model's end-of-sequence tokens (several for some chat models).
  explicit Sampler(std::vector<int32_t> eos_token_ids);

  // REQUIRES: params.Validate().ok(); logits.size() >= 1 ([vocab_size] raw logits of one
  // sequence, finite or -inf). Token ids in `history` or params.stop_token_ids outside
  // [0, vocab_size) are ignored.
  // `logits` is scratch: its contents are unspecified on return.
  SampleResult Sample(absl::Span<float> logits, const SamplingParams& params,
                      const SequenceHistory& history, Rng& rng) const;

  // The distribution Sample() draws from: surviving tokens in ranking order with renormalised
  // probabilities (summing to 1). For tests and debugging; same REQUIRES as Sample().
  std::vector<TokenProb> Distribution(absl::Span<float> logits, const SamplingParams& params,
                                      const SequenceHistory& history) const;

  // A seeded engine when params.seed is set, otherwise one seeded from a process-wide random
  // source. Thread-safe.
  static Rng MakeRng(const SamplingParams& params);

  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }

 private:
  std::vector<int32_t> eos_token_ids_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SAMPLER_H_
