// WorkerService (proto/shardserve/v1/worker.proto): generation on an engine group, served by
// every worker process and answered by the group's leader once its GroupEngine is ready.
//
//   WorkerServiceImpl service;
//   builder.RegisterService(&service);       // before the engine exists
//   ...
//   service.SetEngine(leader_engine);        // the group is ready
//
// Threads: Generate runs on gRPC's threads; the GroupEngine serialises requests (one at a time),
// and the token callback writes to the stream on the calling gRPC thread.
#ifndef SHARDSERVE_WORKER_WORKER_SERVICE_H_
#define SHARDSERVE_WORKER_WORKER_SERVICE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"
#include "worker/group_engine.h"
#include "worker/sampling_params.h"

namespace shardserve {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // Requests answer FAILED_PRECONDITION with `reason` until SetEngine is called.
  explicit WorkerServiceImpl(std::string reason = "this worker's group is not ready yet")
      : not_serving_(std::move(reason)) {}

  // REQUIRES: engine is a leader and outlives the service's calls (shut the server down first),
  // or nullptr to stop serving with `reason`.
  void SetEngine(GroupEngine* engine, std::string reason = "");

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateOnGroupRequest* request,
                        grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) override;

  // The request's sampling parameters, with the proto's defaults for unset fields.
  static SamplingParams ToSamplingParams(const v1::GenerateOnGroupRequest& request);

 private:
  absl::Mutex mu_;
  GroupEngine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string not_serving_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_WORKER_SERVICE_H_
