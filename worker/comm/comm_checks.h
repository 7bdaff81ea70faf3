// Argument checks shared by the communicators in this directory.
#ifndef SHARDSERVE_WORKER_COMM_COMM_CHECKS_H_
#define SHARDSERVE_WORKER_COMM_COMM_CHECKS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/tensor.h"

namespace shardserve {

// OK when `t` is a packed CPU tensor (what the CPU transports can send as one byte range).
inline absl::Status CheckCpuPacked(const TensorView& t, const char* op, const char* what) {
  if (t.device.type != DeviceType::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", what, " is on ", t.device.ToString(), ", expected the CPU"));
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

inline absl::Status CheckRank(int rank, int world_size, const char* op) {
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": rank ", rank, " is outside [0, ", world_size, ")"));
  }
  return absl::OkStatus();
}

// AllGather: recv holds world_size copies of send. AllToAll: both split in world_size blocks.
inline absl::Status CheckGatherSizes(const TensorView& send, const TensorView& recv, int world_size,
                                     const char* op) {
  if (recv.nbytes() != send.nbytes() * world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": recv has ", recv.nbytes(), " bytes, expected ", world_size, " x ", send.nbytes()));
  }
  return absl::OkStatus();
}

inline absl::Status CheckAllToAllSizes(const TensorView& send, const TensorView& recv,
                                       int world_size, const char* op) {
  if (send.nbytes() != recv.nbytes() || send.nbytes() % world_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": send (", send.nbytes(), " bytes) and recv (", recv.nbytes(),
                     " bytes) must be equal and divisible by ", world_size));
  }
  return absl::OkStatus();
}

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_COMM_CHECKS_H_
