#include "coordinator/cluster_service.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shardserve {

namespace {

// Longest long poll one GetAssignment may ask for.
constexpr absl::Duration kMaxAssignmentWait = absl::Minutes(1);

// The one place where this service's absl::Status becomes a grpc::Status.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

template <typename Reply>
grpc::Status Answer(absl::StatusOr<Reply> result, Reply* reply) {
  if (result.ok()) *reply = *std::move(result);
  return ToGrpc(result.status());
}

// The wait a request asked for, ended a little before the RPC's deadline so the reply still
// reaches the client with the registry's explanation.
absl::Duration WaitBudget(const grpc::ServerContext& context, int64_t timeout_ms) {
  absl::Duration wait =
      std::min(absl::Milliseconds(std::max<int64_t>(0, timeout_ms)), kMaxAssignmentWait);
  const auto deadline = context.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    wait = std::min(wait, absl::FromChrono(deadline) - absl::Now() - absl::Milliseconds(20));
  }
  return std::max(wait, absl::ZeroDuration());
}

}  // namespace

ClusterService::ClusterService(WorkerRegistry* registry) : registry_(registry) {}

grpc::Status ClusterService::Register(grpc::ServerContext* /*context*/,
                                      const v1::RegisterRequest* request,
                                      v1::RegisterReply* reply) {
  return Answer(registry_->Register(request->worker()), reply);
}

grpc::Status ClusterService::Heartbeat(grpc::ServerContext* /*context*/,
                                       const v1::HeartbeatRequest* request,
                                       v1::HeartbeatReply* reply) {
  return Answer(registry_->Heartbeat(*request), reply);
}

grpc::Status ClusterService::GetAssignment(grpc::ServerContext* context,
                                           const v1::GetAssignmentRequest* request,
                                           v1::GetAssignmentReply* reply) {
  return Answer(registry_->GetAssignment(request->worker_id(),
                                         WaitBudget(*context, request->wait_timeout_ms())),
                reply);
}

grpc::Status ClusterService::ReportReady(grpc::ServerContext* /*context*/,
                                         const v1::ReportReadyRequest* request,
                                         v1::ReportReadyReply* reply) {
  return Answer(registry_->ReportReady(*request), reply);
}

grpc::Status ClusterService::GetPlan(grpc::ServerContext* /*context*/,
                                     const v1::GetPlanRequest* /*request*/,
                                     v1::GetPlanReply* reply) {
  *reply = registry_->GetPlan();
  return grpc::Status::OK;
}

}  // namespace shardserve
