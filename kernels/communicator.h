// Collectives between the ranks of a group: the interface the sharded decoder calls, declared
// here beside the other ops so model/ can use it without depending on any transport.
//
// Implementations live in worker/comm/: Gloo over TCP (CPU, across nodes), a same-host
// shared-memory transport (CPU), NCCL (CUDA, --config=cuda), and an in-process one for tests.
//
//   RETURN_IF_ERROR(comm->AllReduceSum(partial));  // [num_tokens, hidden] F32, in place
//
// Every rank of the group must issue the same collectives in the same order with the same
// shapes (SPMD). A collective that cannot complete (a peer died, hung or never joined) fails
// with DEADLINE_EXCEEDED or UNAVAILABLE within the communicator's timeout; it never blocks
// forever. After a failure the communicator is unusable: every later call fails at once.
//
// Thread safety: one thread issues the collectives of a communicator.
#ifndef SHARDSERVE_KERNELS_COMMUNICATOR_H_
#define SHARDSERVE_KERNELS_COMMUNICATOR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace shardserve {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo", "shm", "nccl", "local": for logs and metrics.
  virtual std::string backend() const = 0;

  // data = sum over ranks of data, elementwise, in place. REQUIRES: packed F32.
  virtual absl::Status AllReduceSum(const TensorView& data) = 0;

  // Concatenates every rank's `send` along the first dimension into `recv`, rank 0 first.
  // REQUIRES: all sends have the same byte size; recv holds world_size times that.
  virtual absl::Status AllGather(const TensorView& send, const TensorView& recv) = 0;

  // Copies root's `data` to every rank (same byte size everywhere).
  virtual absl::Status Broadcast(const TensorView& data, int root) = 0;

  // Block r of `send` (its first dimension split in world_size equal parts) goes to rank r; block
  // r of `recv` comes from rank r.
  virtual absl::Status AllToAll(const TensorView& send, const TensorView& recv) = 0;

  // Point to point, for pipeline stages. Matching Send/Recv pairs must have the same byte size.
  virtual absl::Status Send(const TensorView& data, int dst_rank) = 0;
  virtual absl::Status Recv(const TensorView& data, int src_rank) = 0;

  // Blocks until every rank arrives.
  virtual absl::Status Barrier() = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_COMMUNICATOR_H_
