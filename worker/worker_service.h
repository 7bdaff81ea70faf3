// WorkerService (proto/shardserve/v1/worker.proto): generation on an engine group, served by
// every worker process and answered by the group's leader once its ServingEngine runs.
//
//   WorkerServiceImpl service;
//   builder.RegisterService(&service);       // before the engine exists
//   ...
//   service.SetEngine(serving_engine);       // the group is ready
//
// Threads: each Generate call runs on one of gRPC's threads; it submits the request to the
// ServingEngine (which batches all of them on its own thread) and writes the tokens to the
// stream as they come. A call whose client cancels or whose deadline passes cancels its
// request, which frees the request's KV blocks before the engine's next step.
#ifndef SHARDSERVE_WORKER_WORKER_SERVICE_H_
#define SHARDSERVE_WORKER_WORKER_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"
#include "worker/sampling_params.h"
#include "worker/serving_engine.h"

namespace shardserve {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // Requests answer FAILED_PRECONDITION with `reason` until SetEngine is called.
  explicit WorkerServiceImpl(std::string reason = "this worker's group is not ready yet")
      : not_serving_(std::move(reason)) {}

  // REQUIRES: engine outlives the service's calls (shut the server down first), or nullptr to
  // stop serving new requests with `reason`.
  void SetEngine(ServingEngine* engine, std::string reason = "");

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateOnGroupRequest* request,
                        grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) override;

  grpc::Status GetLoad(grpc::ServerContext* context, const v1::GetLoadRequest* request,
                       v1::GetLoadReply* reply) override;

  // A prefill group's part of a disaggregated request (ServingEngine::SubmitPrefill).
  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillReply* reply) override;

  // The request's sampling parameters, with the proto's defaults for unset fields.
  static SamplingParams ToSamplingParams(const v1::GenerateOnGroupRequest& request);

 private:
  // One token's response (finish reason and logprobs; no usage counts).
  static v1::GenerateOnGroupResponse ToResponse(const TokenEvent& event);

  // The engine, or FAILED_PRECONDITION with the reason there is none.
  ServingEngine* engine(grpc::Status* status);

  absl::Mutex mu_;
  ServingEngine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string not_serving_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_WORKER_SERVICE_H_
