// InferenceService (proto/shardserve/v1/inference.proto): the cluster's public API, served by
// the coordinator.
//
// Generate: validate the model name (NOT_FOUND), the sampling parameters, the input (text
// tokenized with BOS as the model wants, token ids, or chat rendered with the model's template),
// and prompt + max_tokens against the context window (INVALID_ARGUMENT); then GenerateRelay
// (coordinator/generate_relay.h) registers the request id, routes it through RequestDispatcher
// (colocated, or disaggregated over a prefill and a decode group), relays the group's tokens to
// the client, ends the stream, and retries a disaggregated request once under the rule it states.
//
// GetClusterStatus lists every group of every pool (prefill groups included) with its leader's
// load, asked at the call (each ready leader concurrently, bounded by load_timeout), and
// `ready` when the plan can serve a request (RequestRouter::CanServe).
//
//   InferenceService service(&model, "smollm2", &dispatcher, &metrics, {});
//   builder.RegisterService(&service);
//
// Threads: every RPC runs on a gRPC thread; Generate blocks its thread for the request's life.
// `model`, `dispatcher` (and what it uses) and `metrics` must outlive the service; shut the server
// down before destroying it.
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
#include "coordinator/request_dispatcher.h"
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

  InferenceService(const ModelFrontend* model, std::string served_model_name,
                   RequestDispatcher* dispatcher, RequestMetrics* metrics, Options options);

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
  RequestDispatcher* const dispatcher_;
  RequestRouter* const router_;  // the dispatcher's
  RequestMetrics* const metrics_;
  const Options options_;
  ActiveRequests active_;
  const std::string id_prefix_;  // distinguishes this process's generated ids
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_INFERENCE_SERVICE_H_
