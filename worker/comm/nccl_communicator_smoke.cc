// Runs every NcclCommunicator operation between two ranks (threads of this process, on CUDA
// devices 0 and 1) and checks the results on the host, then checks that a collective a peer never
// joins fails with DEADLINE_EXCEEDED and that the failure is sticky.
// Exits 0 on success, 1 on a failure, 2 when fewer than two CUDA devices are present.
#include <cuda_runtime.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "worker/comm/nccl_communicator.h"

namespace shardserve {
namespace {

constexpr int kWorldSize = 2;
constexpr int64_t kNumel = 1024;  // per rank, F32

// The id passed between threads, as the coordinator's store would between processes.
class InProcessExchange : public UniqueIdExchange {
 public:
  absl::Status Publish(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    id_ = id;
    cv_.notify_all();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Fetch(absl::Duration timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return id_.has_value(); })) {
      return absl::DeadlineExceededError("no id published");
    }
    return *id_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::string> id_;
};

// A device buffer of F32 viewed as [rows, cols], freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, int64_t rows, int64_t cols) : device_(device), rows_(rows), cols_(cols) {
    cudaMalloc(&data_, rows * cols * sizeof(float));
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  TensorView view() const {
    TensorView t;
    t.data = data_;
    t.dtype = DType::kF32;
    t.device = Device::Cuda(device_);
    t.ndim = 2;
    t.shape = {rows_, cols_, 0, 0};
    return t;
  }
  void Upload(const std::vector<float>& host) {
    cudaMemcpy(data_, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  std::vector<float> Download() const {
    std::vector<float> host(rows_ * cols_);
    cudaMemcpy(host.data(), data_, host.size() * sizeof(float), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  const int device_;
  const int64_t rows_;
  const int64_t cols_;
  void* data_ = nullptr;
};

absl::Status Expect(const std::vector<float>& got, const std::vector<float>& want,
                    const char* what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      return absl::InternalError(
          absl::StrCat(what, ": element ", i, " is ", got[i], ", expected ", want[i]));
    }
  }
  return absl::OkStatus();
}

// Rank r's input element i is 1000 * r + i, so every result names where it came from.
std::vector<float> Input(int rank, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 1000.0f * rank + static_cast<float>(i);
  return v;
}

absl::Status RunRank(NcclCommunicator& comm) {
  const int rank = comm.rank();
  const int device = comm.device();
  cudaSetDevice(device);

  DeviceBuffer a(device, 1, kNumel);
  DeviceBuffer b(device, kWorldSize, kNumel);

  a.Upload(Input(rank, kNumel));
  if (absl::Status s = comm.AllReduceSum(a.view()); !s.ok()) return s;
  std::vector<float> want(kNumel);
  for (int64_t i = 0; i < kNumel; ++i) want[i] = Input(0, kNumel)[i] + Input(1, kNumel)[i];
  if (absl::Status s = Expect(a.Download(), want, "all-reduce"); !s.ok()) return s;

  a.Upload(Input(rank, kNumel));
  if (absl::Status s = comm.AllGather(a.view(), b.view()); !s.ok()) return s;
  want = Input(0, kNumel);
  for (float x : Input(1, kNumel)) want.push_back(x);
  if (absl::Status s = Expect(b.Download(), want, "all-gather"); !s.ok()) return s;

  a.Upload(Input(rank, kNumel));
  if (absl::Status s = comm.Broadcast(a.view(), /*root=*/1); !s.ok()) return s;
  if (absl::Status s = Expect(a.Download(), Input(1, kNumel), "broadcast"); !s.ok()) return s;

  // All-to-all over [2, kNumel]: row r of rank q's input ends in row q of rank r's output.
  DeviceBuffer c(device, kWorldSize, kNumel);
  b.Upload(Input(rank, kWorldSize * kNumel));
  if (absl::Status s = comm.AllToAll(b.view(), c.view()); !s.ok()) return s;
  want.clear();
  for (int src = 0; src < kWorldSize; ++src) {
    const std::vector<float> in = Input(src, kWorldSize * kNumel);
    want.insert(want.end(), in.begin() + rank * kNumel, in.begin() + (rank + 1) * kNumel);
  }
  if (absl::Status s = Expect(c.Download(), want, "all-to-all"); !s.ok()) return s;

  if (rank == 0) {
    a.Upload(Input(0, kNumel));
    if (absl::Status s = comm.Send(a.view(), 1); !s.ok()) return s;
  } else {
    if (absl::Status s = comm.Recv(a.view(), 0); !s.ok()) return s;
    if (absl::Status s = Expect(a.Download(), Input(0, kNumel), "send/recv"); !s.ok()) return s;
  }

  if (absl::Status s = comm.Barrier(); !s.ok()) return s;

  // A tensor on the host is refused before anything is issued, and does not fail the group.
  std::vector<float> host(kNumel);
  if (comm.AllReduceSum(TensorView::Cpu(host.data(), DType::kF32, {kNumel})).code() !=
      absl::StatusCode::kInvalidArgument) {
    return absl::InternalError("a CPU tensor was not refused with INVALID_ARGUMENT");
  }
  return comm.Barrier();
}

// Rank 0 issues an all-reduce that rank 1 never joins: it must fail within the timeout, and so
// must the next call, at once.
absl::Status CheckDeadline(NcclCommunicator& comm) {
  DeviceBuffer a(comm.device(), 1, kNumel);
  const absl::Status first = comm.AllReduceSum(a.view());
  if (first.code() != absl::StatusCode::kDeadlineExceeded) {
    return absl::InternalError(absl::StrCat("lonely all-reduce returned: ", first.ToString()));
  }
  const absl::Time start = absl::Now();
  const absl::Status again = comm.Barrier();
  if (again != first || absl::Now() - start > absl::Seconds(1)) {
    return absl::InternalError(absl::StrCat("failure not sticky: ", again.ToString()));
  }
  return absl::OkStatus();
}

int Main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return 2;
  }
  if (devices < kWorldSize) {
    std::printf("need %d CUDA devices, found %d\n", kWorldSize, devices);
    return 2;
  }
  InProcessExchange exchange;
  NcclOptions options;
  options.timeout = absl::Seconds(20);
  std::vector<absl::Status> results(kWorldSize);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kWorldSize; ++rank) {
    threads.emplace_back([&, rank] {
      cudaSetDevice(rank);
      absl::StatusOr<std::unique_ptr<NcclCommunicator>> comm =
          NcclCommunicator::Create(exchange, rank, kWorldSize, /*device=*/rank, options);
      if (!comm.ok()) {
        results[rank] = comm.status();
        return;
      }
      results[rank] = RunRank(**comm);
      if (results[rank].ok() && rank == 0) results[rank] = CheckDeadline(**comm);
    });
  }
  for (std::thread& t : threads) t.join();
  int rc = 0;
  for (int rank = 0; rank < kWorldSize; ++rank) {
    std::printf("rank %d: %s\n", rank, results[rank].ToString().c_str());
    if (!results[rank].ok()) rc = 1;
  }
  return rc;
}

}  // namespace
}  // namespace shardserve

int main() { return shardserve::Main(); }
