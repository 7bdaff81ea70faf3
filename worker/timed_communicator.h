// A Communicator decorator that forwards every call to another Communicator and adds up, per
// kind of collective, how many calls were made, how many bytes they carried and how long they
// took (wall time, waiting for peers included). Benchmarks wrap a rank's communicators in it to
// see how much of a step goes to collectives.
//
//   TimedCommunicator timed(shm.get());
//   comms.decoder.tp = &timed;
//   ... run steps ...
//   const CollectiveTiming& ar = timed.timing(CollectiveKind::kAllReduceSum);
//
// The time of a collective includes the time its rank waits for the slowest peer to arrive, so
// on an unbalanced group it measures imbalance as well as transfer.
//
// Thread safety: thread-compatible. The counters are plain fields updated by the thread that
// issues the collectives (one thread per communicator, as for every Communicator); read or
// Reset() them from that thread, or after it has stopped issuing calls.
#ifndef SHARDSERVE_WORKER_TIMED_COMMUNICATOR_H_
#define SHARDSERVE_WORKER_TIMED_COMMUNICATOR_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/communicator.h"
#include "kernels/tensor.h"

namespace shardserve {

enum class CollectiveKind {
  kAllReduceSum = 0,
  kAllGather,
  kBroadcast,
  kAllToAll,
  kSend,
  kRecv,
  kBarrier,
};
inline constexpr int kNumCollectiveKinds = 7;

// "all_reduce_sum", "all_gather", ...: for tables and JSON keys.
const char* CollectiveKindName(CollectiveKind kind);

struct CollectiveTiming {
  int64_t calls = 0;
  int64_t bytes = 0;  // this rank's payload: the data (all-reduce, broadcast) or the send buffer
  double seconds = 0;
};

class TimedCommunicator : public Communicator {
 public:
  // REQUIRES: `inner` outlives this object. Not owned.
  explicit TimedCommunicator(Communicator* inner) : inner_(inner) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  absl::Status AllReduceSum(const TensorView& data) override;
  absl::Status AllGather(const TensorView& send, const TensorView& recv) override;
  absl::Status Broadcast(const TensorView& data, int root) override;
  absl::Status AllToAll(const TensorView& send, const TensorView& recv) override;
  absl::Status Send(const TensorView& data, int dst_rank) override;
  absl::Status Recv(const TensorView& data, int src_rank) override;
  absl::Status Barrier() override;

  const CollectiveTiming& timing(CollectiveKind kind) const {
    return timings_[static_cast<int>(kind)];
  }
  // The sum over every kind.
  CollectiveTiming total() const;
  // Zeroes every counter, e.g. between the prefill and the decode of a request.
  void Reset();

 private:
  // Records one call of `kind` that started at `start_nanos` (a steady clock reading).
  void Record(CollectiveKind kind, int64_t start_nanos, int64_t bytes);

  Communicator* const inner_;
  std::array<CollectiveTiming, kNumCollectiveKinds> timings_{};
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_TIMED_COMMUNICATOR_H_
