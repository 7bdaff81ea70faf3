// A gloo::rendezvous::Store backed by the coordinator's StoreService (proto/.../store.proto), so
// the ranks of a group exchange Gloo addresses (and NCCL unique ids) through the coordinator
// without a shared file system or an extra service.
//
//   auto channel = grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials());
//   GrpcStore store(channel, {.prefix = "group/3/gloo/"});
//   context->connectFullMesh(store, device);           // Gloo calls set/get/wait
//   ASSIGN_OR_RETURN(std::string id, store.Get("nccl_id", absl::Seconds(30)));  // our own calls
//
// Every key is written and read under `Options::prefix`, so groups (and re-formed groups after a
// new plan) never see each other's keys. Every RPC carries a deadline: the wait it asks for plus
// `Options::rpc_timeout` for the round trip.
//
// Errors: the absl methods (Set, Get, Wait, Add) return Status. The gloo::rendezvous::Store
// virtuals (set, get, wait) are called by Gloo, which reports failures by exception, so there --
// and only there -- errors are thrown: gloo::InvalidOperationException for a refused request
// (bad key, oversized value), gloo::IoException for everything else (store unreachable,
// timeout). The message carries the gRPC status.
//
// Thread safety: the methods may be called concurrently (gRPC stubs are thread-safe).
#ifndef SHARDSERVE_WORKER_COMM_GRPC_STORE_H_
#define SHARDSERVE_WORKER_COMM_GRPC_STORE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gloo/rendezvous/store.h"
#include "grpcpp/channel.h"
#include "proto/shardserve/v1/store.grpc.pb.h"

namespace shardserve {

class GrpcStore : public gloo::rendezvous::Store {
 public:
  struct Options {
    // Prepended to every key.
    std::string prefix;
    // Time allowed for one round trip on top of any wait the call asks for.
    absl::Duration rpc_timeout = absl::Seconds(10);
    // How long get() and wait(keys) wait when Gloo passes no timeout (Gloo's own default).
    absl::Duration default_wait = absl::Seconds(30);
  };

  // `channel` is shared with other users of the coordinator connection.
  GrpcStore(std::shared_ptr<grpc::Channel> channel, Options options);

  // Status API for our own rendezvous (NCCL unique ids, barriers by counter).
  absl::Status Set(absl::string_view key, absl::string_view value);
  // Waits up to `wait` for the key; NOT_FOUND at once when `wait` is zero and the key is absent.
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration wait);
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration wait);
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta);

  // gloo::rendezvous::Store. These throw gloo exceptions (see above).
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  const std::string& prefix() const { return options_.prefix; }

 private:
  std::unique_ptr<grpc::ClientContext> MakeContext(absl::Duration wait) const;

  std::unique_ptr<v1::StoreService::Stub> stub_;
  const Options options_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_GRPC_STORE_H_
