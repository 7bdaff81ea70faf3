// Why a sequence stopped generating. Shared by the engine, the stop checker and the wire.
#ifndef SHARDSERVE_WORKER_FINISH_REASON_H_
#define SHARDSERVE_WORKER_FINISH_REASON_H_

#include "absl/strings/string_view.h"

namespace shardserve {

enum class FinishReason {
  kNone,    // still running
  kStop,    // EOS, a stop token id or a stop string
  kLength,  // max_tokens (or the model's context) reached
  kAbort,   // cancelled by the client, a deadline, or shutdown
  kError,   // failed inside the engine
};

// The OpenAI/vLLM spelling: "stop", "length", "abort", "error"; "" for kNone.
absl::string_view FinishReasonName(FinishReason reason);

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_FINISH_REASON_H_
