#include "coordinator/request_validation.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {

absl::StatusOr<SamplingParams> SamplingParamsFromProto(const v1::SamplingParams& proto) {
  SamplingParams p;
  p.temperature = proto.temperature();
  p.top_k = proto.top_k();
  p.top_p = proto.top_p() == 0.0f ? 1.0f : proto.top_p();
  p.min_p = proto.min_p();
  p.repetition_penalty = proto.repetition_penalty() == 0.0f ? 1.0f : proto.repetition_penalty();
  p.presence_penalty = proto.presence_penalty();
  p.frequency_penalty = proto.frequency_penalty();
  if (proto.has_seed()) p.seed = proto.seed();
  p.max_tokens = proto.max_tokens() == 0 ? 16 : proto.max_tokens();
  p.min_tokens = proto.min_tokens();
  p.ignore_eos = proto.ignore_eos();
  p.stop.assign(proto.stop().begin(), proto.stop().end());
  p.stop_token_ids.assign(proto.stop_token_ids().begin(), proto.stop_token_ids().end());
  p.include_stop_str_in_output = proto.include_stop_str_in_output();
  p.logprobs = proto.has_logprobs() ? proto.logprobs() : -1;
  RETURN_IF_ERROR(p.Validate());
  return p;
}

std::vector<ChatMessage> ChatMessagesFromProto(const v1::ChatInput& chat) {
  std::vector<ChatMessage> messages;
  messages.reserve(chat.messages_size());
  for (const v1::ChatMessage& m : chat.messages()) messages.push_back({m.role(), m.content()});
  return messages;
}

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const v1::GenerateRequest& request,
                                                         const ModelFrontend& model) {
  ValidatedRequest out;
  ASSIGN_OR_RETURN(out.params, SamplingParamsFromProto(request.params()));
  switch (request.input_case()) {
    case v1::GenerateRequest::kText: {
      ASSIGN_OR_RETURN(out.prompt_token_ids,
                       model.EncodeText(request.text(), /*add_special_tokens=*/true));
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      out.prompt_token_ids.assign(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
      break;
    case v1::GenerateRequest::kChat: {
      ASSIGN_OR_RETURN(std::string prompt, model.RenderChat(ChatMessagesFromProto(request.chat())));
      out.prompt_token_ids = model.EncodeRenderedChat(prompt);
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("the request has no input: set text, token_ids or chat");
  }
  RETURN_IF_ERROR(model.CheckTokenIds(out.prompt_token_ids));
  const int64_t prompt_tokens = static_cast<int64_t>(out.prompt_token_ids.size());
  const int64_t context = model.info().max_model_len;
  if (prompt_tokens + out.params.max_tokens > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", prompt_tokens, " tokens plus max_tokens ", out.params.max_tokens,
                     " exceeds the context window of ", context, " tokens"));
  }
  return out;
}

v1::GenerateOnGroupRequest ToWorkerRequest(const ValidatedRequest& request,
                                           const std::string& request_id) {
  const SamplingParams& p = request.params;
  v1::GenerateOnGroupRequest w;
  w.mutable_prompt_token_ids()->Assign(request.prompt_token_ids.begin(),
                                       request.prompt_token_ids.end());
  w.set_max_tokens(p.max_tokens);
  w.set_temperature(p.temperature);
  w.set_top_k(p.top_k);
  w.set_top_p(p.top_p);
  if (p.seed.has_value()) w.set_seed(*p.seed);
  w.set_ignore_eos(p.ignore_eos);
  w.mutable_stop_token_ids()->Assign(p.stop_token_ids.begin(), p.stop_token_ids.end());
  w.set_min_p(p.min_p);
  w.set_repetition_penalty(p.repetition_penalty);
  w.set_presence_penalty(p.presence_penalty);
  w.set_frequency_penalty(p.frequency_penalty);
  w.set_min_tokens(p.min_tokens);
  if (p.logprobs >= 0) w.set_logprobs(p.logprobs);
  w.set_request_id(request_id);
  return w;
}

}  // namespace shardserve
