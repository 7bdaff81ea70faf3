// The inputs of one decoder step over a batch of sequences, packed token-major.
//
// A step mixes prefill chunks and decode tokens: sequence s contributes the query rows
// [attention.qo_indptr[s], attention.qo_indptr[s+1]) of the packed arrays below.
#ifndef SHARDSERVE_MODEL_FORWARD_BATCH_H_
#define SHARDSERVE_MODEL_FORWARD_BATCH_H_

#include <cstdint>

#include "absl/types/span.h"
#include "kernels/ops.h"

namespace shardserve {

struct ForwardBatch {
  absl::Span<const int32_t> token_ids;     // [num_tokens]
  absl::Span<const int32_t> positions;     // [num_tokens] position of each token in its sequence
  absl::Span<const int64_t> slot_mapping;  // [num_tokens] KV cache slot each token writes
  AttentionBatch attention;                // per-sequence CSR metadata
  absl::Span<const int32_t> logits_rows;   // [num_outputs] token rows whose logits are wanted

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_FORWARD_BATCH_H_
