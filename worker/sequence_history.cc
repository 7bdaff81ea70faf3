#include "worker/sequence_history.h"

namespace shardserve {

SequenceHistory::SequenceHistory(absl::Span<const int32_t> prompt_token_ids)
    : prompt_token_ids_(prompt_token_ids.begin(), prompt_token_ids.end()),
      seen_token_ids_(prompt_token_ids.begin(), prompt_token_ids.end()) {}

void SequenceHistory::AppendOutput(int32_t token_id) {
  output_token_ids_.push_back(token_id);
  seen_token_ids_.insert(token_id);
  ++output_token_counts_[token_id];
}

}  // namespace shardserve
