#include "worker/comm/collective_checks.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

TensorView Bytes(std::vector<uint8_t>& v) {
  return TensorView::Cpu(v.data(), DType::kI8, {static_cast<int64_t>(v.size())});
}

uint8_t Pattern(int a, int b, int64_t i) { return static_cast<uint8_t>(a * 31 + b * 7 + i * 13); }

absl::Status CheckAllReduce(Communicator& comm, int64_t n) {
  const int r = comm.rank();
  const int w = comm.world_size();
  std::vector<float> data(n);
  // Small integers: every summation order gives the exact value.
  for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>((r + 1) * (i % 1000));
  RETURN_IF_ERROR(comm.AllReduceSum(TensorView::Cpu(data.data(), DType::kF32, {n})));
  const float ranks_sum = static_cast<float>(w * (w + 1) / 2);
  for (int64_t i = 0; i < n; ++i) {
    const float expected = ranks_sum * static_cast<float>(i % 1000);
    if (data[i] != expected) {
      return absl::InternalError(absl::StrCat("all-reduce of ", n, " floats: element ", i, " is ",
                                              data[i], ", expected ", expected));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBitIdenticalAllReduce(Communicator& comm, int64_t n) {
  std::mt19937 rng(1234 + comm.rank());
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> data(n);
  for (float& x : data) x = dist(rng) * 1e-3f + dist(rng);
  RETURN_IF_ERROR(comm.AllReduceSum(TensorView::Cpu(data.data(), DType::kF32, {n})));
  std::vector<float> all(n * comm.world_size());
  RETURN_IF_ERROR(
      comm.AllGather(TensorView::Cpu(data.data(), DType::kF32, {n}),
                     TensorView::Cpu(all.data(), DType::kF32, {comm.world_size() * n})));
  for (int q = 0; q < comm.world_size(); ++q) {
    if (std::memcmp(all.data() + q * n, data.data(), n * sizeof(float)) != 0) {
      return absl::InternalError(
          absl::StrCat("all-reduce result of rank ", q, " differs from rank ", comm.rank()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAllGather(Communicator& comm, int64_t n) {
  const int w = comm.world_size();
  std::vector<uint8_t> send(n), recv(n * w, 0xee);
  for (int64_t i = 0; i < n; ++i) send[i] = Pattern(comm.rank(), 0, i);
  RETURN_IF_ERROR(comm.AllGather(Bytes(send), Bytes(recv)));
  for (int q = 0; q < w; ++q) {
    for (int64_t i = 0; i < n; ++i) {
      if (recv[q * n + i] != Pattern(q, 0, i)) {
        return absl::InternalError(
            absl::StrCat("all-gather of ", n, " bytes: block ", q, " byte ", i, " is wrong"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBroadcast(Communicator& comm, int64_t n, int root) {
  std::vector<uint8_t> data(n, 0xee);
  if (comm.rank() == root) {
    for (int64_t i = 0; i < n; ++i) data[i] = Pattern(root, 1, i);
  }
  RETURN_IF_ERROR(comm.Broadcast(Bytes(data), root));
  for (int64_t i = 0; i < n; ++i) {
    if (data[i] != Pattern(root, 1, i)) {
      return absl::InternalError(
          absl::StrCat("broadcast of ", n, " bytes from ", root, ": byte ", i, " is wrong"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAllToAll(Communicator& comm, int64_t block) {
  const int w = comm.world_size();
  std::vector<uint8_t> send(block * w), recv(block * w, 0xee);
  for (int q = 0; q < w; ++q) {
    for (int64_t i = 0; i < block; ++i) send[q * block + i] = Pattern(comm.rank(), q, i);
  }
  RETURN_IF_ERROR(comm.AllToAll(Bytes(send), Bytes(recv)));
  for (int q = 0; q < w; ++q) {
    for (int64_t i = 0; i < block; ++i) {
      if (recv[q * block + i] != Pattern(q, comm.rank(), i)) {
        return absl::InternalError(absl::StrCat("all-to-all of ", block, "-byte blocks: block ", q,
                                                " byte ", i, " is wrong"));
      }
    }
  }
  return absl::OkStatus();
}

// Each rank sends to the next and receives from the previous; even ranks send first so that no
// cycle of blocked senders can form.
absl::Status CheckSendRecvRing(Communicator& comm, int64_t n) {
  const int r = comm.rank();
  const int w = comm.world_size();
  const int next = (r + 1) % w;
  const int prev = (r + w - 1) % w;
  std::vector<uint8_t> out(n), in(n, 0xee);
  for (int64_t i = 0; i < n; ++i) out[i] = Pattern(r, next, i);
  if (r % 2 == 0) {
    RETURN_IF_ERROR(comm.Send(Bytes(out), next));
    RETURN_IF_ERROR(comm.Recv(Bytes(in), prev));
  } else {
    RETURN_IF_ERROR(comm.Recv(Bytes(in), prev));
    RETURN_IF_ERROR(comm.Send(Bytes(out), next));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (in[i] != Pattern(prev, r, i)) {
      return absl::InternalError(
          absl::StrCat("recv of ", n, " bytes from ", prev, ": byte ", i, " is wrong"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunCollectiveChecks(Communicator& comm) {
  for (int64_t n : {1, 7, 2048, 16384, 300001}) RETURN_IF_ERROR(CheckAllReduce(comm, n));
  for (int64_t n : {5, 2048, 300001}) RETURN_IF_ERROR(CheckBitIdenticalAllReduce(comm, n));
  for (int64_t n : {1, 100, 8192, 700001}) RETURN_IF_ERROR(CheckAllGather(comm, n));
  for (int root = 0; root < comm.world_size(); ++root) {
    for (int64_t n : {3, 8192, 1000003}) RETURN_IF_ERROR(CheckBroadcast(comm, n, root));
  }
  for (int64_t block : {1, 64, 200003}) RETURN_IF_ERROR(CheckAllToAll(comm, block));
  if (comm.world_size() > 1) {
    for (int64_t n : {1, 10, 8192, 500001}) RETURN_IF_ERROR(CheckSendRecvRing(comm, n));
  }
  for (int i = 0; i < 3; ++i) RETURN_IF_ERROR(comm.Barrier());
  // Empty tensors are no-ops, not errors.
  float nothing = 0;
  RETURN_IF_ERROR(comm.AllReduceSum(TensorView::Cpu(&nothing, DType::kF32, {0})));
  // Misuse is reported, not undefined.
  std::vector<uint8_t> small(4), wrong(5);
  RETURN_IF_ERROR(ExpectTrue(absl::IsInvalidArgument(comm.AllGather(Bytes(small), Bytes(wrong))),
                             "all-gather with a mis-sized recv is INVALID_ARGUMENT"));
  RETURN_IF_ERROR(ExpectTrue(absl::IsInvalidArgument(comm.Broadcast(Bytes(small), -1)),
                             "broadcast from rank -1 is INVALID_ARGUMENT"));
  return comm.Barrier();
}

absl::Status ExpectFailsWithinTimeout(Communicator& comm, absl::Duration bound) {
  std::vector<float> data(2048, 1.0f);
  const TensorView view = TensorView::Cpu(data.data(), DType::kF32, {2048});
  absl::Time start = absl::Now();
  absl::Status first = comm.AllReduceSum(view);
  absl::Duration elapsed = absl::Now() - start;
  RETURN_IF_ERROR(ExpectTrue(!first.ok(), "all-reduce with a missing peer failed"));
  RETURN_IF_ERROR(
      ExpectTrue(absl::IsDeadlineExceeded(first) || absl::IsUnavailable(first),
                 absl::StrCat("DEADLINE_EXCEEDED or UNAVAILABLE, got ", first.ToString())));
  RETURN_IF_ERROR(
      ExpectTrue(elapsed < bound, absl::StrCat("failure within ", absl::FormatDuration(bound),
                                               ", took ", absl::FormatDuration(elapsed))));
  start = absl::Now();
  absl::Status second = comm.Barrier();
  elapsed = absl::Now() - start;
  RETURN_IF_ERROR(
      ExpectTrue(second.code() == first.code(),
                 absl::StrCat("later calls repeat the failure, got ", second.ToString())));
  return ExpectTrue(elapsed < absl::Milliseconds(100),
                    absl::StrCat("later calls fail at once, took ", absl::FormatDuration(elapsed)));
}

}  // namespace shardserve
