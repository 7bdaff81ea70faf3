#include "worker/comm/gloo_communicator.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/alltoall.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/transport/unbound_buffer.h"
#include "worker/comm/comm_checks.h"

namespace shardserve {
namespace {

// Point-to-point messages use slots far above those Gloo's collectives derive from their tags, so
// a Recv never matches a collective's traffic.
constexpr uint64_t kP2pSlot = uint64_t{1} << 56;

std::chrono::milliseconds ToMillis(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

// Gloo's rendezvous waits on keys with the store's own default (30 s for FileStore and HashStore)
// unless a timeout is passed; this adapter applies ours to every wait and get.
class TimeoutStore : public gloo::rendezvous::Store {
 public:
  TimeoutStore(gloo::rendezvous::Store& inner, std::chrono::milliseconds timeout)
      : inner_(inner), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    inner_.set(key, data);
  }
  std::vector<char> get(const std::string& key) override {
    inner_.wait({key}, timeout_);
    return inner_.get(key);
  }
  void wait(const std::vector<std::string>& keys) override { inner_.wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    inner_.wait(keys, std::min(timeout, timeout_));
  }

 private:
  gloo::rendezvous::Store& inner_;
  const std::chrono::milliseconds timeout_;
};

// Gloo reports both timeouts and broken connections as exceptions; only the text tells them apart.
absl::Status FromGlooError(const std::string& what, const std::string& message) {
  const std::string lower = absl::AsciiStrToLower(message);
  const std::string text = absl::StrCat("gloo ", what, ": ", message);
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout")) {
    return absl::DeadlineExceededError(text);
  }
  return absl::UnavailableError(text);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(
    gloo::rendezvous::Store& store, int rank, int world_size, const GlooOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("GlooCommunicator: rank ", rank, " of world size ", world_size));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("GlooCommunicator: timeout must be positive");
  }
  const std::chrono::milliseconds timeout = ToMillis(options.timeout);
  std::string where = absl::StrCat("connect rank ", rank, "/", world_size, " on ",
                                   options.iface.empty() ? options.hostname : options.iface);
  try {
    gloo::transport::tcp::attr attr;
    if (options.iface.empty()) {
      attr.hostname = options.hostname;
    } else {
      attr.iface = options.iface;
    }
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
    context->setTimeout(timeout);
    TimeoutStore bounded(store, timeout);
    context->connectFullMesh(bounded, device);
    return std::unique_ptr<GlooCommunicator>(
        new GlooCommunicator(std::move(context), rank, world_size, options.timeout));
  } catch (const std::exception& e) {
    return FromGlooError(where, e.what());
  }
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<gloo::Context> context, int rank, int world_size,
                                   absl::Duration timeout)
    : context_(std::move(context)), rank_(rank), world_size_(world_size), timeout_(timeout) {}

GlooCommunicator::~GlooCommunicator() = default;

absl::Status GlooCommunicator::Run(const std::string& what, const std::function<void()>& op) {
  if (!failure_.ok()) return failure_;
  try {
    op();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    failure_ = FromGlooError(absl::StrCat(what, " (rank ", rank_, "/", world_size_, ")"), e.what());
    return failure_;
  }
}

absl::Status GlooCommunicator::AllReduceSum(const TensorView& data) {
  if (data.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceSum: dtype ", DTypeName(data.dtype), ", expected f32"));
  }
  if (absl::Status s = CheckCpuPacked(data, "AllReduceSum", "data"); !s.ok()) return s;
  const size_t n = static_cast<size_t>(data.numel());
  if (n == 0) return failure_;
  return Run("all-reduce", [&] {
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data.ptr<float>(), n);
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    opts.setTimeout(ToMillis(timeout_));
    gloo::allreduce(opts);
  });
}

absl::Status GlooCommunicator::AllGather(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckCpuPacked(send, "AllGather", "send"); !s.ok()) return s;
  if (absl::Status s = CheckCpuPacked(recv, "AllGather", "recv"); !s.ok()) return s;
  if (absl::Status s = CheckGatherSizes(send, recv, world_size_, "AllGather"); !s.ok()) return s;
  if (send.nbytes() == 0) return failure_;
  return Run("all-gather", [&] {
    gloo::AllgatherOptions opts(context_);
    opts.setInput(send.ptr<uint8_t>(), static_cast<size_t>(send.nbytes()));
    opts.setOutput(recv.ptr<uint8_t>(), static_cast<size_t>(recv.nbytes()));
    opts.setTimeout(ToMillis(timeout_));
    gloo::allgather(opts);
  });
}

absl::Status GlooCommunicator::Broadcast(const TensorView& data, int root) {
  if (absl::Status s = CheckCpuPacked(data, "Broadcast", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(root, world_size_, "Broadcast"); !s.ok()) return s;
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("broadcast from ", root), [&] {
    gloo::BroadcastOptions opts(context_);
    opts.setOutput(data.ptr<uint8_t>(), static_cast<size_t>(data.nbytes()));
    opts.setRoot(root);
    opts.setTimeout(ToMillis(timeout_));
    gloo::broadcast(opts);
  });
}

absl::Status GlooCommunicator::AllToAll(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckCpuPacked(send, "AllToAll", "send"); !s.ok()) return s;
  if (absl::Status s = CheckCpuPacked(recv, "AllToAll", "recv"); !s.ok()) return s;
  if (absl::Status s = CheckAllToAllSizes(send, recv, world_size_, "AllToAll"); !s.ok()) return s;
  if (send.nbytes() == 0) return failure_;
  return Run("all-to-all", [&] {
    gloo::AlltoallOptions opts(context_);
    opts.setInput(send.ptr<uint8_t>(), static_cast<size_t>(send.nbytes()));
    opts.setOutput(recv.ptr<uint8_t>(), static_cast<size_t>(recv.nbytes()));
    opts.setTimeout(ToMillis(timeout_));
    gloo::alltoall(opts);
  });
}

absl::Status GlooCommunicator::Send(const TensorView& data, int dst_rank) {
  if (absl::Status s = CheckCpuPacked(data, "Send", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(dst_rank, world_size_, "Send"); !s.ok()) return s;
  if (dst_rank == rank_) return absl::InvalidArgumentError("Send: to self");
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("send to ", dst_rank), [&] {
    std::unique_ptr<gloo::transport::UnboundBuffer> buf =
        context_->createUnboundBuffer(data.data, static_cast<size_t>(data.nbytes()));
    buf->send(dst_rank, kP2pSlot);
    buf->waitSend(ToMillis(timeout_));
  });
}

absl::Status GlooCommunicator::Recv(const TensorView& data, int src_rank) {
  if (absl::Status s = CheckCpuPacked(data, "Recv", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(src_rank, world_size_, "Recv"); !s.ok()) return s;
  if (src_rank == rank_) return absl::InvalidArgumentError("Recv: from self");
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("recv from ", src_rank), [&] {
    std::unique_ptr<gloo::transport::UnboundBuffer> buf =
        context_->createUnboundBuffer(data.data, static_cast<size_t>(data.nbytes()));
    buf->recv(src_rank, kP2pSlot);
    buf->waitRecv(ToMillis(timeout_));
  });
}

absl::Status GlooCommunicator::Barrier() {
  return Run("barrier", [&] {
    gloo::BarrierOptions opts(context_);
    opts.setTimeout(ToMillis(timeout_));
    gloo::barrier(opts);
  });
}

}  // namespace shardserve
