#include "coordinator/inference_service.h"

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "coordinator/request_validation.h"
#include "coordinator/response_builder.h"
#include "glog/logging.h"
#include "worker/finish_reason.h"

namespace shardserve {
namespace {

// The one place where this service's absl::Status becomes a grpc::Status.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// A group's error, with its code, saying which group answered.
absl::Status FromGroup(const grpc::Status& status, const RequestRouter::Route& route) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("engine group ", route.group_id(), " (leader ",
                                   route.leader_address(), "): ", status.error_message()));
}

std::string RandomHex32() {
  std::random_device device;
  return absl::StrFormat("%08x", device());
}

}  // namespace

InferenceService::InferenceService(const ModelFrontend* model, std::string served_model_name,
                                   RequestRouter* router, RequestMetrics* metrics, Options options)
    : model_(model),
      served_model_name_(std::move(served_model_name)),
      router_(router),
      metrics_(metrics),
      options_(options),
      active_(options.cancel_poll_period),
      id_prefix_(absl::StrCat("req-", RandomHex32(), "-")) {}

std::string InferenceService::NewRequestId() { return absl::StrCat(id_prefix_, next_id_++); }

absl::Status InferenceService::CheckModel(const std::string& model) const {
  if (model.empty() || model == served_model_name_) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat(
      "model '", model, "' is not served here; this server serves '", served_model_name_, "'"));
}

grpc::Status InferenceService::Generate(grpc::ServerContext* context,
                                        const v1::GenerateRequest* request,
                                        grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return ToGrpc(DoGenerate(context, *request, writer));
}

absl::Status InferenceService::DoGenerate(grpc::ServerContext* context,
                                          const v1::GenerateRequest& request,
                                          grpc::ServerWriter<v1::GenerateResponse>* writer) {
  const absl::Time arrival = absl::Now();
  RETURN_IF_ERROR(CheckModel(request.model()));
  ASSIGN_OR_RETURN(ValidatedRequest validated, ValidateGenerateRequest(request, *model_));
  const std::string request_id =
      request.request_id().empty() ? NewRequestId() : request.request_id();

  // Declared before the registration so that it is removed from the table first.
  grpc::ClientContext group_call;
  group_call.set_deadline(context->deadline());
  RETURN_IF_ERROR(active_.Add(request_id, context, &group_call));
  absl::Cleanup unregister = [&] { active_.Remove(request_id); };

  ASSIGN_OR_RETURN(RequestRouter::Route route, router_->Pick());
  std::unique_ptr<RequestMetrics::Tracker> tracker =
      metrics_->Start(route.pool(), route.group_id(), arrival);
  tracker->Routed(absl::Now());

  ResponseBuilder builder(model_->tokenizer(), validated.params, model_->info().eos_token_ids,
                          request_id, static_cast<int32_t>(validated.prompt_token_ids.size()));
  auto finish_without_token = [&](FinishReason reason) {
    const v1::GenerateResponse last = builder.Finish(reason);
    tracker->Finished(FinishReasonName(reason), absl::Now(), builder.prompt_tokens(),
                      builder.completion_tokens());
    writer->Write(last);  // a client that left has nothing to read it; nothing else to do
    return absl::OkStatus();
  };
  auto end_with = [&](absl::string_view reason, absl::Status status) {
    tracker->Finished(reason, absl::Now(), builder.prompt_tokens(), builder.completion_tokens());
    return status;
  };
  if (active_.IsAborted(request_id)) return finish_without_token(FinishReason::kAbort);

  std::unique_ptr<grpc::ClientReaderInterface<v1::GenerateOnGroupResponse>> reader =
      route.stub()->Generate(&group_call, ToWorkerRequest(validated, request_id));
  v1::GenerateOnGroupResponse token;
  absl::Status relay_error;
  bool client_gone = false;
  while (!builder.finished() && reader->Read(&token)) {
    absl::StatusOr<std::optional<v1::GenerateResponse>> out = builder.Add(token);
    if (!out.ok()) {
      relay_error = out.status();
      break;
    }
    tracker->Token(absl::Now(), builder.prompt_tokens());
    // Cancelling first lets the group free the request's KV blocks while the client reads.
    if (builder.finished_before_group()) group_call.TryCancel();
    if (out->has_value() && !writer->Write(**out)) {
      client_gone = true;
      break;
    }
  }

  if (builder.finished()) {
    if (!builder.finished_before_group()) {
      // The group sent its last token; its stream ends with the status next.
      while (reader->Read(&token)) {
      }
    }
    reader->Finish();  // everything the client needs has been sent
    return end_with(FinishReasonName(builder.finish_reason()), absl::OkStatus());
  }
  if (!relay_error.ok() || client_gone) {
    group_call.TryCancel();
    reader->Finish();
    if (client_gone) return end_with("abort", absl::CancelledError("the client went away"));
    return end_with("error", relay_error);
  }
  const grpc::Status status = reader->Finish();
  if (active_.IsAborted(request_id)) return finish_without_token(FinishReason::kAbort);
  if (context->IsCancelled()) {
    if (std::chrono::system_clock::now() >= context->deadline()) {
      return end_with("abort", absl::DeadlineExceededError("the call's deadline passed"));
    }
    return end_with("abort", absl::CancelledError("the client cancelled the call"));
  }
  if (!status.ok()) return end_with("error", FromGroup(status, route));
  LOG(WARNING) << "request " << request_id << ": engine group " << route.group_id()
               << " ended the stream without a finish reason";
  return finish_without_token(FinishReason::kError);
}

