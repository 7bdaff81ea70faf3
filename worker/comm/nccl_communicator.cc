#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/comm/comm_checks.h"

namespace shardserve {
namespace {

// Polls spin this long before yielding, and sleep between polls once this much has passed: a
// decode-step collective finishes within microseconds, while a wait for a slow peer should not
// occupy a core.
constexpr absl::Duration kSpinFor = absl::Microseconds(50);
constexpr absl::Duration kYieldFor = absl::Milliseconds(1);
constexpr absl::Duration kSleepSlice = absl::Microseconds(200);

void Backoff(absl::Time start) {
  const absl::Duration waited = absl::Now() - start;
  if (waited < kSpinFor) return;
  if (waited < kYieldFor) {
    std::this_thread::yield();
  } else {
    absl::SleepFor(kSleepSlice);
  }
}

absl::Status NcclError(const std::string& what, ncclResult_t result, ncclComm_t comm) {
  const char* detail = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  return absl::UnavailableError(absl::StrCat("nccl ", what, ": ", ncclGetErrorString(result),
                                             detail != nullptr && detail[0] != '\0' ? ": " : "",
                                             detail != nullptr ? detail : ""));
}

absl::Status CudaError(const std::string& what, cudaError_t error) {
  return absl::UnavailableError(absl::StrCat("nccl ", what, ": CUDA ", cudaGetErrorName(error),
                                             ": ", cudaGetErrorString(error)));
}

// ncclInProgress is how a non-blocking communicator says "accepted, still running".
bool Failed(ncclResult_t result) { return result != ncclSuccess && result != ncclInProgress; }

// Converts the return code of an NCCL enqueue call.
absl::Status Enqueued(ncclResult_t r, const char* call) {
  if (!Failed(r)) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(call, ": ", ncclGetErrorString(r)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    UniqueIdExchange& exchange, int rank, int world_size, int device, const NcclOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("NcclCommunicator: rank ", rank, " of world size ", world_size));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("NcclCommunicator: timeout must be positive");
  }
  const absl::Time deadline = absl::Now() + options.timeout;
  const std::string where = absl::StrCat("init rank ", rank, "/", world_size, " on cuda:", device);

  int num_devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&num_devices); e != cudaSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("NcclCommunicator: ", where, ": no CUDA device: ", cudaGetErrorString(e)));
  }
  if (device < 0 || device >= num_devices) {
    return absl::InvalidArgumentError(absl::StrCat("NcclCommunicator: ", where, ": device ", device,
                                                   " is outside [0, ", num_devices, ")"));
  }

  std::string id;
  if (rank == 0) {
    ncclUniqueId unique_id;
    if (ncclResult_t r = ncclGetUniqueId(&unique_id); r != ncclSuccess) {
      return NcclError(where, r, nullptr);
    }
    id.assign(unique_id.internal, sizeof(unique_id.internal));
    if (absl::Status s = exchange.Publish(id); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("nccl ", where, ": publishing the id: ", s.message()));
    }
  } else {
    absl::StatusOr<std::string> fetched = exchange.Fetch(deadline - absl::Now());
    if (!fetched.ok()) {
      return absl::Status(
          fetched.status().code(),
          absl::StrCat("nccl ", where, ": waiting for rank 0's id: ", fetched.status().message()));
    }
    id = *std::move(fetched);
  }
  if (id.size() != NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrCat("nccl ", where, ": unique id has ", id.size(),
                                                   " bytes, expected ", NCCL_UNIQUE_ID_BYTES));
  }

  // From here on the destructor releases whatever Init acquired.
  std::unique_ptr<NcclCommunicator> comm(
      new NcclCommunicator(rank, world_size, device, options.timeout));
  if (absl::Status s = comm->Init(id, deadline); !s.ok()) return s;
  return comm;
}

NcclCommunicator::NcclCommunicator(int rank, int world_size, int device, absl::Duration timeout)
    : rank_(rank), world_size_(world_size), device_(device), timeout_(timeout) {}

