// InferenceService (proto/shardserve/v1/inference.proto): the cluster's public API, served by
// the coordinator.
//
// Generate, step by step:
//   1. Validate: the model name (NOT_FOUND), the sampling parameters, the input (text tokenized
//      with BOS as the model wants, token ids, or chat rendered with the model's template), and
//      prompt + max_tokens against the context window (INVALID_ARGUMENT).
//   2. Register the request id (made up when empty; ALREADY_EXISTS for a running duplicate).
//   3. Route: RequestRouter picks a ready group with room (RESOURCE_EXHAUSTED when all are full,
//      UNAVAILABLE when none is ready).
//   4. Relay: open WorkerService.Generate on the group's leader with the client's deadline; each
//      token goes through ResponseBuilder (detokenizer, stop checker) and out to the client.
//      When a stop string ends the request before the group does, the group call is cancelled
//      so the group frees the KV blocks at once.
//   5. End: the last response carries finish_reason, stop_reason and usage. Abort(request_id)
//      ends a stream with finish_reason "abort" and status OK; a client that cancels or whose
//      deadline passes has its group call cancelled within ActiveRequests' poll period, even
//      while the request is still queued on the group. Errors from the group keep their code.
//
//   InferenceService service(&model, "smollm2", &router, &metrics, {});
//   builder.RegisterService(&service);
//
// Threads: every RPC runs on a gRPC thread; Generate blocks its thread for the request's life.
// `model`, `router` and `metrics` must outlive the service; shut the server down before
// destroying it.
#ifndef SHARDSERVE_COORDINATOR_INFERENCE_SERVICE_H_
#define SHARDSERVE_COORDINATOR_INFERENCE_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/active_requests.h"
#include "coordinator/model_frontend.h"
#include "coordinator/request_metrics.h"
#include "coordinator/request_router.h"
#include "proto/shardserve/v1/inference.grpc.pb.h"

namespace shardserve {

class InferenceService final : public v1::InferenceService::Service {
 public:
  struct Options {
    // How often client calls are checked for cancellation (see ActiveRequests).
    absl::Duration cancel_poll_period = absl::Milliseconds(20);
    // Deadline of each leader's GetLoad in GetClusterStatus.
    absl::Duration load_timeout = absl::Seconds(1);
  };

  InferenceService(const ModelFrontend* model, std::string served_model_name, RequestRouter* router,
                   RequestMetrics* metrics, Options options);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetClusterStatus(grpc::ServerContext* context,
                                const v1::GetClusterStatusRequest* request,
                                v1::GetClusterStatusResponse* response) override;

  // Requests registered now (running or being routed).
  int num_active_requests() const { return active_.size(); }

 private:
  absl::Status DoGenerate(grpc::ServerContext* context, const v1::GenerateRequest& request,
                          grpc::ServerWriter<v1::GenerateResponse>* writer);
  absl::StatusOr<v1::TokenizeResponse> DoTokenize(const v1::TokenizeRequest& request) const;
  absl::StatusOr<v1::DetokenizeResponse> DoDetokenize(const v1::DetokenizeRequest& request) const;
  v1::GetClusterStatusResponse DoGetClusterStatus();
  // NOT_FOUND unless `model` is empty or the served model's name.
  absl::Status CheckModel(const std::string& model) const;
  std::string NewRequestId();

  const ModelFrontend* const model_;
  const std::string served_model_name_;
  RequestRouter* const router_;
  RequestMetrics* const metrics_;
  const Options options_;
  ActiveRequests active_;
  const std::string id_prefix_;  // distinguishes this process's generated ids
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_INFERENCE_SERVICE_H_
