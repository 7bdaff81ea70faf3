// A Communicator over Gloo's TCP transport: CPU tensors, works across hosts.
//
// Every rank connects to every other rank (a full mesh) after exchanging addresses through a
// gloo::rendezvous::Store (the coordinator's gRPC store in a cluster, a FileStore or HashStore in
// tests). Collectives are Gloo's own algorithms; point-to-point uses Gloo's unbound buffers.
//
//   gloo::rendezvous::PrefixStore store("group3/cpu", coordinator_store);
//   ASSIGN_OR_RETURN(std::unique_ptr<GlooCommunicator> comm,
//                    GlooCommunicator::Create(store, rank, world_size, GlooOptions{}));
//   RETURN_IF_ERROR(comm->AllReduceSum(partial));  // [num_tokens, hidden] F32, in place
//
// Failures: connection and every operation are bounded by `GlooOptions::timeout`. A peer that
// never joins makes Create fail with DEADLINE_EXCEEDED; a peer that dies or stops participating
// makes the pending operation fail with UNAVAILABLE (connection lost) or DEADLINE_EXCEEDED
// (nothing arrived in time). The first failure is sticky: every later call returns it at once.
//
// Thread safety: one thread issues the operations of a communicator (Gloo's own I/O thread runs
// underneath). Tensors must be packed, on the CPU, and live until the call returns.
#ifndef SHARDSERVE_WORKER_COMM_GLOO_COMMUNICATOR_H_
#define SHARDSERVE_WORKER_COMM_GLOO_COMMUNICATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/communicator.h"

namespace gloo {
class Context;
namespace rendezvous {
class Store;
}  // namespace rendezvous
}  // namespace gloo

namespace shardserve {

struct GlooOptions {
  // Address this rank listens on and advertises to its peers. Use the host's cluster-facing name
  // or IP across nodes; loopback is enough when all ranks share a host.
  std::string hostname = "127.0.0.1";
  // Network interface to bind instead of `hostname` (e.g. "eth0"); used when non-empty.
  std::string iface;
  // Bound on the rendezvous, on connecting, and on each operation.
  absl::Duration timeout = absl::Seconds(30);
};

class GlooCommunicator : public Communicator {
 public:
  // Joins the group of `world_size` ranks as `rank`. Blocks until every rank has joined, or fails
  // within `options.timeout`. `store` is used only during Create; keys are written without a
  // prefix, so give each group its own store (or a gloo::rendezvous::PrefixStore).
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Create(gloo::rendezvous::Store& store,
                                                                  int rank, int world_size,
                                                                  const GlooOptions& options);
  ~GlooCommunicator() override;

  GlooCommunicator(const GlooCommunicator&) = delete;
  GlooCommunicator& operator=(const GlooCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "gloo"; }

  absl::Status AllReduceSum(const TensorView& data) override;
  absl::Status AllGather(const TensorView& send, const TensorView& recv) override;
  absl::Status Broadcast(const TensorView& data, int root) override;
  absl::Status AllToAll(const TensorView& send, const TensorView& recv) override;
  absl::Status Send(const TensorView& data, int dst_rank) override;
  absl::Status Recv(const TensorView& data, int src_rank) override;
  absl::Status Barrier() override;

 private:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, int rank, int world_size,
                   absl::Duration timeout);

  // Runs `op` unless the communicator already failed; converts Gloo's exceptions into a Status
  // naming `what` and remembers it.
  absl::Status Run(const std::string& what, const std::function<void()>& op);

  std::shared_ptr<gloo::Context> context_;
  const int rank_;
  const int world_size_;
  const absl::Duration timeout_;
  absl::Status failure_;  // sticky: the first error
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_GLOO_COMMUNICATOR_H_
