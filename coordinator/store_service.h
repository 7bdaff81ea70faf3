// The gRPC face of the rendezvous store (proto/shardserve/v1/store.proto), hosted by the
// coordinator so that groups can form without an extra service.
//
//   RendezvousStore store;
//   StoreService service(&store);
//   grpc::ServerBuilder builder;
//   builder.RegisterService(&service);
//
// A blocking Get or Wait waits for the shorter of the request's timeout and the RPC's deadline,
// so a client that sets a deadline never leaves a server thread waiting after it has given up.
// Before shutting the server down, Close() the store so in-flight waits end at once.
//
// Thread safety: gRPC calls the handlers on its own threads, concurrently; the store is
// thread-safe and the service holds no other state.
#ifndef SHARDSERVE_COORDINATOR_STORE_SERVICE_H_
#define SHARDSERVE_COORDINATOR_STORE_SERVICE_H_

#include "coordinator/rendezvous_store.h"
#include "proto/shardserve/v1/store.grpc.pb.h"

namespace shardserve {

class StoreService final : public v1::StoreService::Service {
 public:
  // `store` must outlive the service.
  explicit StoreService(RendezvousStore* store);

  grpc::Status Set(grpc::ServerContext* context, const v1::SetRequest* request,
                   v1::SetReply* reply) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetReply* reply) override;
  grpc::Status Wait(grpc::ServerContext* context, const v1::WaitRequest* request,
                    v1::WaitReply* reply) override;
  grpc::Status Add(grpc::ServerContext* context, const v1::AddRequest* request,
                   v1::AddReply* reply) override;

 private:
  RendezvousStore* const store_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_STORE_SERVICE_H_
