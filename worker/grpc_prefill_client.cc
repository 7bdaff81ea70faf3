#include "worker/grpc_prefill_client.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shardserve {

GrpcPrefillClient::~GrpcPrefillClient() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, call] : calls_) call->context.TryCancel();
  mu_.Await(absl::Condition(
      +[](absl::flat_hash_map<uint64_t, std::unique_ptr<Call>>* calls) { return calls->empty(); },
      &calls_));
}

v1::WorkerService::Stub* GrpcPrefillClient::StubFor(const std::string& address) {
  std::unique_ptr<v1::WorkerService::Stub>& stub = stubs_[address];
  if (stub == nullptr) {
    stub = v1::WorkerService::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  return stub.get();
}

uint64_t GrpcPrefillClient::Start(const std::string& address, const v1::PrefillRequest& request,
                                  Done done) {
  uint64_t id = 0;
  Call* call = nullptr;
  v1::WorkerService::Stub* stub = nullptr;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    auto owned = std::make_unique<Call>();
    call = owned.get();
    call->request = request;
    call->done = std::move(done);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    calls_.emplace(id, std::move(owned));
    stub = StubFor(address);
  }
  // Outside the lock: the completion takes it.
  stub->async()->Prefill(
      &call->context, &call->request, &call->reply, [this, id, call, address](grpc::Status status) {
        if (status.ok()) {
          call->done(std::move(call->reply));
        } else {
          call->done(absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                  absl::StrCat(address, ": ", status.error_message())));
        }
        // Forgotten only after `done` returned, so the destructor's wait covers it.
        absl::MutexLock lock(&mu_);
        calls_.erase(id);
      });
  return id;
}

void GrpcPrefillClient::Cancel(uint64_t call_id) {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(call_id);
  if (it != calls_.end()) it->second->context.TryCancel();
}

}  // namespace shardserve
