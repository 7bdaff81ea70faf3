// The tokens a sequence has seen, kept in the form the Sampler's penalties need: the distinct
// tokens of prompt and output (repetition penalty) and per-token output counts (presence and
// frequency penalties). Maintained incrementally so a decode step costs O(1) per new token rather
// than a pass over the whole history.
//
//   SequenceHistory history(prompt_token_ids);
//   SampleResult r = sampler.Sample(logits, params, history, rng);
//   history.AppendOutput(r.token_id);
//
// Thread-compatible.
#ifndef SHARDSERVE_WORKER_SEQUENCE_HISTORY_H_
#define SHARDSERVE_WORKER_SEQUENCE_HISTORY_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/types/span.h"

namespace shardserve {

class SequenceHistory {
 public:
  SequenceHistory() = default;
  explicit SequenceHistory(absl::Span<const int32_t> prompt_token_ids);

  void AppendOutput(int32_t token_id);

  absl::Span<const int32_t> prompt_token_ids() const { return prompt_token_ids_; }
  absl::Span<const int32_t> output_token_ids() const { return output_token_ids_; }
  int num_output_tokens() const { return static_cast<int>(output_token_ids_.size()); }

  // Every distinct token of the prompt and the output.
  const absl::flat_hash_set<int32_t>& seen_token_ids() const { return seen_token_ids_; }
  // token id -> occurrences in the output (absent means zero).
  const absl::flat_hash_map<int32_t, int32_t>& output_token_counts() const {
    return output_token_counts_;
  }

 private:
  std::vector<int32_t> prompt_token_ids_;
  std::vector<int32_t> output_token_ids_;
  absl::flat_hash_set<int32_t> seen_token_ids_;
  absl::flat_hash_map<int32_t, int32_t> output_token_counts_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SEQUENCE_HISTORY_H_
