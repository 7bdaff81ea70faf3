// PrefillClient (worker/prefill_client.h) over gRPC: WorkerService.Prefill calls on gRPC's
// callback API, one channel per prefill leader address, kept for the client's lifetime.
//
//   GrpcPrefillClient client(absl::Seconds(60));
//   client.Start("10.0.0.8:7001", request, done);
//
// Every call has a deadline of `timeout`: a prefill group that hangs ends the call with
// DEADLINE_EXCEEDED, one that dies (its leader, or a rank, which fails the group) with
// UNAVAILABLE.
//
// Thread safety: every method may be called from any thread. `done` runs on a gRPC thread. The
// destructor cancels the calls still running and waits for their `done`.
#ifndef SHARDSERVE_WORKER_GRPC_PREFILL_CLIENT_H_
#define SHARDSERVE_WORKER_GRPC_PREFILL_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"
#include "worker/prefill_client.h"

namespace shardserve {

class GrpcPrefillClient : public PrefillClient {
 public:
  explicit GrpcPrefillClient(absl::Duration timeout) : timeout_(timeout) {}
  ~GrpcPrefillClient() override;

  GrpcPrefillClient(const GrpcPrefillClient&) = delete;
  GrpcPrefillClient& operator=(const GrpcPrefillClient&) = delete;

  uint64_t Start(const std::string& address, const v1::PrefillRequest& request, Done done) override;
  void Cancel(uint64_t call_id) override;

 private:
  struct Call {
    grpc::ClientContext context;
    v1::PrefillRequest request;
    v1::PrefillReply reply;
    Done done;
  };

  v1::WorkerService::Stub* StubFor(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<v1::WorkerService::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::unique_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_GRPC_PREFILL_CLIENT_H_
