#include "worker/comm/local_communicator.h"

#include <cstring>
#include <deque>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace shardserve {
namespace {

enum class Op { kAllReduceSum, kAllGather, kBroadcast, kAllToAll, kBarrier };

const char* OpName(Op op) {
  switch (op) {
    case Op::kAllReduceSum:
      return "AllReduceSum";
    case Op::kAllGather:
      return "AllGather";
    case Op::kBroadcast:
      return "Broadcast";
    case Op::kAllToAll:
      return "AllToAll";
    case Op::kBarrier:
      return "Barrier";
  }
  return "?";
}

absl::Status CheckPackedCpu(const TensorView& t, const char* op) {
  if (t.device.type != DeviceType::kCpu || !t.is_packed() || (t.nbytes() > 0 && !t.data)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": tensors must be packed CPU tensors, got ", t.ShapeString()));
  }
  return absl::OkStatus();
}

}  // namespace

// What every rank shares: the posted buffers of the collective in flight, a generation-counted
// barrier, and the point-to-point mailboxes.
class LocalCommunicator::Group {
 public:
  Group(int world_size, absl::Duration timeout)
      : world_size_(world_size), timeout_(timeout), posts_(world_size) {}

  int world_size() const { return world_size_; }

  struct Post {
    Op op = Op::kBarrier;
    const TensorView* send = nullptr;
    const TensorView* recv = nullptr;
    int root = 0;
  };

  // Posts this rank's buffers, waits for every rank, runs `work` on the posts (other ranks'
  // buffers stay valid while it runs), then waits for every rank to finish its work.
  template <typename Work>
  absl::Status Collective(int rank, const Post& post, Work work) {
    {
      absl::MutexLock lock(&mu_);
      if (!broken_.ok()) return broken_;
      posts_[rank] = post;
      if (absl::Status s = ArriveLocked(OpName(post.op)); !s.ok()) return s;
      for (int r = 0; r < world_size_; ++r) {
        const Post& p = posts_[r];
        const bool same_size = (p.send == nullptr) == (post.send == nullptr) &&
                               (p.send == nullptr || p.send->nbytes() == post.send->nbytes());
        if (p.op != post.op || p.root != post.root || !same_size) {
          broken_ = absl::FailedPreconditionError(
              absl::StrCat(OpName(post.op), " on rank ", rank, " met ", OpName(p.op),
                           " of a different size or root on rank ", r));
          cv_.SignalAll();
          return broken_;
        }
      }
    }
    if (post.op == Op::kBarrier) return absl::OkStatus();
    work(posts_);  // read-only on the shared posts; writes only this rank's own buffers
    absl::MutexLock lock(&mu_);
    return ArriveLocked(OpName(post.op));
  }

  absl::Status Send(int src, int dst, const TensorView& data) {
    const uint8_t* p = static_cast<const uint8_t*>(data.data);
    absl::MutexLock lock(&mu_);
    if (!broken_.ok()) return broken_;
    mailboxes_[{src, dst}].emplace_back(p, p + data.nbytes());
    cv_.SignalAll();
    return absl::OkStatus();
  }

  absl::Status Recv(int src, int dst, const TensorView& data) {
    absl::MutexLock lock(&mu_);
    std::deque<std::vector<uint8_t>>& box = mailboxes_[{src, dst}];
    const absl::Time deadline = absl::Now() + timeout_;
    while (broken_.ok() && box.empty()) {
      if (cv_.WaitWithDeadline(&mu_, deadline) && box.empty() && broken_.ok()) {
        return BreakLocked(absl::StrCat("Recv on rank ", dst, " from rank ", src));
      }
    }
    if (!broken_.ok()) return broken_;
    std::vector<uint8_t> msg = std::move(box.front());
    box.pop_front();
    if (static_cast<int64_t>(msg.size()) != data.nbytes()) {
      broken_ = absl::FailedPreconditionError(absl::StrCat("Recv on rank ", dst, " expected ",
                                                           data.nbytes(), " bytes, rank ", src,
                                                           " sent ", msg.size()));
      cv_.SignalAll();
      return broken_;
    }
    if (!msg.empty()) std::memcpy(data.data, msg.data(), msg.size());
    return absl::OkStatus();
  }

 private:
  absl::Status BreakLocked(const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    broken_ = absl::UnavailableError(absl::StrCat(
        "local communicator broken: ", what, " timed out after ", absl::FormatDuration(timeout_)));
    cv_.SignalAll();
    return absl::DeadlineExceededError(absl::StrCat(
        what, " timed out after ", absl::FormatDuration(timeout_), " waiting for the other ranks"));
  }

  // Generation-counted barrier over all ranks.
  absl::Status ArriveLocked(const char* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t gen = generation_;
    if (++arrived_ == world_size_) {
      arrived_ = 0;
      ++generation_;
      cv_.SignalAll();
      return absl::OkStatus();
    }
    const absl::Time deadline = absl::Now() + timeout_;
    while (broken_.ok() && generation_ == gen) {
      if (cv_.WaitWithDeadline(&mu_, deadline) && generation_ == gen && broken_.ok()) {
        return BreakLocked(op);
      }
    }
    return generation_ != gen ? absl::OkStatus() : broken_;
  }

