#include "worker/timed_communicator.h"

#include <chrono>

namespace shardserve {
namespace {

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

const char* CollectiveKindName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllReduceSum:
      return "all_reduce_sum";
    case CollectiveKind::kAllGather:
      return "all_gather";
    case CollectiveKind::kBroadcast:
      return "broadcast";
    case CollectiveKind::kAllToAll:
      return "all_to_all";
    case CollectiveKind::kSend:
      return "send";
    case CollectiveKind::kRecv:
      return "recv";
    case CollectiveKind::kBarrier:
      return "barrier";
  }
  return "unknown";
}

void TimedCommunicator::Record(CollectiveKind kind, int64_t start_nanos, int64_t bytes) {
  CollectiveTiming& t = timings_[static_cast<int>(kind)];
  t.calls += 1;
  t.bytes += bytes;
  t.seconds += static_cast<double>(NowNanos() - start_nanos) * 1e-9;
}

absl::Status TimedCommunicator::AllReduceSum(const TensorView& data) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->AllReduceSum(data);
  Record(CollectiveKind::kAllReduceSum, start, data.nbytes());
  return s;
}

absl::Status TimedCommunicator::AllGather(const TensorView& send, const TensorView& recv) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->AllGather(send, recv);
  Record(CollectiveKind::kAllGather, start, send.nbytes());
  return s;
}

absl::Status TimedCommunicator::Broadcast(const TensorView& data, int root) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->Broadcast(data, root);
  Record(CollectiveKind::kBroadcast, start, data.nbytes());
  return s;
}

absl::Status TimedCommunicator::AllToAll(const TensorView& send, const TensorView& recv) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->AllToAll(send, recv);
  Record(CollectiveKind::kAllToAll, start, send.nbytes());
  return s;
}

absl::Status TimedCommunicator::Send(const TensorView& data, int dst_rank) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->Send(data, dst_rank);
  Record(CollectiveKind::kSend, start, data.nbytes());
  return s;
}

absl::Status TimedCommunicator::Recv(const TensorView& data, int src_rank) {
  const int64_t start = NowNanos();
  absl::Status s = inner_->Recv(data, src_rank);
  Record(CollectiveKind::kRecv, start, data.nbytes());
  return s;
}

absl::Status TimedCommunicator::Barrier() {
  const int64_t start = NowNanos();
  absl::Status s = inner_->Barrier();
  Record(CollectiveKind::kBarrier, start, 0);
  return s;
}

CollectiveTiming TimedCommunicator::total() const {
  CollectiveTiming sum;
  for (const CollectiveTiming& t : timings_) {
    sum.calls += t.calls;
    sum.bytes += t.bytes;
    sum.seconds += t.seconds;
  }
  return sum;
}

void TimedCommunicator::Reset() { timings_.fill(CollectiveTiming{}); }

}  // namespace shardserve
