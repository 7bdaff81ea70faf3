#include "worker/worker_service.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/finish_reason.h"

namespace shardserve {
namespace {

// The one place where this service's absl::Status becomes a grpc::Status.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// How often a call waiting for its next token checks whether its client is still there.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

}  // namespace

void WorkerServiceImpl::SetEngine(ServingEngine* engine, std::string reason) {
  absl::MutexLock lock(&mu_);
  engine_ = engine;
  not_serving_ = std::move(reason);
}

ServingEngine* WorkerServiceImpl::engine(grpc::Status* status) {
  absl::MutexLock lock(&mu_);
  if (engine_ == nullptr) *status = ToGrpc(absl::FailedPreconditionError(not_serving_));
  return engine_;
}

SamplingParams WorkerServiceImpl::ToSamplingParams(const v1::GenerateOnGroupRequest& request) {
  SamplingParams p;
  p.max_tokens = request.max_tokens() == 0 ? 16 : request.max_tokens();
  p.min_tokens = request.min_tokens();
  p.temperature = request.temperature();
  p.top_k = request.top_k();
  p.top_p = request.top_p() == 0 ? 1.0f : request.top_p();
  p.min_p = request.min_p();
  p.repetition_penalty = request.repetition_penalty() == 0 ? 1.0f : request.repetition_penalty();
  p.presence_penalty = request.presence_penalty();
  p.frequency_penalty = request.frequency_penalty();
  if (request.has_seed()) p.seed = request.seed();
  p.ignore_eos = request.ignore_eos();
  p.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  p.logprobs = request.has_logprobs() ? request.logprobs() : -1;
  return p;
}

grpc::Status WorkerServiceImpl::Generate(grpc::ServerContext* context,
                                         const v1::GenerateOnGroupRequest* request,
                                         grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) {
  grpc::Status not_ready;
  ServingEngine* serving = engine(&not_ready);
  if (serving == nullptr) return not_ready;
  std::optional<RemotePrefill> remote;
  if (request->has_remote_prefill()) {
    remote = RemotePrefill{request->remote_prefill().leader_address(),
                           request->remote_prefill().group_id(), *request};
  }
  absl::StatusOr<std::shared_ptr<ServingRequest>> submitted = serving->Submit(
      std::vector<int32_t>(request->prompt_token_ids().begin(), request->prompt_token_ids().end()),
      ToSamplingParams(*request), request->request_id(), remote);
  if (!submitted.ok()) return ToGrpc(submitted.status());
  ServingRequest& r = **submitted;
  bool first = true;
  TokenEvent event;
  while (true) {
    const ServingRequest::NextResult next = r.Next(&event, kPollInterval);
    if (next == ServingRequest::kDone) break;
    if (context->IsCancelled()) {
      r.Cancel();
      continue;  // drains until the engine has let go of the request
    }
    if (next == ServingRequest::kTimeout) continue;
    v1::GenerateOnGroupResponse response = ToResponse(event);
    if (first) {
      response.set_prompt_tokens(event.prompt_tokens);
      response.set_cached_tokens(event.cached_tokens);
      first = false;
    }
    if (!writer->Write(response)) r.Cancel();
  }
  if (context->IsCancelled()) {
    return ToGrpc(absl::CancelledError("the client went away or the deadline passed"));
  }
  return ToGrpc(r.status());
}

v1::GenerateOnGroupResponse WorkerServiceImpl::ToResponse(const TokenEvent& event) {
  v1::GenerateOnGroupResponse response;
  response.set_token_id(event.token_id);
  response.set_finish_reason(std::string(FinishReasonName(event.finish)));
  response.set_logprob(event.logprob);
  for (const TokenLogprob& t : event.top_logprobs) {
    v1::WorkerTopLogprob* top = response.add_top_logprobs();
    top->set_token_id(t.token_id);
    top->set_logprob(t.logprob);
  }
  return response;
}

grpc::Status WorkerServiceImpl::Prefill(grpc::ServerContext* context,
                                        const v1::PrefillRequest* request,
                                        v1::PrefillReply* reply) {
  grpc::Status not_ready;
  ServingEngine* serving = engine(&not_ready);
  if (serving == nullptr) return not_ready;
  const v1::GenerateOnGroupRequest& r = request->request();
  KvTarget target;
  target.transfer_id = request->transfer_id();
  target.peers.assign(request->peers().begin(), request->peers().end());
  absl::StatusOr<std::shared_ptr<ServingRequest>> submitted = serving->SubmitPrefill(
      std::vector<int32_t>(r.prompt_token_ids().begin(), r.prompt_token_ids().end()),
      ToSamplingParams(r), r.request_id(), std::move(target));
  if (!submitted.ok()) return ToGrpc(submitted.status());
  ServingRequest& call = **submitted;
  TokenEvent event;
  bool got = false;
  while (true) {
    const ServingRequest::NextResult next = call.Next(&event, kPollInterval);
    if (next == ServingRequest::kDone) break;
    if (context->IsCancelled()) call.Cancel();  // drains until the engine lets go
    if (next != ServingRequest::kEvent) continue;
    got = true;
    v1::GenerateOnGroupResponse* first = reply->mutable_first_token();
    *first = ToResponse(event);
    first->clear_finish_reason();  // the decode group decides when the request ends
    first->set_prompt_tokens(event.prompt_tokens);
    first->set_cached_tokens(event.cached_tokens);
    reply->set_kv_bytes(event.kv_bytes);
    reply->set_kv_seconds(event.kv_seconds);
  }
  if (context->IsCancelled()) {
    return ToGrpc(absl::CancelledError("the decode group went away or the deadline passed"));
  }
  if (!call.status().ok()) return ToGrpc(call.status());
  if (!got) return ToGrpc(absl::InternalError("the prefill ended without a token"));
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::GetLoad(grpc::ServerContext* context,
                                        const v1::GetLoadRequest* request,
                                        v1::GetLoadReply* reply) {
  grpc::Status not_ready;
  ServingEngine* serving = engine(&not_ready);
  if (serving == nullptr) return not_ready;
  const ServingLoad load = serving->Load();
  reply->set_running_requests(load.running);
  reply->set_waiting_requests(load.waiting);
  reply->set_num_kv_blocks(load.num_kv_blocks);
  reply->set_free_kv_blocks(load.free_kv_blocks);
  reply->set_kv_usage(load.kv_usage);
  reply->set_prefix_cache_queried_tokens(load.prefix_cache_queried_tokens);
  reply->set_prefix_cache_hit_tokens(load.prefix_cache_hit_tokens);
  reply->set_preemptions(load.preemptions);
  reply->set_steps(load.steps);
  return grpc::Status::OK;
}

}  // namespace shardserve