grpc::Status InferenceService::Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                                     v1::AbortResponse* response) {
  response->set_found(active_.Abort(request->request_id()));
  return grpc::Status::OK;
}

absl::StatusOr<v1::TokenizeResponse> InferenceService::DoTokenize(
    const v1::TokenizeRequest& request) const {
  RETURN_IF_ERROR(CheckModel(request.model()));
  v1::TokenizeResponse response;
  response.set_max_model_len(static_cast<int32_t>(model_->info().max_model_len));
  std::vector<int32_t> ids;
  switch (request.input_case()) {
    case v1::TokenizeRequest::kText:
      ids = model_->tokenizer().Encode(
          request.text(), !request.has_add_special_tokens() || request.add_special_tokens());
      break;
    case v1::TokenizeRequest::kChat: {
      ASSIGN_OR_RETURN(std::string prompt,
                       model_->RenderChat(ChatMessagesFromProto(request.chat())));
      ids = model_->EncodeRenderedChat(prompt);
      response.set_prompt(std::move(prompt));
      break;
    }
    case v1::TokenizeRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("the request has no input: set text or chat");
  }
  response.mutable_token_ids()->Assign(ids.begin(), ids.end());
  return response;
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext* context,
                                        const v1::TokenizeRequest* request,
                                        v1::TokenizeResponse* response) {
  absl::StatusOr<v1::TokenizeResponse> result = DoTokenize(*request);
  if (result.ok()) *response = *std::move(result);
  return ToGrpc(result.status());
}

absl::StatusOr<v1::DetokenizeResponse> InferenceService::DoDetokenize(
    const v1::DetokenizeRequest& request) const {
  RETURN_IF_ERROR(CheckModel(request.model()));
  const std::vector<int32_t> ids(request.token_ids().begin(), request.token_ids().end());
  ASSIGN_OR_RETURN(std::string text,
                   model_->tokenizer().Decode(ids, request.skip_special_tokens()));
  v1::DetokenizeResponse response;
  response.set_text(std::move(text));
  return response;
}

grpc::Status InferenceService::Detokenize(grpc::ServerContext* context,
                                          const v1::DetokenizeRequest* request,
                                          v1::DetokenizeResponse* response) {
  absl::StatusOr<v1::DetokenizeResponse> result = DoDetokenize(*request);
  if (result.ok()) *response = *std::move(result);
  return ToGrpc(result.status());
}

grpc::Status InferenceService::ListModels(grpc::ServerContext* context,
                                          const v1::ListModelsRequest* request,
                                          v1::ListModelsResponse* response) {
  const ModelFrontend::Info& info = model_->info();
  v1::ModelCard* card = response->add_models();
  card->set_name(served_model_name_);
  card->set_arch(info.arch);
  card->set_max_model_len(static_cast<int32_t>(info.max_model_len));
  card->set_vocab_size(static_cast<int32_t>(info.vocab_size));
  card->set_fingerprint(info.fingerprint);
  return grpc::Status::OK;
}

grpc::Status InferenceService::GetClusterStatus(grpc::ServerContext* context,
                                                const v1::GetClusterStatusRequest* request,
                                                v1::GetClusterStatusResponse* response) {
  *response = DoGetClusterStatus();
  return grpc::Status::OK;
}

