#include "coordinator/generate_relay.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

// The leading words of a decode leader's UNAVAILABLE when its prefill group failed.
constexpr absl::string_view kPrefillFailurePrefix = "prefill group ";

// A group's error, with its code, saying which group answered.
absl::Status FromGroup(const grpc::Status& status, const RequestRouter::Route& route) {
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat("engine group ", route.group_id(), " (", route.pool(), " pool, leader ",
                   route.leader_address(), "): ", status.error_message()));
}

}  // namespace

GenerateRelay::GenerateRelay(const Deps& deps, grpc::ServerContext* context,
                             grpc::ServerWriterInterface<v1::GenerateResponse>* writer,
                             ValidatedRequest request, std::string request_id, absl::Time arrival)
    : deps_(deps),
      context_(context),
      writer_(writer),
      request_(std::move(request)),
      request_id_(std::move(request_id)),
      arrival_(arrival),
      group_request_(ToWorkerRequest(request_, request_id_)),
      builder_(deps.model->tokenizer(), request_.params, deps.model->info().eos_token_ids,
               request_id_, static_cast<int32_t>(request_.prompt_token_ids.size())) {}

std::unique_ptr<grpc::ClientContext> GenerateRelay::NewGroupCall() const {
  auto call = std::make_unique<grpc::ClientContext>();
  call->set_deadline(context_->deadline());
  return call;
}

RequestDispatcher::Request GenerateRelay::ToRoute() const {
  return {request_.prompt_token_ids, group_request_.max_tokens()};
}

std::unique_ptr<RequestMetrics::Tracker> GenerateRelay::StartTracker(
    const RequestDispatcher::Assignment& assignment) const {
  if (assignment.disaggregated()) {
    return deps_.metrics->StartDisaggregated(assignment.prefill_group_id(),
                                             assignment.route().group_id(), arrival_);
  }
  return deps_.metrics->Start(assignment.route().pool(), assignment.route().group_id(), arrival_);
}

absl::Status GenerateRelay::FinishWithoutToken(FinishReason reason) {
  const v1::GenerateResponse last = builder_.Finish(reason);
  tracker_->Finished(FinishReasonName(reason), absl::Now(), builder_.prompt_tokens(),
                     builder_.completion_tokens());
  writer_->Write(last);  // a client that left has nothing to read it; nothing else to do
  return absl::OkStatus();
}

absl::Status GenerateRelay::EndWith(absl::string_view reason, absl::Status status) {
  tracker_->Finished(reason, absl::Now(), builder_.prompt_tokens(), builder_.completion_tokens());
  return status;
}

std::optional<RequestDispatcher::Avoid> GenerateRelay::RetryAvoiding(
    const grpc::Status& error, const RequestDispatcher::Assignment& assignment) {
  if (!assignment.disaggregated() || error.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return std::nullopt;
  }
  RequestDispatcher::Avoid avoid;
  if (absl::StartsWith(error.error_message(), kPrefillFailurePrefix)) {
    avoid.prefill_group_id = assignment.prefill_group_id();
  } else {
    avoid.decode_group_id = assignment.route().group_id();
  }
  return avoid;
}

