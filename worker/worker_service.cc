#include "worker/worker_service.h"

#include <algorithm>
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

}  // namespace

void WorkerServiceImpl::SetEngine(GroupEngine* engine, std::string reason) {
  absl::MutexLock lock(&mu_);
  engine_ = engine;
  not_serving_ = std::move(reason);
}

SamplingParams WorkerServiceImpl::ToSamplingParams(const v1::GenerateOnGroupRequest& request) {
  SamplingParams p;
  p.max_tokens = request.max_tokens() == 0 ? 16 : request.max_tokens();
  p.temperature = request.temperature();
  p.top_k = request.top_k();
  p.top_p = request.top_p() == 0 ? 1.0f : request.top_p();
  if (request.has_seed()) p.seed = request.seed();
  p.ignore_eos = request.ignore_eos();
  p.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  return p;
}

grpc::Status WorkerServiceImpl::Generate(grpc::ServerContext* context,
                                         const v1::GenerateOnGroupRequest* request,
                                         grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) {
  GroupEngine* engine;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
    if (engine == nullptr) return ToGrpc(absl::FailedPreconditionError(not_serving_));
  }
  const SamplingParams params = ToSamplingParams(*request);
  const std::vector<int32_t> prompt(request->prompt_token_ids().begin(),
                                    request->prompt_token_ids().end());
  const std::vector<int64_t>& eos = engine->config().eos_token_ids;
  int32_t generated = 0;
  bool client_gone = false;
  auto on_token = [&](int32_t token) {
    ++generated;
    FinishReason finish = FinishReason::kNone;
    const bool is_stop_id = std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(),
                                      token) != params.stop_token_ids.end();
    const bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
    if (is_stop_id || (is_eos && !params.ignore_eos)) {
      finish = FinishReason::kStop;
    } else if (generated >= params.max_tokens) {
      finish = FinishReason::kLength;
    }
    v1::GenerateOnGroupResponse response;
    response.set_token_id(token);
    response.set_finish_reason(std::string(FinishReasonName(finish)));
    if (context->IsCancelled() || !writer->Write(response)) {
      client_gone = true;
      return false;
    }
    return finish == FinishReason::kNone;
  };
  absl::StatusOr<GenerationResult> result = engine->Generate(prompt, params, on_token);
  if (!result.ok()) return ToGrpc(result.status());
  if (client_gone) return ToGrpc(absl::CancelledError("the client went away"));
  return grpc::Status::OK;
}

}  // namespace shardserve