  const int world_size_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Written by each rank for its own slot before the first barrier of a collective and read by
  // all between the two barriers, so the mutex is not held while reading.
  std::vector<Post> posts_;
  std::map<std::pair<int, int>, std::deque<std::vector<uint8_t>>> mailboxes_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::unique_ptr<LocalCommunicator>> LocalCommunicator::CreateGroup(
    int world_size, absl::Duration timeout) {
  auto group = std::make_shared<Group>(world_size, timeout);
  std::vector<std::unique_ptr<LocalCommunicator>> comms;
  for (int r = 0; r < world_size; ++r) {
    comms.emplace_back(new LocalCommunicator(group, r));
  }
  return comms;
}

LocalCommunicator::~LocalCommunicator() = default;

int LocalCommunicator::world_size() const { return group_->world_size(); }

absl::Status LocalCommunicator::AllReduceSum(const TensorView& data) {
  if (absl::Status s = CheckPackedCpu(data, "AllReduceSum"); !s.ok()) return s;
  if (data.dtype != DType::kF32) {
    return absl::InvalidArgumentError("AllReduceSum: data must be F32");
  }
  std::vector<float> sum(data.numel());
  Group::Post post{Op::kAllReduceSum, &data, nullptr, 0};
  if (absl::Status s = group_->Collective(rank_, post,
                                          [&](const std::vector<Group::Post>& posts) {
                                            for (const Group::Post& p : posts) {
                                              const float* x = p.send->ptr<const float>();
                                              for (size_t i = 0; i < sum.size(); ++i)
                                                sum[i] += x[i];
                                            }
                                          });
      !s.ok()) {
    return s;
  }
  std::memcpy(data.data, sum.data(), sum.size() * sizeof(float));
  return absl::OkStatus();
}

absl::Status LocalCommunicator::AllGather(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckPackedCpu(send, "AllGather"); !s.ok()) return s;
  if (absl::Status s = CheckPackedCpu(recv, "AllGather"); !s.ok()) return s;
  const int64_t bytes = send.nbytes();
  if (recv.nbytes() != bytes * world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllGather: recv has ", recv.nbytes(), " bytes, expected ", world_size(), " x ", bytes));
  }
  // Gathered into a temporary: recv may overlap this rank's send, which others are reading.
  std::vector<uint8_t> gathered(recv.nbytes());
  Group::Post post{Op::kAllGather, &send, &recv, 0};
  if (absl::Status s = group_->Collective(rank_, post,
                                          [&](const std::vector<Group::Post>& posts) {
                                            for (size_t r = 0; r < posts.size(); ++r) {
                                              if (bytes == 0) continue;
                                              std::memcpy(gathered.data() + r * bytes,
                                                          posts[r].send->data, bytes);
                                            }
                                          });
      !s.ok()) {
    return s;
  }
  if (!gathered.empty()) std::memcpy(recv.data, gathered.data(), gathered.size());
  return absl::OkStatus();
}

absl::Status LocalCommunicator::Broadcast(const TensorView& data, int root) {
  if (absl::Status s = CheckPackedCpu(data, "Broadcast"); !s.ok()) return s;
  if (root < 0 || root >= world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Broadcast: root ", root, " outside [0, ", world_size(), ")"));
  }
  Group::Post post{Op::kBroadcast, &data, nullptr, root};
  return group_->Collective(rank_, post, [&](const std::vector<Group::Post>& posts) {
    if (rank_ != root && data.nbytes() > 0) {
      std::memcpy(data.data, posts[root].send->data, data.nbytes());
    }
  });
}

absl::Status LocalCommunicator::AllToAll(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckPackedCpu(send, "AllToAll"); !s.ok()) return s;
  if (absl::Status s = CheckPackedCpu(recv, "AllToAll"); !s.ok()) return s;
  const int n = world_size();
  if (send.nbytes() != recv.nbytes() || send.nbytes() % n != 0) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAll: send (", send.nbytes(),
                                                   " bytes) and recv (", recv.nbytes(),
                                                   " bytes) must be equal and divisible by ", n));
  }
  const int64_t block = send.nbytes() / n;
  std::vector<uint8_t> out(recv.nbytes());
  Group::Post post{Op::kAllToAll, &send, &recv, 0};
  if (absl::Status s =
          group_->Collective(rank_, post,
                             [&](const std::vector<Group::Post>& posts) {
                               if (block == 0) return;
                               for (int r = 0; r < n; ++r) {
                                 std::memcpy(out.data() + r * block,
                                             posts[r].send->row<uint8_t>(0) + rank_ * block, block);
                               }
                             });
      !s.ok()) {
    return s;
  }
  if (!out.empty()) std::memcpy(recv.data, out.data(), out.size());
  return absl::OkStatus();
}

absl::Status LocalCommunicator::Send(const TensorView& data, int dst_rank) {
  if (absl::Status s = CheckPackedCpu(data, "Send"); !s.ok()) return s;
  if (dst_rank < 0 || dst_rank >= world_size() || dst_rank == rank_) {
    return absl::InvalidArgumentError(absl::StrCat("Send: bad destination rank ", dst_rank));
  }
  return group_->Send(rank_, dst_rank, data);
}

absl::Status LocalCommunicator::Recv(const TensorView& data, int src_rank) {
  if (absl::Status s = CheckPackedCpu(data, "Recv"); !s.ok()) return s;
  if (src_rank < 0 || src_rank >= world_size() || src_rank == rank_) {
    return absl::InvalidArgumentError(absl::StrCat("Recv: bad source rank ", src_rank));
  }
  return group_->Recv(src_rank, rank_, data);
}

absl::Status LocalCommunicator::Barrier() {
  return group_->Collective(rank_, Group::Post{Op::kBarrier, nullptr, nullptr, 0},
                            [](const std::vector<Group::Post>&) {});
}

}  // namespace shardserve
