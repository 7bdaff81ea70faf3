// A Communicator for ranks on one host: collectives through a POSIX shared-memory segment.
//
// Gloo's TCP all-reduce of 8 KB between two local ranks costs ~100+ us, which a decode step with
// 60 all-reduces cannot afford; here an all-reduce of a few KB is a copy into the rank's slot, a
// flag, and a sum over the others' slots: a few microseconds.
//
//   // On every rank of the group (same group_id and world_size everywhere):
//   ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> comm,
//                    ShmCommunicator::Create("g3-tp", rank, world_size, ShmOptions{}));
//   RETURN_IF_ERROR(comm->AllReduceSum(partial));  // [num_tokens, hidden] F32, in place
//
// Rendezvous: rank 0 creates the segment named after `group_id` (replacing a leftover of a
// crashed run); the others wait for it to appear. Create returns once every rank has joined;
// rank 0 then removes the name, so nothing outlives the group in /dev/shm, and removes it too
// if setup fails.
//
// Protocol: each collective moves its data in rounds of at most `slot_bytes` per rank. In a round
// every rank copies its chunk into its own slot, publishes the round number, and waits for every
// other rank's number before reading their slots. Slots alternate between two buffers by round
// parity, so a rank writing round k+1 never overwrites data of round k that a peer may still be
// reading. AllReduceSum adds slot 0 + slot 1 + ... in rank order on every rank, so every rank
// ends with bit-identical results. Send/Recv use a mailbox per (src, dst) pair.
//
// Waiting: spin briefly (peers are usually microseconds apart; not at all when the group has
// more ranks than the host has cores), then sched_yield, then futex waits, so an idle rank does
// not burn a core. Failures: a wait in which the peer makes no
// progress for `timeout` fails with DEADLINE_EXCEEDED; a peer whose process has exited is noticed
// within a few milliseconds of the wait going slow and fails it with UNAVAILABLE. A failing rank
// marks the whole group failed so its peers give up promptly too. The first failure is sticky.
//
// Thread safety: one thread issues the operations of a communicator. Tensors must be packed, on
// the CPU, and live until the call returns. REQUIRES: the ranks share a PID namespace (processes
// on one host or in one pod): the rendezvous and the liveness checks identify ranks by pid.
#ifndef SHARDSERVE_WORKER_COMM_SHM_COMMUNICATOR_H_
#define SHARDSERVE_WORKER_COMM_SHM_COMMUNICATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/communicator.h"
#include "worker/comm/shm_layout.h"
#include "worker/comm/shm_segment.h"

namespace shardserve {

struct ShmOptions {
  // Longest a rank waits for a peer's next step, and for the rendezvous.
  absl::Duration timeout = absl::Seconds(30);
  // Bytes each rank moves per round (per buffer); larger messages are chunked. Multiple of 64.
  int64_t slot_bytes = 256 << 10;
  // Mailbox bytes per (src, dst) pair for Send/Recv. Multiple of 64.
  int64_t p2p_bytes = 64 << 10;
};

class ShmCommunicator : public Communicator {
 public:
  // Joins the group `group_id` ([A-Za-z0-9._-], at most 200 characters; unique among the groups
  // running on the host) as `rank` of `world_size` (at most 64).
  static absl::StatusOr<std::unique_ptr<ShmCommunicator>> Create(const std::string& group_id,
                                                                 int rank, int world_size,
                                                                 const ShmOptions& options);
  ~ShmCommunicator() override;

  ShmCommunicator(const ShmCommunicator&) = delete;
  ShmCommunicator& operator=(const ShmCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "shm"; }

  absl::Status AllReduceSum(const TensorView& data) override;
  absl::Status AllGather(const TensorView& send, const TensorView& recv) override;
  absl::Status Broadcast(const TensorView& data, int root) override;
  absl::Status AllToAll(const TensorView& send, const TensorView& recv) override;
  absl::Status Send(const TensorView& data, int dst_rank) override;
  absl::Status Recv(const TensorView& data, int src_rank) override;
  absl::Status Barrier() override;

 private:
  ShmCommunicator(std::unique_ptr<ShmSegment> segment, int rank, int world_size,
                  const ShmOptions& options);

  // Rendezvous after mapping: claims this rank's place and waits for all ranks to join.
  absl::Status Join();

  // One collective round: `fill` writes this rank's chunk into its slot (may be empty), then the
  // round is published and every rank's arrival awaited; the caller then reads the slots.
  absl::Status Round(const char* op, const std::function<void(uint8_t* my_slot)>& fill);
  uint8_t* Slot(int rank) const;  // this round's slot of `rank`

  // Waits until `word` (a counter written by `peer`) reaches `target`, in wrap-around order.
  // Fails on timeout, on the peer's death, or when the group is marked failed.
  absl::Status WaitAtLeast(const std::atomic<uint32_t>& word, uint32_t target, int peer,
                           const char* op);
  void Publish(std::atomic<uint32_t>& word, uint32_t value);
  bool PeerAlive(int peer) const;
  // Records the first failure, marks the group failed, returns it.
  absl::Status Fail(absl::Status status);

  ShmChannel& Channel(int src, int dst) const;
  uint8_t* Mailbox(int src, int dst) const;

  std::unique_ptr<ShmSegment> segment_;
  ShmHeader* header_;
  ShmLayout layout_;
  const int rank_;
  const int world_size_;
  const absl::Duration timeout_;
  const int64_t spin_nanos_;  // how long a wait spins before yielding
  uint32_t round_ = 0;        // the last round this rank published
  absl::Status failure_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_SHM_COMMUNICATOR_H_