absl::Status NcclCommunicator::Init(const std::string& id, absl::Time deadline) {
  const std::string what =
      absl::StrCat("init rank ", rank_, "/", world_size_, " on cuda:", device_);
  if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) return CudaError(what, e);
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return CudaError(what, e);
  }
  stream_ = stream;
  if (cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&barrier_buf_), sizeof(int32_t));
      e != cudaSuccess) {
    barrier_buf_ = nullptr;
    return CudaError(what, e);
  }
  // Zero stays zero under the barrier's sum, so the buffer never overflows.
  if (cudaError_t e = cudaMemset(barrier_buf_, 0, sizeof(int32_t)); e != cudaSuccess) {
    return CudaError(what, e);
  }

  ncclUniqueId unique_id;
  std::memcpy(unique_id.internal, id.data(), sizeof(unique_id.internal));
  // Non-blocking: the call returns at once and the join completes in the background, so a peer
  // that never arrives costs the timeout rather than a hung process.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, world_size_, unique_id, rank_, &config);
  comm_ = comm;
  if (Failed(r)) return Fail(NcclError(what, r, comm_));
  if (absl::Status s = WaitFor(what, deadline, /*stream_done=*/false); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr || stream_ != nullptr || barrier_buf_ != nullptr) cudaSetDevice(device_);
  if (comm_ != nullptr) {
    // Finalize flushes NCCL's internal work and settles asynchronously; abort instead when that
    // does not happen within the timeout, so the destructor is bounded too.
    bool finalized = false;
    if (!Failed(ncclCommFinalize(comm_))) {
      const absl::Time start = absl::Now();
      const absl::Time deadline = start + timeout_;
      ncclResult_t state = ncclInProgress;
      while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
             absl::Now() < deadline) {
        Backoff(start);
      }
      finalized = state == ncclSuccess;
    }
    if (finalized) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  if (barrier_buf_ != nullptr) cudaFree(barrier_buf_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status NcclCommunicator::Fail(absl::Status status) {
  if (failure_.ok()) failure_ = std::move(status);
  if (comm_ != nullptr) {
    // Abort also stops kernels of this communicator still spinning on the stream, so the stream
    // can drain and be destroyed.
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  return failure_;
}

absl::Status NcclCommunicator::WaitFor(const std::string& what, absl::Time deadline,
                                       bool stream_done) {
  const absl::Time start = absl::Now();
  bool nccl_settled = false;
  while (true) {
    if (!nccl_settled) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) return NcclError(what, r, comm_);
      if (Failed(state)) return NcclError(what, state, comm_);
      nccl_settled = state == ncclSuccess;
    }
    if (nccl_settled) {
      if (!stream_done) return absl::OkStatus();
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return absl::OkStatus();
      if (e != cudaErrorNotReady) return CudaError(what, e);
      // A peer that died mid-collective surfaces as an asynchronous NCCL error while the kernel
      // still waits; keep checking for it.
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && Failed(state)) {
        return NcclError(what, state, comm_);
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("nccl ", what, ": not complete after ", absl::FormatDuration(timeout_),
                       nccl_settled ? " (waiting for the stream)" : " (waiting for NCCL)"));
    }
    Backoff(start);
  }
}

absl::Status NcclCommunicator::Run(const std::string& what,
                                   const std::function<absl::Status()>& enqueue) {
  if (!failure_.ok()) return failure_;
  const std::string op = absl::StrCat(what, " (rank ", rank_, "/", world_size_, ")");
  const absl::Time deadline = absl::Now() + timeout_;
  if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) return Fail(CudaError(op, e));
  if (absl::Status s = enqueue(); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat("nccl ", op, ": ", s.message())));
  }
  if (absl::Status s = WaitFor(op, deadline, /*stream_done=*/true); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status NcclCommunicator::CheckTensor(const TensorView& t, const char* op,
                                           const char* what) const {
  if (t.device != Device::Cuda(device_)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " is on ", t.device.ToString(),
                                                   ", expected ",
                                                   Device::Cuda(device_).ToString()));
  }
  if (!t.is_packed()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", what, " ", t.ShapeString(), " is strided, expected packed"));
  }
  if (t.nbytes() > 0 && t.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " has no data"));
  }
  return absl::OkStatus();
}

absl::Status NcclCommunicator::AllReduceSum(const TensorView& data) {
  if (data.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceSum: dtype ", DTypeName(data.dtype), ", expected f32"));
  }
  if (absl::Status s = CheckTensor(data, "AllReduceSum", "data"); !s.ok()) return s;
  const size_t n = static_cast<size_t>(data.numel());
  if (n == 0) return failure_;
  return Run("all-reduce", [&] {
    return Enqueued(ncclAllReduce(data.data, data.data, n, ncclFloat, ncclSum, comm_, stream_),
                    "ncclAllReduce");
  });
}

