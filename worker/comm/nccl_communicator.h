// A Communicator over NCCL: CUDA tensors on one device per rank, within a host or across hosts.
// Built only with --config=cuda.
//
// Rank 0 creates an NCCL unique id and publishes it through a UniqueIdExchange (typically the
// coordinator's GrpcStore under the group's prefix); the other ranks fetch it, and every rank
// joins the NCCL communicator on its own device and its own CUDA stream.
//
//   class StoreIdExchange : public UniqueIdExchange {  // over GrpcStore, keyed per group
//     absl::Status Publish(const std::string& id) override { return store_.Set("nccl_id", id); }
//     absl::StatusOr<std::string> Fetch(absl::Duration timeout) override {
//       return store_.Get("nccl_id", timeout);
//     }
//     ...
//   };
//   ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> comm,
//                    NcclCommunicator::Create(exchange, rank, world_size, device, NcclOptions{}));
//   RETURN_IF_ERROR(comm->AllReduceSum(partial));  // [num_tokens, hidden] F32 on cuda:device
//
// Every call is synchronous: it enqueues the NCCL operation on the communicator's stream and
// returns once the stream has drained, so the caller may reuse the buffers at once. Callers that
// produced the input on another stream must synchronise that stream first.
//
// Failures: the communicator runs NCCL in non-blocking mode, so neither the rendezvous nor any
// operation can block forever. Create and every operation are bounded by `NcclOptions::timeout`:
// past it the NCCL communicator is aborted and the call fails with DEADLINE_EXCEEDED naming the
// operation; an error NCCL reports (a peer died, a network failure) fails it with UNAVAILABLE.
// The first failure is sticky: every later call returns it at once.
//
// Thread safety: one thread issues the operations of a communicator. It may have any CUDA device
// current; each call selects the communicator's device and leaves it selected. Tensors must be
// packed, on Device::Cuda(device), and live until the call returns.
#ifndef SHARDSERVE_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define SHARDSERVE_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/communicator.h"

// Opaque handles of nccl.h (ncclComm_t) and cuda_runtime.h (cudaStream_t), declared here so that
// users of this header do not need the CUDA include paths.
struct ncclComm;
struct CUstream_st;

namespace shardserve {

// Carries NCCL's unique id (opaque bytes) from rank 0 to the other ranks of one group. Give every
// group (and every re-formed group) its own exchange, so a rank never reads a stale id.
class UniqueIdExchange {
 public:
  virtual ~UniqueIdExchange() = default;
  // Called on rank 0 only, once.
  virtual absl::Status Publish(const std::string& id) = 0;
  // Called on every other rank: waits up to `timeout` for rank 0's id. Returns DEADLINE_EXCEEDED
  // (or another error) when it does not appear in time.
  virtual absl::StatusOr<std::string> Fetch(absl::Duration timeout) = 0;
};

struct NcclOptions {
  // Bound on Create (fetching the id and joining the group) and on each operation.
  absl::Duration timeout = absl::Seconds(30);
};

class NcclCommunicator : public Communicator {
 public:
  // Joins the group of `world_size` ranks as `rank`, on CUDA device `device` (each rank of a
  // group on a different device). Blocks until every rank has joined, or fails within
  // `options.timeout`. `exchange` is used only during Create.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(UniqueIdExchange& exchange,
                                                                  int rank, int world_size,
                                                                  int device,
                                                                  const NcclOptions& options);
  // Releases the NCCL communicator, the stream and the device buffer. A healthy communicator is
  // finalized, which completes once every rank has finalized too; when that does not happen
  // within the timeout (peers still running, or gone) it is aborted, so destroying the ranks of a
  // group together is fast and destroying one alone costs up to the timeout.
  ~NcclCommunicator() override;

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "nccl"; }
  int device() const { return device_; }

  absl::Status AllReduceSum(const TensorView& data) override;
  absl::Status AllGather(const TensorView& send, const TensorView& recv) override;
  absl::Status Broadcast(const TensorView& data, int root) override;
  absl::Status AllToAll(const TensorView& send, const TensorView& recv) override;
  absl::Status Send(const TensorView& data, int dst_rank) override;
  absl::Status Recv(const TensorView& data, int src_rank) override;
  absl::Status Barrier() override;

 private:
  NcclCommunicator(int rank, int world_size, int device, absl::Duration timeout);

  // Joins the NCCL group with the id rank 0 created; bounded by `deadline`.
  absl::Status Init(const std::string& id, absl::Time deadline);

  // Unless the communicator already failed: selects the device, calls `enqueue` (which issues
  // NCCL calls on stream_ and returns the first NCCL or CUDA error code as a Status), waits for
  // NCCL to accept the work and for stream_ to drain, all within the timeout. On failure aborts
  // the NCCL communicator and remembers a Status naming `what`.
  absl::Status Run(const std::string& what, const std::function<absl::Status()>& enqueue);

  // Polls NCCL's asynchronous state (and, when `stream_done` is set, the stream) until both are
  // settled or `deadline` passes.
  absl::Status WaitFor(const std::string& what, absl::Time deadline, bool stream_done);

  // Records `status` as the sticky failure and aborts the NCCL communicator.
  absl::Status Fail(absl::Status status);

  // OK when `t` is packed and on this communicator's device.
  absl::Status CheckTensor(const TensorView& t, const char* op, const char* what) const;

  const int rank_;
  const int world_size_;
  const int device_;
  const absl::Duration timeout_;
  ncclComm* comm_ = nullptr;       // null before Init and after an abort
  CUstream_st* stream_ = nullptr;  // owned; non-blocking with respect to the legacy stream
  int* barrier_buf_ = nullptr;     // [1] int32 on device_, the payload of Barrier
  absl::Status failure_;           // sticky: the first error
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_NCCL_COMMUNICATOR_H_
