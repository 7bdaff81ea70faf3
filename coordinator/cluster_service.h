// The gRPC face of the worker registry (proto/shardserve/v1/cluster.proto): workers Register,
// Heartbeat, long-poll GetAssignment and ReportReady; `shardserve status` reads GetPlan.
//
//   WorkerRegistry registry(std::move(planner), options);
//   ClusterService service(&registry);
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&service);  // beside StoreService, on the same server
//
// GetAssignment waits for the shorter of the request's wait_timeout_ms (capped at one minute)
// and the RPC's deadline, so a worker that gives up never leaves a server thread waiting.
// Before shutting the server down, Close() the registry so in-flight long polls end at once.
//
// Thread safety: gRPC calls the handlers on its own threads, concurrently; the registry is
// thread-safe and the service holds no other state.
#ifndef SHARDSERVE_COORDINATOR_CLUSTER_SERVICE_H_
#define SHARDSERVE_COORDINATOR_CLUSTER_SERVICE_H_

#include "coordinator/worker_registry.h"
#include "proto/shardserve/v1/cluster.grpc.pb.h"

namespace shardserve {

class ClusterService final : public v1::ClusterService::Service {
 public:
  // `registry` must outlive the service.
  explicit ClusterService(WorkerRegistry* registry);

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterReply* reply) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatReply* reply) override;
  grpc::Status GetAssignment(grpc::ServerContext* context, const v1::GetAssignmentRequest* request,
                             v1::GetAssignmentReply* reply) override;
  grpc::Status ReportReady(grpc::ServerContext* context, const v1::ReportReadyRequest* request,
                           v1::ReportReadyReply* reply) override;
  grpc::Status GetPlan(grpc::ServerContext* context, const v1::GetPlanRequest* request,
                       v1::GetPlanReply* reply) override;

 private:
  WorkerRegistry* const registry_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_CLUSTER_SERVICE_H_
