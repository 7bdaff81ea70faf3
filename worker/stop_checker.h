// Decides, token by token, whether a sequence has finished, and which part of its decoded text
// may be streamed to the client.
//
// Rules, checked in this order for each new token:
//   1. While the sequence has at most min_tokens output tokens, nothing stops it (the Sampler
//      keeps EOS and stop tokens from being sampled then) and stop strings are not searched.
//   2. EOS (unless ignore_eos) or a stop_token_id: finish "stop". The token's own text is dropped
//      unless include_stop_str_in_output.
//   3. A stop string ending inside the new text (it may start in earlier, held-back text): finish
//      "stop" and cut the output where the stop string starts (or after it, with
//      include_stop_str_in_output). When several match, the one starting first wins, then the
//      one listed first.
//   4. max_tokens output tokens: finish "length".
// A stop string therefore wins over "length" on the same token, as in vLLM.
//
// Streaming: text that could be the beginning of a stop string is held back until it is known
// not to be one, so a client never sees part of a stop string. Held-back text is released when
// the sequence finishes for another reason.
//
//   StopChecker checker(params, /*eos_token_ids=*/{2});
//   for each sampled token:
//     StopChecker::Result r = checker.Append(token_id, detokenized_delta);
//     Send(r.text);
//     if (r.finish_reason != FinishReason::kNone) break;
//
// Text deltas must be whole UTF-8 characters (the incremental detokenizer's job); matching is
// bytewise, so cuts then fall on character boundaries. Thread-compatible.
#ifndef SHARDSERVE_WORKER_STOP_CHECKER_H_
#define SHARDSERVE_WORKER_STOP_CHECKER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "worker/finish_reason.h"
#include "worker/sampling_params.h"

namespace shardserve {

class StopChecker {
 public:
  struct Result {
    FinishReason finish_reason = FinishReason::kNone;
    // Newly releasable output text; possibly empty while a stop-string prefix is held back.
    std::string text;
    // vLLM's stop_reason: the stop token id or the stop string that ended the sequence; both
    // empty when it ended by EOS or for another reason.
    std::optional<int32_t> stop_token_id;
    std::optional<std::string> stop_string;
  };

  // REQUIRES: params.Validate().ok(). Copies what it needs from `params`.
  StopChecker(const SamplingParams& params, absl::Span<const int32_t> eos_token_ids);

  // Records one generated token and the text it decoded to (empty while the detokenizer waits
  // for the rest of a character). REQUIRES: !finished().
  Result Append(int32_t token_id, absl::string_view text_delta);

  bool finished() const { return finish_reason_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_reason_; }
  int num_output_tokens() const { return num_output_tokens_; }
  // All text released so far; the final output text once finished().
  const std::string& output_text() const { return released_; }

 private:
  // Moves the first `n` pending bytes to the released text and returns them.
  std::string Release(size_t n);
  Result Finish(FinishReason reason, size_t release_bytes);
  // Length of the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t HeldBackBytes() const;

  const int32_t max_tokens_;
  const int32_t min_tokens_;
  const bool ignore_eos_;
  const bool include_stop_str_;
  const std::vector<int32_t> eos_token_ids_;
  const std::vector<int32_t> stop_token_ids_;
  const std::vector<std::string> stop_strings_;

  int num_output_tokens_ = 0;
  FinishReason finish_reason_ = FinishReason::kNone;
  std::string released_;
  std::string pending_;  // decoded but not yet released
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_STOP_CHECKER_H_
