#include "coordinator/inference_service.h"

#include <chrono>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "coordinator/generate_relay.h"
#include "coordinator/request_validation.h"

namespace shardserve {
namespace {

// The one place where this service's absl::Status becomes a grpc::Status.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string RandomHex32() {
  std::random_device device;
  return absl::StrFormat("%08x", device());
}

}  // namespace

InferenceService::InferenceService(const ModelFrontend* model, std::string served_model_name,
                                   RequestDispatcher* dispatcher, RequestMetrics* metrics,
                                   Options options)
    : model_(model),
      served_model_name_(std::move(served_model_name)),
      dispatcher_(dispatcher),
      router_(dispatcher->router()),
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
  std::string request_id = request.request_id().empty() ? NewRequestId() : request.request_id();
  GenerateRelay relay({model_, dispatcher_, metrics_, &active_}, context, writer,
                      std::move(validated), std::move(request_id), arrival);
  return relay.Run();
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
  out.set_ready(RequestRouter::CanServe(plan));

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
