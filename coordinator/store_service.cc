#include "coordinator/store_service.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace shardserve {

namespace {

// The one place where this service's absl::Status becomes a grpc::Status.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// The wait a request asked for, shortened to end before the RPC's deadline so the reply still
// reaches the client as DEADLINE_EXCEEDED with the store's explanation.
absl::Duration WaitBudget(const grpc::ServerContext& context, int64_t timeout_ms) {
  absl::Duration wait = absl::Milliseconds(std::max<int64_t>(0, timeout_ms));
  const auto deadline = context.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    absl::Duration left = absl::FromChrono(deadline) - absl::Now();
    // Leave a little of the deadline for the reply to travel.
    wait = std::min(wait, left - absl::Milliseconds(20));
  }
  // A request that asked to wait keeps a token wait, so running out of deadline reads as
  // DEADLINE_EXCEEDED rather than the NOT_FOUND of a plain lookup.
  const absl::Duration floor = timeout_ms > 0 ? absl::Milliseconds(1) : absl::ZeroDuration();
  return std::max(wait, floor);
}

}  // namespace

StoreService::StoreService(RendezvousStore* store) : store_(store) {}

grpc::Status StoreService::Set(grpc::ServerContext* /*context*/, const v1::SetRequest* request,
                               v1::SetReply* /*reply*/) {
  return ToGrpc(store_->Set(request->key(), request->value()));
}

grpc::Status StoreService::Get(grpc::ServerContext* context, const v1::GetRequest* request,
                               v1::GetReply* reply) {
  absl::StatusOr<std::string> value =
      store_->Get(request->key(), WaitBudget(*context, request->timeout_ms()));
  if (value.ok()) reply->set_value(*std::move(value));
  return ToGrpc(value.status());
}

grpc::Status StoreService::Wait(grpc::ServerContext* context, const v1::WaitRequest* request,
                                v1::WaitReply* /*reply*/) {
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  return ToGrpc(store_->Wait(keys, WaitBudget(*context, request->timeout_ms())));
}

grpc::Status StoreService::Add(grpc::ServerContext* /*context*/, const v1::AddRequest* request,
                               v1::AddReply* reply) {
  absl::StatusOr<int64_t> value = store_->Add(request->key(), request->delta());
  if (value.ok()) reply->set_value(*value);
  return ToGrpc(value.status());
}

}  // namespace shardserve
