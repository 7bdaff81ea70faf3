#include "coordinator/response_builder.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

FinishReason ReasonFromGroup(const std::string& name) {
  if (name == "stop") return FinishReason::kStop;
  if (name == "length") return FinishReason::kLength;
  if (name == "abort") return FinishReason::kAbort;
  return FinishReason::kError;
}

}  // namespace

ResponseBuilder::ResponseBuilder(const Tokenizer& tokenizer, const SamplingParams& params,
                                 absl::Span<const int32_t> eos_token_ids, std::string request_id,
                                 int32_t prompt_tokens)
    : tokenizer_(tokenizer),
      logprobs_(params.logprobs),
      request_id_(std::move(request_id)),
      detokenizer_(tokenizer, /*skip_special_tokens=*/true),
      stop_checker_(params, eos_token_ids),
      prompt_tokens_(prompt_tokens) {
  pending_.set_request_id(request_id_);
}

absl::StatusOr<std::optional<v1::GenerateResponse>> ResponseBuilder::Add(
    const v1::GenerateOnGroupResponse& token) {
  CHECK(!finished()) << "Add after the request finished";
  const int32_t id = token.token_id();
  absl::StatusOr<std::string> delta = detokenizer_.Add(id);
  if (!delta.ok()) {
    return absl::InternalError(
        absl::StrCat("the engine group sent token id ", id, ", which the tokenizer does not know"));
  }
  if (completion_tokens_ == 0) {
    if (token.prompt_tokens() > 0) prompt_tokens_ = token.prompt_tokens();
    cached_tokens_ = token.cached_tokens();
  }
  ++completion_tokens_;
  pending_.add_token_ids(id);
  if (logprobs_ >= 0) {
    v1::TokenLogprob* logprob = pending_.add_logprobs();
    logprob->set_token_id(id);
    logprob->set_logprob(token.logprob());
    const int num_top = std::min(logprobs_, token.top_logprobs_size());
    for (int i = 0; i < num_top; ++i) {
      const v1::WorkerTopLogprob& in = token.top_logprobs(i);
      v1::TopLogprob* out = logprob->add_top();
      out->set_token_id(in.token_id());
      out->set_logprob(in.logprob());
      // Decode (not the raw piece) so a token holding part of a UTF-8 character still gives a
      // valid proto string.
      absl::StatusOr<std::string> text = tokenizer_.Decode({in.token_id()}, false);
      if (text.ok()) out->set_token(*std::move(text));
    }
  }

  fed_text_ += *delta;
  StopChecker::Result result = stop_checker_.Append(id, *delta);
  pending_.mutable_text()->append(result.text);
  if (result.finish_reason != FinishReason::kNone) {
    if (result.stop_string.has_value()) {
      stop_reason_ = *result.stop_string;
    } else {
      if (result.stop_token_id.has_value()) stop_reason_ = absl::StrCat(*result.stop_token_id);
      // An incomplete character before the last token decodes as U+FFFD, as Decode gives it.
      pending_.mutable_text()->append(detokenizer_.Finish());
    }
    finished_before_group_ = token.finish_reason().empty();
    SetLast(&pending_, result.finish_reason);
    return TakePending();
  }
  if (!token.finish_reason().empty()) return Finish(ReasonFromGroup(token.finish_reason()));

  const bool held_back =
      detokenizer_.pending_bytes() > 0 || fed_text_.size() > stop_checker_.output_text().size();
  if (!result.text.empty() || !held_back) return TakePending();
  return std::nullopt;
}

v1::GenerateResponse ResponseBuilder::Finish(FinishReason reason) {
  CHECK(!finished()) << "Finish after the request finished";
  // Until the checker finishes, the text it released is a prefix of what it was fed.
  pending_.mutable_text()->append(fed_text_.substr(stop_checker_.output_text().size()));
  pending_.mutable_text()->append(detokenizer_.Finish());
  SetLast(&pending_, reason);
  return TakePending();
}

void ResponseBuilder::SetLast(v1::GenerateResponse* response, FinishReason reason) {
  finish_reason_ = reason;
  response->set_finish_reason(std::string(FinishReasonName(reason)));
  response->set_stop_reason(stop_reason_);
  v1::Usage* usage = response->mutable_usage();
  usage->set_prompt_tokens(prompt_tokens_);
  usage->set_completion_tokens(completion_tokens_);
  usage->set_cached_tokens(cached_tokens_);
}

v1::GenerateResponse ResponseBuilder::TakePending() {
  v1::GenerateResponse out = std::move(pending_);
  pending_ = v1::GenerateResponse();
  pending_.set_request_id(request_id_);
  return out;
}

}  // namespace shardserve
