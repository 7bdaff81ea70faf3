// Keeps the gRPC health service (grpc.health.v1.Health) truthful: a background thread asks
// `is_serving` every `period` and sets each named service SERVING or NOT_SERVING. The coordinator
// reports SERVING only while some engine group that runs requests is ready, so a load balancer
// or Kubernetes probe stops sending traffic when no group can take it.
//
//   grpc::EnableDefaultHealthCheckService(true);   // before building the server
//   ...
//   HealthReporter health(server->GetHealthCheckService(), {"", "shardserve.v1.InferenceService"},
//                         [&] { return router.HasReadyGroup(); }, absl::Milliseconds(200));
//
// The first status is set before the constructor returns. `is_serving` runs on the reporter's
// thread. `health` must outlive the reporter; destroy the reporter before shutting the server
// down.
#ifndef SHARDSERVE_COORDINATOR_HEALTH_REPORTER_H_
#define SHARDSERVE_COORDINATOR_HEALTH_REPORTER_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/health_check_service_interface.h"

namespace shardserve {

class HealthReporter {
 public:
  HealthReporter(grpc::HealthCheckServiceInterface* health, std::vector<std::string> services,
                 std::function<bool()> is_serving, absl::Duration period);
  // Stops the thread; the last status stays set.
  ~HealthReporter();

  HealthReporter(const HealthReporter&) = delete;
  HealthReporter& operator=(const HealthReporter&) = delete;

 private:
  void Update();

  grpc::HealthCheckServiceInterface* const health_;
  const std::vector<std::string> services_;
  const std::function<bool()> is_serving_;
  const absl::Duration period_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_HEALTH_REPORTER_H_
