// How a decode group's leader has a prompt prefilled by a prefill group (disaggregated serving):
// one WorkerService.Prefill call per prompt, asynchronous so that the leader's engine thread
// goes on stepping its running batch meanwhile.
//
//   uint64_t call = client->Start(leader_address, request, [](absl::StatusOr<v1::PrefillReply> r) {
//     ...runs once, on a thread of the client's...
//   });
//   client->Cancel(call);  // e.g. the request was cancelled: `done` then runs soon, with an error
//
// The gRPC implementation is GrpcPrefillClient (worker/grpc_prefill_client.h); tests script
// their own.
#ifndef SHARDSERVE_WORKER_PREFILL_CLIENT_H_
#define SHARDSERVE_WORKER_PREFILL_CLIENT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "proto/shardserve/v1/worker.pb.h"

namespace shardserve {

class PrefillClient {
 public:
  using Done = std::function<void(absl::StatusOr<v1::PrefillReply>)>;

  virtual ~PrefillClient() = default;

  // Starts the call to the prefill leader at `address` (host:port). `done` runs exactly once,
  // on a thread of the implementation (never inside Start), with the reply or the call's error;
  // the call is bounded by the implementation's timeout. Returns an id for Cancel.
  virtual uint64_t Start(const std::string& address, const v1::PrefillRequest& request,
                         Done done) = 0;

  // Asks the call to end early; `done` still runs once (CANCELLED unless it had finished). No-op
  // for a call that already ended.
  virtual void Cancel(uint64_t call_id) = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_PREFILL_CLIENT_H_