v1::GetClusterStatusResponse InferenceService::DoGetClusterStatus() {
  const v1::GetPlanReply plan = router_->Plan();
  v1::GetClusterStatusResponse out;
  out.set_model(served_model_name_);
  for (const RequestRouter::Candidate& c : RequestRouter::Candidates(plan)) {
    if (c.ready) out.set_ready(true);
  }

  // Each ready group's leader is asked for its load at once; the calls run concurrently, each
  // bounded by load_timeout.
  struct LoadCall {
    v1::GroupStatus* group;
    grpc::ClientContext context;
    v1::GetLoadRequest request;
    v1::GetLoadReply reply;
    grpc::Status status;
    absl::Notification done;
  };
  std::vector<std::unique_ptr<LoadCall>> calls;
  absl::flat_hash_map<std::string, std::pair<int32_t, int32_t>> placed;  // id -> (group, rank)
  absl::flat_hash_map<std::string, std::string> pool_of;                 // id -> group's pool
  for (const v1::EngineGroup& group : plan.plan().groups()) {
    v1::GroupStatus* status = out.add_groups();
    status->set_group_id(group.id());
    status->set_pool(RequestRouter::PoolName(group.role()));
    status->set_ready(group.ready());
    status->set_leader_address(RequestRouter::LeaderAddress(plan, group));
    status->mutable_worker_ids()->CopyFrom(group.worker_ids());
    status->set_error(group.error());
    status->set_tp_size(group.layout().tp_size());
    status->set_pp_size(group.layout().pp_size());
    status->set_ep_size(group.layout().ep_size());
    status->mutable_load()->set_inflight_requests(router_->Inflight(group.id()));
    for (int rank = 0; rank < group.worker_ids_size(); ++rank) {
      placed[group.worker_ids(rank)] = {group.id(), rank};
      pool_of[group.worker_ids(rank)] = status->pool();
    }
    if (!group.ready() || status->leader_address().empty()) continue;
    auto call = std::make_unique<LoadCall>();
    call->group = status;
    call->context.set_deadline(std::chrono::system_clock::now() +
                               absl::ToChronoMilliseconds(options_.load_timeout));
    LoadCall* raw = call.get();
    router_->StubFor(status->leader_address())
        ->async()
        ->GetLoad(&raw->context, &raw->request, &raw->reply, [raw](grpc::Status s) {
          raw->status = std::move(s);
          raw->done.Notify();
        });
    calls.push_back(std::move(call));
  }
  for (const std::unique_ptr<LoadCall>& call : calls) {
    call->done.WaitForNotification();
    v1::GroupLoad* load = call->group->mutable_load();
    if (!call->status.ok()) {
      call->group->set_error(
          absl::StrCat("the leader did not report its load: ", call->status.error_message()));
      continue;
    }
    const v1::GetLoadReply& r = call->reply;
    load->set_running_requests(r.running_requests());
    load->set_waiting_requests(r.waiting_requests());
    load->set_num_kv_blocks(r.num_kv_blocks());
    load->set_free_kv_blocks(r.free_kv_blocks());
    load->set_kv_usage(r.kv_usage());
    load->set_prefix_cache_queried_tokens(r.prefix_cache_queried_tokens());
    load->set_prefix_cache_hit_tokens(r.prefix_cache_hit_tokens());
    load->set_preemptions(r.preemptions());
  }

  for (int i = 0; i < plan.workers_size(); ++i) {
    const v1::WorkerInfo& info = plan.workers(i);
    v1::WorkerState* worker = out.add_workers();
    worker->set_worker_id(info.worker_id());
    worker->set_address(absl::StrCat(info.host(), ":", info.port()));
    worker->set_alive(i < plan.worker_status_size() && plan.worker_status(i).alive());
    worker->set_resident_bytes(info.resident_bytes());
    const auto it = placed.find(info.worker_id());
    if (it != placed.end()) {
      worker->set_group_id(it->second.first);
      worker->set_group_rank(it->second.second);
      worker->set_pool(pool_of[info.worker_id()]);
    } else {
      // A spare: in no group.
      worker->set_group_id(-1);
      worker->set_group_rank(-1);
      worker->set_pool(RequestRouter::PoolName(info.role()));
    }
  }
  if (plan.has_plan()) out.set_placement_text(plan.plan().DebugString());
  return out;
}

}  // namespace shardserve
