#include "coordinator/health_reporter.h"

#include <utility>

#include "glog/logging.h"

namespace shardserve {

HealthReporter::HealthReporter(grpc::HealthCheckServiceInterface* health,
                               std::vector<std::string> services, std::function<bool()> is_serving,
                               absl::Duration period)
    : health_(health),
      services_(std::move(services)),
      is_serving_(std::move(is_serving)),
      period_(period) {
  CHECK(health_ != nullptr) << "the server has no health service; enable it before building";
  Update();
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(period_)) Update();
  });
}

HealthReporter::~HealthReporter() {
  stop_.Notify();
  thread_.join();
}

void HealthReporter::Update() {
  const bool serving = is_serving_();
  for (const std::string& service : services_) health_->SetServingStatus(service, serving);
}

}  // namespace shardserve
