// All-reduce latency of the CPU transports, side by side: Gloo over loopback TCP and shared
// memory, each with `--ranks` forked processes on this host.
//
//   bazel run //worker/comm:comm_bench -- --ranks=2 --iters=5000
//
// Each rank issues back-to-back all-reduces, as a decode step does; rank 0 times every call and
// reports the median and 99th percentile per message size.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gloo/rendezvous/file_store.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/shm_communicator.h"

ABSL_FLAG(int, ranks, 2, "processes in the group");
ABSL_FLAG(int, iters, 5000, "timed all-reduces per message size");
ABSL_FLAG(int, warmup, 500, "untimed all-reduces per message size before timing");
ABSL_FLAG(std::vector<std::string>, sizes, std::vector<std::string>({"8192", "65536"}),
          "message sizes in bytes (F32)");

namespace shardserve {
namespace {

struct Latency {
  double median_us = 0;
  double p99_us = 0;
};

std::vector<int64_t> Sizes() {
  std::vector<int64_t> sizes;
  for (const std::string& s : absl::GetFlag(FLAGS_sizes)) sizes.push_back(std::atoll(s.c_str()));
  return sizes;
}

absl::Status TimeAllReduces(Communicator& comm, int fd) {
  const int iters = absl::GetFlag(FLAGS_iters);
  for (int64_t bytes : Sizes()) {
    std::vector<float> data(bytes / sizeof(float), 1.0f);
    const TensorView view =
        TensorView::Cpu(data.data(), DType::kF32, {static_cast<int64_t>(data.size())});
    for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
      std::fill(data.begin(), data.end(), 1.0f);
      if (absl::Status s = comm.AllReduceSum(view); !s.ok()) return s;
    }
    std::vector<double> us(iters);
    for (int i = 0; i < iters; ++i) {
      std::fill(data.begin(), data.end(), 1.0f);  // keep the values finite
      const int64_t start = absl::GetCurrentTimeNanos();
      if (absl::Status s = comm.AllReduceSum(view); !s.ok()) return s;
      us[i] = (absl::GetCurrentTimeNanos() - start) / 1e3;
    }
    std::sort(us.begin(), us.end());
    Latency latency{us[iters / 2], us[std::min<int>(iters - 1, iters * 99 / 100)]};
    if (comm.rank() == 0 && write(fd, &latency, sizeof(latency)) != sizeof(latency)) {
      return absl::InternalError("cannot report to the parent");
    }
  }
  return comm.Barrier();
}

absl::StatusOr<std::unique_ptr<Communicator>> Connect(const std::string& backend, int rank,
                                                      int world_size, const std::string& dir) {
  if (backend == "gloo") {
    gloo::rendezvous::FileStore store(dir);
    GlooOptions options;
    options.timeout = absl::Seconds(30);
    auto comm = GlooCommunicator::Create(store, rank, world_size, options);
    if (!comm.ok()) return comm.status();
    return std::unique_ptr<Communicator>(std::move(*comm));
  }
  auto comm =
      ShmCommunicator::Create(absl::StrCat("bench_", getppid()), rank, world_size, ShmOptions{});
  if (!comm.ok()) return comm.status();
  return std::unique_ptr<Communicator>(std::move(*comm));
}

// Forks the ranks, returns rank 0's latencies per size (empty on failure).
std::vector<Latency> RunBackend(const std::string& backend, int world_size) {
  char dir[] = "/tmp/comm_bench_XXXXXX";
  if (mkdtemp(dir) == nullptr) return {};
  int fds[2];
  if (pipe(fds) != 0) return {};
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world_size; ++rank) {
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      absl::StatusOr<std::unique_ptr<Communicator>> comm = Connect(backend, rank, world_size, dir);
      absl::Status s = comm.ok() ? TimeAllReduces(**comm, fds[1]) : comm.status();
      if (!s.ok()) fprintf(stderr, "%s rank %d: %s\n", backend.c_str(), rank, s.ToString().c_str());
      _exit(s.ok() ? 0 : 1);
    }
    pids.push_back(pid);
  }
  close(fds[1]);
  std::vector<Latency> results;
  Latency latency;
  while (read(fds[0], &latency, sizeof(latency)) == sizeof(latency)) results.push_back(latency);
  close(fds[0]);
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  std::string cleanup = absl::StrCat("rm -rf ", dir);
  if (system(cleanup.c_str()) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return ok ? results : std::vector<Latency>();
}

int Main() {
  const int world_size = absl::GetFlag(FLAGS_ranks);
  const std::vector<int64_t> sizes = Sizes();
  // No watchdog needed: every operation of both transports fails within its timeout.
  const std::vector<Latency> gloo = RunBackend("gloo", world_size);
  const std::vector<Latency> shm = RunBackend("shm", world_size);
  if (gloo.size() != sizes.size() || shm.size() != sizes.size()) {
    fprintf(stderr, "a run failed\n");
    return 1;
  }
  printf("all-reduce latency (F32, sum), %d ranks, %u cores, %d iterations after %d warm-up\n",
         world_size, std::thread::hardware_concurrency(), absl::GetFlag(FLAGS_iters),
         absl::GetFlag(FLAGS_warmup));
  printf("%10s %14s %14s %14s %14s %12s\n", "bytes", "gloo median", "gloo p99", "shm median",
         "shm p99", "gloo/shm");
  for (size_t i = 0; i < sizes.size(); ++i) {
    printf("%10lld %11.1f us %11.1f us %11.1f us %11.1f us %11.1fx\n",
           static_cast<long long>(sizes[i]), gloo[i].median_us, gloo[i].p99_us, shm[i].median_us,
           shm[i].p99_us, gloo[i].median_us / shm[i].median_us);
  }
  return 0;
}

}  // namespace
}  // namespace shardserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return shardserve::Main();
}
