// Checks a public GenerateRequest against the served model and turns it into what an engine
// group runs: prompt token ids and validated SamplingParams. Everything a client can get wrong is
// refused here with INVALID_ARGUMENT, before any group is involved.
//
//   ASSIGN_OR_RETURN(ValidatedRequest v, ValidateGenerateRequest(request, model));
//   v1::GenerateOnGroupRequest on_group = ToWorkerRequest(v, request_id);
#ifndef SHARDSERVE_COORDINATOR_REQUEST_VALIDATION_H_
#define SHARDSERVE_COORDINATOR_REQUEST_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/model_frontend.h"
#include "proto/shardserve/v1/inference.pb.h"
#include "proto/shardserve/v1/worker.pb.h"
#include "worker/sampling_params.h"

namespace shardserve {

struct ValidatedRequest {
  std::vector<int32_t> prompt_token_ids;  // [num_prompt_tokens], each in [0, vocab_size)
  SamplingParams params;                  // Validate() passed
};

// The proto's zero values become the documented defaults (top_p 0 -> 1, repetition_penalty
// 0 -> 1, max_tokens 0 -> 16, absent logprobs -> -1); then SamplingParams::Validate().
absl::StatusOr<SamplingParams> SamplingParamsFromProto(const v1::SamplingParams& proto);

// The chat input as the template's messages.
std::vector<ChatMessage> ChatMessagesFromProto(const v1::ChatInput& chat);

// INVALID_ARGUMENT for bad parameters, an absent or empty input, ids outside the vocabulary, or
// a prompt plus max_tokens over the context window (stating both numbers). Does not check the
// model name.
absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                         const ModelFrontend& model);

// The request an engine group's leader runs. Stop strings stay on the coordinator.
v1::GenerateOnGroupRequest ToWorkerRequest(const ValidatedRequest& request,
                                           const std::string& request_id);

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_REQUEST_VALIDATION_H_