absl::Status GenerateRelay::Run() {
  // Declared before the registration so that it is removed from the table first.
  std::unique_ptr<grpc::ClientContext> group_call = NewGroupCall();
  RETURN_IF_ERROR(deps_.active->Add(request_id_, context_, group_call.get()));
  absl::Cleanup unregister = [&] { deps_.active->Remove(request_id_); };

  absl::StatusOr<RequestDispatcher::Assignment> first = deps_.dispatcher->Pick(ToRoute(), {});
  if (!first.ok()) return first.status();
  std::optional<RequestDispatcher::Assignment> assignment(*std::move(first));
  tracker_ = StartTracker(*assignment);
  tracker_->Routed(absl::Now());

  for (int attempt = 1;; ++attempt) {
    if (deps_.active->IsAborted(request_id_)) return FinishWithoutToken(FinishReason::kAbort);
    grpc::Status group_error;
    std::optional<absl::Status> result = RelayOnce(*assignment, group_call.get(), &group_error);
    if (result.has_value()) return *result;

    // The group failed before sending any token: nothing reached the client.
    absl::Status error = FromGroup(group_error, assignment->route());
    const std::optional<RequestDispatcher::Avoid> avoid =
        attempt == 1 ? RetryAvoiding(group_error, *assignment) : std::nullopt;
    if (!avoid.has_value()) return EndWith("error", std::move(error));
    const bool prefill_failed = avoid->prefill_group_id >= 0;
    const int32_t failed_group =
        prefill_failed ? avoid->prefill_group_id : assignment->route().group_id();
    assignment.reset();  // the failed attempt's slots and reservation, before routing again
    absl::StatusOr<RequestDispatcher::Assignment> retry = deps_.dispatcher->Pick(ToRoute(), *avoid);
    if (!retry.ok()) {
      return EndWith("error",
                     absl::Status(error.code(), absl::StrCat(error.message(), " (not retried: ",
                                                             retry.status().message(), ")")));
    }
    deps_.metrics->Retried(prefill_failed ? "prefill" : "decode", failed_group);
    LOG(WARNING) << "request " << request_id_ << ": " << error.message() << "; retrying on "
                 << "prefill group " << retry->prefill_group_id() << " and decode group "
                 << retry->route().group_id();
    assignment.emplace(*std::move(retry));
    std::unique_ptr<grpc::ClientContext> next_call = NewGroupCall();
    deps_.active->SetGroupCall(request_id_, next_call.get());
    group_call = std::move(next_call);
    tracker_ = StartTracker(*assignment);  // no Routed(): queue time counts the first routing
  }
}

std::optional<absl::Status> GenerateRelay::RelayOnce(RequestDispatcher::Assignment& assignment,
                                                     grpc::ClientContext* group_call,
                                                     grpc::Status* group_error) {
  assignment.PrepareRequest(&group_request_);
  std::unique_ptr<grpc::ClientReaderInterface<v1::GenerateOnGroupResponse>> reader =
      assignment.route().stub()->Generate(group_call, group_request_);
  v1::GenerateOnGroupResponse token;
  absl::Status relay_error;
  bool client_gone = false;
  bool any_token = false;
  while (!builder_.finished() && reader->Read(&token)) {
    if (!any_token) {
      any_token = true;
      assignment.ReleasePrefill();  // the first token ends the prefill
    }
    absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder_.Add(token);
    if (!out.ok()) {
      relay_error = out.status();
      break;
    }
    tracker_->Token(absl::Now(), builder_.prompt_tokens());
    // Cancelling first lets the group free the request's KV blocks while the client reads.
    if (builder_.finished_before_group()) group_call->TryCancel();
    if (out->has_value() && !writer_->Write(**out)) {
      client_gone = true;
      break;
    }
  }

  if (builder_.finished()) {
    if (!builder_.finished_before_group()) {
      // The group sent its last token; its stream ends with the status next.
      while (reader->Read(&token)) {
      }
    }
    reader->Finish();  // everything the client needs has been sent
    return EndWith(FinishReasonName(builder_.finish_reason()), absl::OkStatus());
  }
  if (!relay_error.ok() || client_gone) {
    group_call->TryCancel();
    reader->Finish();
    if (client_gone) return EndWith("abort", absl::CancelledError("the client went away"));
    return EndWith("error", relay_error);
  }
  const grpc::Status status = reader->Finish();
  if (deps_.active->IsAborted(request_id_)) return FinishWithoutToken(FinishReason::kAbort);
  if (context_->IsCancelled()) {
    if (std::chrono::system_clock::now() >= context_->deadline()) {
      return EndWith("abort", absl::DeadlineExceededError("the call's deadline passed"));
    }
    return EndWith("abort", absl::CancelledError("the client cancelled the call"));
  }
  if (!status.ok()) {
    if (!any_token) {
      *group_error = status;
      return std::nullopt;
    }
    return EndWith("error", FromGroup(status, assignment.route()));
  }
  LOG(WARNING) << "request " << request_id_ << ": engine group " << assignment.route().group_id()
               << " ended the stream without a finish reason";
  return FinishWithoutToken(FinishReason::kError);
}

}  // namespace shardserve
