// shardserve-worker: one rank of a cluster (see worker/worker_process.h).
//
//   shardserve-worker --coordinator=127.0.0.1:7000 --pool=both --device=cpu --threads=2
//
// Exits 0 after SIGINT or SIGTERM, 2 for a bad flag, 1 when setup fails (the reason is printed and
// reported to the coordinator) or the coordinator declares the worker dead.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics_server.h"
#include "common/thread_pool.h"
#include "glog/logging.h"
#include "prometheus/registry.h"
#include "worker/kv_cache.h"
#include "worker/worker_process.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7000", "HOST:PORT of the coordinator");
ABSL_FLAG(std::string, pool, "both", "pool this worker serves: prefill, decode or both");
ABSL_FLAG(std::string, device, "cpu", "cpu (cuda:N is refused until the CUDA backend exists)");
ABSL_FLAG(int32_t, threads, 1,
          "CPU threads for compute; 0 uses every CPU available to the process");
ABSL_FLAG(std::string, model, "", "model path or name; empty loads the coordinator's model");
ABSL_FLAG(std::string, host, "",
          "address peers reach this worker at; empty uses the host name. Ranks reporting the "
          "same host share memory for their device group");
ABSL_FLAG(absl::Duration, group_timeout, absl::Seconds(30),
          "bound on forming the group's communicators and on each collective");
ABSL_FLAG(absl::Duration, kv_transfer_timeout, absl::Seconds(60),
          "decode groups: longest a prefill group may take to compute a prompt and deliver its "
          "KV before the request fails with UNAVAILABLE");
ABSL_FLAG(int32_t, service_port, 0,
          "port of this worker's WorkerService (generation, answered by group leaders); 0 picks "
          "a free one, registered with the coordinator");
ABSL_FLAG(int64_t, kv_cache_bytes, 0,
          "K and V bytes of the whole model replica, split over the group's ranks; 0 sizes the "
          "cache for the model's whole context window");
ABSL_FLAG(std::string, kv_cache_dtype, "f16",
          "KV cache element type: f16 (llama.cpp's default: half the memory and bandwidth per "
          "token) or f32 (exact); every worker of a cluster must use the same");

ABSL_FLAG(int32_t, metrics_port, 0,
          "port of this worker's Prometheus /metrics endpoint; 0 serves none");
ABSL_FLAG(int32_t, max_num_seqs, 64, "leader: requests in the running batch at most");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512,
          "leader: tokens per engine step (decode tokens plus prefill chunks)");
ABSL_FLAG(int32_t, max_waiting, 256,
          "leader: requests waiting at most; more are refused with RESOURCE_EXHAUSTED");

namespace {

bool ParsePool(const std::string& pool, shardserve::v1::PoolRole* role) {
  if (pool == "prefill")
    *role = shardserve::v1::POOL_ROLE_PREFILL;
  else if (pool == "decode")
    *role = shardserve::v1::POOL_ROLE_DECODE;
  else if (pool == "both")
    *role = shardserve::v1::POOL_ROLE_BOTH;
  else
    return false;
  return true;
}

// Set by the handler of SIGINT/SIGTERM when one lands on a thread that does not block them:
// libraries may start threads before main (OpenBLAS starts its pool when it is loaded), and
// those threads keep the default mask.
volatile sig_atomic_t stop_signal = 0;

void OnStopSignal(int signal_number) { stop_signal = signal_number; }

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "127.0.0.1";
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "shardserve-worker --coordinator=HOST:PORT --pool=prefill|decode|both --device=cpu "
      "[--threads=N] [--model=PATH_OR_NAME] [--host=ADDRESS] [--service_port=N] "
      "[--kv_cache_bytes=N] [--kv_cache_dtype=f16|f32] [--metrics_port=N]");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  shardserve::WorkerOptions options;
  options.coordinator = absl::GetFlag(FLAGS_coordinator);
  if (!ParsePool(absl::GetFlag(FLAGS_pool), &options.role)) {
    std::fprintf(stderr, "shardserve-worker: --pool must be prefill, decode or both\n");
    return 2;
  }
  options.device = absl::GetFlag(FLAGS_device);
  if (options.device != "cpu") {
    // The decoder's kernels and the KV cache are CPU only so far (kernels/cuda/ holds the first
    // CUDA kernels, built with --config=cuda but not yet a backend): refuse rather than
    // silently computing on the CPU of a worker that was asked for a GPU.
    std::fprintf(stderr,
                 "shardserve-worker: --device=%s is not supported yet: the engine runs on the CPU "
                 "only (use --device=cpu)\n",
                 options.device.c_str());
    return 2;
  }
  options.num_threads = absl::GetFlag(FLAGS_threads);
  if (const absl::Status valid = shardserve::ThreadPool::ValidateNumThreads(options.num_threads);
      !valid.ok()) {
    std::fprintf(stderr, "shardserve-worker: --threads %s\n", std::string(valid.message()).c_str());
    return 2;
  }
  options.model = absl::GetFlag(FLAGS_model);
  options.host = absl::GetFlag(FLAGS_host).empty() ? HostName() : absl::GetFlag(FLAGS_host);
  options.group_timeout = absl::GetFlag(FLAGS_group_timeout);
  options.kv_transfer_timeout = absl::GetFlag(FLAGS_kv_transfer_timeout);
  options.service_port = absl::GetFlag(FLAGS_service_port);
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  if (absl::StatusOr<shardserve::DType> dtype =
          shardserve::ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
      dtype.ok()) {
    options.kv_cache_dtype = *dtype;
  } else {
    std::fprintf(stderr, "shardserve-worker: %s\n", std::string(dtype.status().message()).c_str());
    return 2;
  }
  options.serving.scheduler.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  options.serving.scheduler.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  options.serving.scheduler.max_waiting = absl::GetFlag(FLAGS_max_waiting);

  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<shardserve::MetricsServer> metrics_server;
  if (const int port = absl::GetFlag(FLAGS_metrics_port); port > 0) {
    absl::StatusOr<std::unique_ptr<shardserve::MetricsServer>> started =
        shardserve::MetricsServer::Start("0.0.0.0", port, registry);
    if (!started.ok()) {
      std::fprintf(stderr, "shardserve-worker: %s\n",
                   std::string(started.status().message()).c_str());
      return 2;
    }
    metrics_server = std::move(*started);
    options.metrics_registry = registry.get();
  }

  // Block the stop signals before gRPC starts threads, so only the watcher below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  absl::Notification stop;
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    const timespec poll = {0, 100 * 1000 * 1000};
    while (!done.load()) {
      int signal_number = sigtimedwait(&stop_signals, nullptr, &poll);
      if (signal_number <= 0) signal_number = stop_signal;
      if (signal_number > 0) {
        LOG(INFO) << "signal " << signal_number << ": shutting down";
        stop.Notify();
        return;
      }
    }
  });
  absl::Status status;
  {
    shardserve::WorkerProcess worker(options);
    status = worker.Run(&stop);
  }
  done.store(true);
  watcher.join();
  if (!status.ok()) {
    std::fprintf(stderr, "shardserve-worker: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
