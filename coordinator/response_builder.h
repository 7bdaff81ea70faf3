// Turns an engine group's token stream for one request into the client's GenerateResponses:
// incremental detokenization (UTF-8 safe), stop conditions (StopChecker: stop strings with
// held-back text, EOS, stop ids, max_tokens), logprobs with token strings, and the last
// response's finish_reason, stop_reason and usage.
//
//   ResponseBuilder builder(tokenizer, params, eos_ids, request_id, prompt_tokens);
//   while (!builder.finished() && reader->Read(&token)) {
//     ASSIGN_OR_RETURN(std::optional<v1::GenerateResponse> out, builder.Add(token));
//     if (out.has_value()) writer->Write(*out);
//   }
//   if (!builder.finished()) writer->Write(builder.Finish(FinishReason::kAbort));
//
// A response goes out for each token whose text is released, or that has no text at all (a
// skipped special token); tokens whose text is held back (a possible stop string, an incomplete
// UTF-8 character) ride along with the next response. The concatenated text of all responses
// is Tokenizer::Decode of the tokens (skipping special tokens), cut where a stop string starts.
//
// Not thread-safe: one per request. `tokenizer` must outlive it.
#ifndef SHARDSERVE_COORDINATOR_RESPONSE_BUILDER_H_
#define SHARDSERVE_COORDINATOR_RESPONSE_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/incremental_detokenizer.h"
#include "model/tokenizer.h"
#include "proto/shardserve/v1/inference.pb.h"
#include "proto/shardserve/v1/worker.pb.h"
#include "worker/finish_reason.h"
#include "worker/sampling_params.h"
#include "worker/stop_checker.h"

namespace shardserve {

class ResponseBuilder {
 public:
  // REQUIRES: params.Validate().ok().
  ResponseBuilder(const Tokenizer& tokenizer, const SamplingParams& params,
                  absl::Span<const int32_t> eos_token_ids, std::string request_id,
                  int32_t prompt_tokens);

  // Adds one token from the group. Returns the response to send now, if any; the last one
  // (finished() afterwards) carries finish_reason and usage. INTERNAL for a token id the
  // tokenizer does not know. REQUIRES: !finished().
  absl::StatusOr<std::optional<v1::GenerateResponse>> Add(const v1::GenerateOnGroupResponse& token);

  // Ends the stream for a reason that no token gave (abort, error, or the group finishing where
  // the stop checker did not): releases held-back text and returns the last response.
  // REQUIRES: !finished().
  v1::GenerateResponse Finish(FinishReason reason);

  bool finished() const { return finish_reason_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_reason_; }
  // True when the stop checker ended the request on a token the group did not mark as its last:
  // the group is still generating and its call must be cancelled.
  bool finished_before_group() const { return finished_before_group_; }
  int32_t completion_tokens() const { return completion_tokens_; }
  int32_t prompt_tokens() const { return prompt_tokens_; }

 private:
  // Moves the accumulated tokens and text into a response.
  v1::GenerateResponse TakePending();
  void SetLast(v1::GenerateResponse* response, FinishReason reason);

  const Tokenizer& tokenizer_;
  const int32_t logprobs_;  // -1: none
  const std::string request_id_;
  IncrementalDetokenizer detokenizer_;
  StopChecker stop_checker_;

  std::string fed_text_;  // every delta given to the stop checker, in order
  v1::GenerateResponse pending_;
  FinishReason finish_reason_ = FinishReason::kNone;
  bool finished_before_group_ = false;
  std::string stop_reason_;
  int32_t prompt_tokens_;
  int32_t cached_tokens_ = 0;
  int32_t completion_tokens_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_RESPONSE_BUILDER_H_