absl::Status NcclCommunicator::AllGather(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckTensor(send, "AllGather", "send"); !s.ok()) return s;
  if (absl::Status s = CheckTensor(recv, "AllGather", "recv"); !s.ok()) return s;
  if (absl::Status s = CheckGatherSizes(send, recv, world_size_, "AllGather"); !s.ok()) return s;
  if (send.nbytes() == 0) return failure_;
  return Run("all-gather", [&] {
    return Enqueued(ncclAllGather(send.data, recv.data, static_cast<size_t>(send.nbytes()),
                                  ncclUint8, comm_, stream_),
                    "ncclAllGather");
  });
}

absl::Status NcclCommunicator::Broadcast(const TensorView& data, int root) {
  if (absl::Status s = CheckTensor(data, "Broadcast", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(root, world_size_, "Broadcast"); !s.ok()) return s;
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("broadcast from ", root), [&] {
    return Enqueued(ncclBroadcast(data.data, data.data, static_cast<size_t>(data.nbytes()),
                                  ncclUint8, root, comm_, stream_),
                    "ncclBroadcast");
  });
}

absl::Status NcclCommunicator::AllToAll(const TensorView& send, const TensorView& recv) {
  if (absl::Status s = CheckTensor(send, "AllToAll", "send"); !s.ok()) return s;
  if (absl::Status s = CheckTensor(recv, "AllToAll", "recv"); !s.ok()) return s;
  if (absl::Status s = CheckAllToAllSizes(send, recv, world_size_, "AllToAll"); !s.ok()) return s;
  if (send.nbytes() == 0) return failure_;
  const size_t block_bytes = static_cast<size_t>(send.nbytes() / world_size_);
  return Run("all-to-all", [&]() -> absl::Status {
    const auto* src = static_cast<const uint8_t*>(send.data);
    auto* dst = static_cast<uint8_t*>(recv.data);
    // This rank's own block is a local copy; the others go as one group of sends and receives
    // so that NCCL progresses them together (issued one by one, pairs of ranks would deadlock).
    if (cudaError_t e = cudaMemcpyAsync(dst + rank_ * block_bytes, src + rank_ * block_bytes,
                                        block_bytes, cudaMemcpyDeviceToDevice, stream_);
        e != cudaSuccess) {
      return absl::UnavailableError(absl::StrCat("cudaMemcpyAsync: ", cudaGetErrorString(e)));
    }
    if (world_size_ == 1) return absl::OkStatus();
    if (ncclResult_t r = ncclGroupStart(); Failed(r)) return Enqueued(r, "ncclGroupStart");
    ncclResult_t first = ncclSuccess;
    for (int peer = 0; peer < world_size_ && !Failed(first); ++peer) {
      if (peer == rank_) continue;
      first = ncclSend(src + peer * block_bytes, block_bytes, ncclUint8, peer, comm_, stream_);
      if (!Failed(first)) {
        first = ncclRecv(dst + peer * block_bytes, block_bytes, ncclUint8, peer, comm_, stream_);
      }
    }
    // The group must be closed even after a failed call inside it.
    const ncclResult_t end = ncclGroupEnd();
    if (Failed(first)) return Enqueued(first, "ncclSend/ncclRecv");
    return Enqueued(end, "ncclGroupEnd");
  });
}

absl::Status NcclCommunicator::Send(const TensorView& data, int dst_rank) {
  if (absl::Status s = CheckTensor(data, "Send", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(dst_rank, world_size_, "Send"); !s.ok()) return s;
  if (dst_rank == rank_) return absl::InvalidArgumentError("Send: to self");
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("send to ", dst_rank), [&] {
    return Enqueued(ncclSend(data.data, static_cast<size_t>(data.nbytes()), ncclUint8, dst_rank,
                             comm_, stream_),
                    "ncclSend");
  });
}

absl::Status NcclCommunicator::Recv(const TensorView& data, int src_rank) {
  if (absl::Status s = CheckTensor(data, "Recv", "data"); !s.ok()) return s;
  if (absl::Status s = CheckRank(src_rank, world_size_, "Recv"); !s.ok()) return s;
  if (src_rank == rank_) return absl::InvalidArgumentError("Recv: from self");
  if (data.nbytes() == 0) return failure_;
  return Run(absl::StrCat("recv from ", src_rank), [&] {
    return Enqueued(ncclRecv(data.data, static_cast<size_t>(data.nbytes()), ncclUint8, src_rank,
                             comm_, stream_),
                    "ncclRecv");
  });
}

absl::Status NcclCommunicator::Barrier() {
  // NCCL has no barrier; an all-reduce of one int completes only once every rank has issued it.
  return Run("barrier", [&] {
    return Enqueued(
        ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclInt32, ncclSum, comm_, stream_),
        "ncclAllReduce");
  });
}

}  // namespace shardserve
