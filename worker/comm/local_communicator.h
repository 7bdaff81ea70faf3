// An in-process Communicator: the ranks of a group are threads of one process sharing memory.
// Tests use it to run a whole engine group (every tensor- and pipeline-parallel rank) in one
// process, with the same collective semantics as the cross-process transports.
//
//   auto comms = LocalCommunicator::CreateGroup(/*world_size=*/2, absl::Seconds(10));
//   // thread r:
//   RETURN_IF_ERROR(comms[r]->AllReduceSum(partial));
//
// Collectives are rendezvous: every rank posts its buffer, waits for the others, reads theirs
// and waits again before returning, so no buffer is touched after its owner's call returns.
// AllReduceSum adds the ranks' values in rank order on every rank, so all ranks get bitwise
// identical results (the decoder relies on replicated activations staying identical).
// Send copies the data into the destination's mailbox and returns at once; Recv waits for it.
//
// A call that waits longer than the group's timeout fails with DEADLINE_EXCEEDED and breaks the
// whole group: every call of every rank then fails at once with UNAVAILABLE.
//
// Thread safety: each LocalCommunicator is used by one thread (its rank's); the group's shared
// state is guarded by a mutex.
#ifndef SHARDSERVE_WORKER_COMM_LOCAL_COMMUNICATOR_H_
#define SHARDSERVE_WORKER_COMM_LOCAL_COMMUNICATOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kernels/communicator.h"

namespace shardserve {

class LocalCommunicator : public Communicator {
 public:
  // The `world_size` ranks of one group; element r has rank r. REQUIRES: world_size >= 1.
  static std::vector<std::unique_ptr<LocalCommunicator>> CreateGroup(int world_size,
                                                                     absl::Duration timeout);
  ~LocalCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override;
  std::string backend() const override { return "local"; }

  absl::Status AllReduceSum(const TensorView& data) override;
  absl::Status AllGather(const TensorView& send, const TensorView& recv) override;
  absl::Status Broadcast(const TensorView& data, int root) override;
  absl::Status AllToAll(const TensorView& send, const TensorView& recv) override;
  absl::Status Send(const TensorView& data, int dst_rank) override;
  absl::Status Recv(const TensorView& data, int src_rank) override;
  absl::Status Barrier() override;

 private:
  class Group;
  LocalCommunicator(std::shared_ptr<Group> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  std::shared_ptr<Group> group_;
  const int rank_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_LOCAL_COMMUNICATOR_H_
