#include "tools/serve_command.h"

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "tools/cli_flags.h"
#include "tools/generate_command.h"
#include "tools/local_cluster.h"
#include "worker/kv_cache.h"

// The layout, with shardserve-coordinator's names, defaults and meanings; passed to it as given.
ABSL_FLAG(int32_t, groups, -1,
          "serve: colocated ('both') engine groups; 1 when no pool flag is given");
ABSL_FLAG(int32_t, prefill_groups, -1, "serve: prefill engine groups");
ABSL_FLAG(int32_t, decode_groups, -1, "serve: decode engine groups");
ABSL_FLAG(int32_t, tp, 1, "serve: tensor-parallel ranks per stage, every pool");
ABSL_FLAG(int32_t, pp, 1, "serve: pipeline stages, every pool");
ABSL_FLAG(int32_t, ep, 1, "serve: expert-parallel ranks (1 or tp), every pool");
ABSL_FLAG(std::string, moe_combine, "allreduce",
          "serve: how expert-parallel MoE layers combine experts: allreduce or alltoall");
ABSL_FLAG(int32_t, prefill_tp, 0, "serve: prefill pool's tp (0: --tp)");
ABSL_FLAG(int32_t, decode_tp, 0, "serve: decode pool's tp (0: --tp)");
ABSL_FLAG(int32_t, prefill_pp, 0, "serve: prefill pool's pp (0: --pp)");
ABSL_FLAG(int32_t, decode_pp, 0, "serve: decode pool's pp (0: --pp)");
ABSL_FLAG(int32_t, prefill_ep, 0, "serve: prefill pool's ep (0: --ep)");
ABSL_FLAG(int32_t, decode_ep, 0, "serve: decode pool's ep (0: --ep)");

ABSL_FLAG(int32_t, port, 7000, "serve: the coordinator's port on 127.0.0.1; 0 picks a free one");
ABSL_FLAG(int64_t, kv_cache_bytes, 0,
          "serve: each worker's --kv_cache_bytes (K and V bytes of a whole replica); 0 sizes the "
          "cache for the model's whole context");
ABSL_FLAG(int32_t, max_num_seqs, 64, "serve: each group leader's running batch, in requests");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512,
          "serve: tokens per engine step (decode tokens plus prefill chunks); also bench-engine's");
ABSL_FLAG(int32_t, max_waiting, 256,
          "serve: requests a group leader queues; more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_inflight_per_group, 256,
          "serve: requests the coordinator routes to one group at a time (its admission bound)");
ABSL_FLAG(int32_t, metrics_port, 0,
          "serve: when > 0, the coordinator's --metrics_port; worker i gets metrics_port + 1 + i");
ABSL_FLAG(std::string, coordinator_binary, "",
          "serve: the shardserve-coordinator to run; empty finds it beside this binary");
ABSL_FLAG(std::string, worker_binary, "",
          "serve: the shardserve-worker to run; empty finds it beside this binary");
ABSL_FLAG(absl::Duration, ready_timeout, absl::Seconds(300),
          "serve: how long the cluster may take to become ready");
ABSL_FLAG(std::string, log_dir, "",
          "serve: where the children's logs go; empty makes a fresh temporary directory");

namespace shardserve {
namespace {

constexpr absl::Duration kDefaultGenerateTimeout = absl::Minutes(10);
constexpr absl::Duration kWatchPeriod = absl::Milliseconds(200);
constexpr int kLogTailLines = 20;

constexpr const char* kLayoutFlags[] = {
    "groups",    "prefill_groups", "decode_groups", "tp",        "pp",
    "ep",        "moe_combine",    "prefill_tp",    "decode_tp", "prefill_pp",
    "decode_pp", "prefill_ep",     "decode_ep"};

// The layout flags that differ from their defaults, for the coordinator (whose defaults are
// the same, so leaving the others out changes nothing).
std::vector<std::string> LayoutFlagsGiven() {
  std::vector<std::string> flags;
  for (const char* name : kLayoutFlags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag != nullptr && flag->CurrentValue() != flag->DefaultValue()) {
      flags.push_back(absl::StrCat("--", name, "=", flag->CurrentValue()));
    }
  }
  return flags;
}

int OrDefault(int value, int fallback) { return value > 0 ? value : fallback; }

// One --pool per worker the layout needs: groups x tp x pp per pool, counted as the
// coordinator's planner counts them.
std::vector<std::string> WorkerPools() {
  const int groups = absl::GetFlag(FLAGS_groups);
  const int prefill = absl::GetFlag(FLAGS_prefill_groups);
  const int decode = absl::GetFlag(FLAGS_decode_groups);
  const bool none_given = groups < 0 && prefill < 0 && decode < 0;
  const int tp = absl::GetFlag(FLAGS_tp);
  const int pp = absl::GetFlag(FLAGS_pp);
  struct Pool {
    const char* name;
    int groups;
    int group_size;
  };
  const Pool pools[] = {
      {"prefill", std::max(prefill, 0),
       OrDefault(absl::GetFlag(FLAGS_prefill_tp), tp) *
           OrDefault(absl::GetFlag(FLAGS_prefill_pp), pp)},
      {"decode", std::max(decode, 0),
       OrDefault(absl::GetFlag(FLAGS_decode_tp), tp) *
           OrDefault(absl::GetFlag(FLAGS_decode_pp), pp)},
      {"both", none_given ? 1 : std::max(groups, 0), tp * pp},
  };
  std::vector<std::string> workers;
  for (const Pool& pool : pools) {
    const int n = pool.groups * std::max(pool.group_size, 0);
    for (int i = 0; i < n; ++i) workers.push_back(pool.name);
  }
  return workers;
}

std::string SelfDirectory() {
  char path[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  const std::string self(path, n);
  const size_t slash = self.rfind('/');
  return slash == std::string::npos ? "." : self.substr(0, slash);
}

// `name` as --<flag> gives it, else beside this binary (an installed layout), else where Bazel
// puts it (bazel-bin/<package>/<name> beside bazel-bin/tools/shardserve).
absl::StatusOr<std::string> FindBinary(const std::string& flag_value, const std::string& flag,
                                       const std::string& package, const std::string& name) {
  if (!flag_value.empty()) return flag_value;
  const std::string dir = SelfDirectory();
  const std::string beside = absl::StrCat(dir, "/", name);
  const std::string bazel = absl::StrCat(dir, "/../", package, "/", name);
  for (const std::string& path : {beside, bazel}) {
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return absl::NotFoundError(absl::StrCat("cannot find ", name, " (looked for ", beside, " and ",
                                          bazel, "); build //", package, ":", name, " or pass --",
                                          flag));
}

int CpuCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

absl::StatusOr<std::string> LogDir() {
  const std::string flag = absl::GetFlag(FLAGS_log_dir);
  if (!flag.empty()) {
    if (access(flag.c_str(), W_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--log_dir ", flag, " is not a writable directory"));
    }
    return flag;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/shardserve-serve-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a log directory ", pattern));
  }
  return pattern;
}

// SIGINT and SIGTERM: blocked on this thread (and the threads it starts later) so that
// sigtimedwait takes them, and caught by a handler where they land on a thread that does not
// block them: libraries may start threads before main, and those keep the default mask.
volatile sig_atomic_t caught_signal = 0;

void OnStopSignal(int signal_number) { caught_signal = signal_number; }

sigset_t InstallStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return signals;
}

// The stop signal received so far (0: none), waiting up to `wait` for one.
int StopSignal(const sigset_t& signals, absl::Duration wait) {
  static int received = 0;
  if (received != 0) return received;
  const timespec timeout = absl::ToTimespec(wait);
  const int signal_number = sigtimedwait(&signals, nullptr, &timeout);
  if (signal_number > 0) {
    received = signal_number;
  } else if (caught_signal != 0) {
    received = caught_signal;
  }
  return received;
}

void ReportExit(const LocalCluster::Exit& exit, const std::string& when) {
  std::fprintf(stderr,
               "shardserve serve: %s (pid %d) exited with code %d %s; the end of its log %s:\n%s\n",
               exit.name.c_str(), exit.pid, exit.code, when.c_str(), exit.log_path.c_str(),
               LocalCluster::LogTail(exit.log_path, kLogTailLines).c_str());
}

void StopCluster(LocalCluster* cluster) {
  for (const LocalCluster::Exit& exit : cluster->Stop()) ReportExit(exit, "at shutdown");
  std::fprintf(stderr, "shardserve serve: stopped\n");
}

// Reports the children that ended while serving; true when the coordinator is among them.
bool CoordinatorDied(LocalCluster* cluster) {
  bool coordinator_died = false;
  for (const LocalCluster::Exit& exit : cluster->PollExits()) {
    if (exit.coordinator) {
      ReportExit(exit, "while serving");
      coordinator_died = true;
    } else {
      ReportExit(exit, absl::StrCat("while serving; its group is failed (see shardserve status "
                                    "--server=",
                                    cluster->address(), ")"));
    }
  }
  return coordinator_died;
}

// Answers the one prompt; returns the exit code.
int AnswerPrompt(LocalCluster* cluster, const v1::GenerateRequest& request,
                 const sigset_t& signals) {
  grpc::ClientContext context;
  absl::Notification done;
  int code = 1;
  std::thread generation([&] {
    code = StreamGenerate(cluster->address(), request, absl::GetFlag(FLAGS_json),
                          TimeoutOr(kDefaultGenerateTimeout), &context);
    done.Notify();
  });
  int result = -1;
  while (!done.WaitForNotificationWithTimeout(kWatchPeriod)) {
    if (const int signal_number = StopSignal(signals, absl::ZeroDuration())) {
      result = 128 + signal_number;
      break;
    }
    if (CoordinatorDied(cluster)) {
      result = 1;
      break;
    }
  }
  if (result >= 0) context.TryCancel();
  generation.join();
  StopCluster(cluster);
  return result >= 0 ? result : code;
}

int Serve() {
  const sigset_t signals = InstallStopSignals();
  const bool answer_prompt = !absl::GetFlag(FLAGS_prompt).empty();
  v1::GenerateRequest request;
  if (answer_prompt) {
    absl::StatusOr<v1::GenerateRequest> r = GenerateRequestFromFlags();
    if (!r.ok()) {
      std::fprintf(stderr, "shardserve serve: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    request = *std::move(r);
  }
  LocalClusterOptions options;
  options.model = absl::GetFlag(FLAGS_model);
  options.coordinator_flags = LayoutFlagsGiven();
  options.port = absl::GetFlag(FLAGS_port);
  options.worker_pools = WorkerPools();
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  const int num_workers = static_cast<int>(options.worker_pools.size());
  if (num_workers == 0) {
    std::fprintf(stderr, "shardserve serve: the layout has no engine group\n");
    return 2;
  }
  const absl::StatusOr<int> threads = ThreadsFromFlags();
  if (!threads.ok()) {
    std::fprintf(stderr, "shardserve serve: %s\n", std::string(threads.status().message()).c_str());
    return 2;
  }
  options.threads_per_worker = *threads > 0 ? *threads : std::max(1, CpuCount() / num_workers);
  // One dtype for every worker: a group's ranks derive their block count from it, and KV moves
  // between prefill and decode groups only when both caches hold the same element type.
  const absl::StatusOr<DType> kv_cache_dtype = KvCacheDTypeFromFlags();
  if (!kv_cache_dtype.ok()) {
    std::fprintf(stderr, "shardserve serve: %s\n",
                 std::string(kv_cache_dtype.status().message()).c_str());
    return 2;
  }
  options.worker_flags.push_back(
      absl::StrCat("--kv_cache_dtype=", KvCacheDTypeName(*kv_cache_dtype)));
  options.worker_flags.push_back(
      absl::StrCat("--max_num_seqs=", absl::GetFlag(FLAGS_max_num_seqs)));
  options.worker_flags.push_back(
      absl::StrCat("--max_num_batched_tokens=", absl::GetFlag(FLAGS_max_num_batched_tokens)));
  options.worker_flags.push_back(absl::StrCat("--max_waiting=", absl::GetFlag(FLAGS_max_waiting)));
  options.coordinator_flags.push_back(
      absl::StrCat("--max_inflight_per_group=", absl::GetFlag(FLAGS_max_inflight_per_group)));
  if (absl::GetFlag(FLAGS_kv_cache_bytes) > 0) {
    options.worker_flags.push_back(
        absl::StrCat("--kv_cache_bytes=", absl::GetFlag(FLAGS_kv_cache_bytes)));
  }
  absl::StatusOr<std::string> coordinator =
      FindBinary(absl::GetFlag(FLAGS_coordinator_binary), "coordinator_binary", "coordinator",
                 "shardserve-coordinator");
  absl::StatusOr<std::string> worker = FindBinary(absl::GetFlag(FLAGS_worker_binary),
                                                  "worker_binary", "worker", "shardserve-worker");
  absl::StatusOr<std::string> log_dir = LogDir();
  for (const absl::Status& s : {coordinator.status(), worker.status(), log_dir.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "shardserve serve: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  options.coordinator_binary = *coordinator;
  options.worker_binary = *worker;
  options.log_dir = *log_dir;

  std::fprintf(stderr,
               "shardserve serve: starting %s: a coordinator and %d worker%s (%d thread%s each), "
               "logs in %s\n",
               options.model.c_str(), num_workers, num_workers == 1 ? "" : "s",
               options.threads_per_worker, options.threads_per_worker == 1 ? "" : "s",
               options.log_dir.c_str());
  LocalCluster cluster(options);
  const absl::Status started =
      cluster.Start(absl::Now() + absl::GetFlag(FLAGS_ready_timeout),
                    [&signals] { return StopSignal(signals, absl::ZeroDuration()) != 0; });
  if (!started.ok()) {
    const int signal_number = StopSignal(signals, absl::ZeroDuration());
    if (started.code() == absl::StatusCode::kCancelled && signal_number != 0) {
      StopCluster(&cluster);
      return answer_prompt ? 128 + signal_number : 0;
    }
    std::fprintf(stderr, "shardserve serve: %s\nshardserve serve: logs in %s\n",
                 std::string(started.message()).c_str(), options.log_dir.c_str());
    StopCluster(&cluster);
    return cluster.failed_exit_code() != 0 ? cluster.failed_exit_code() : 1;
  }
  std::fprintf(answer_prompt ? stderr : stdout,
               "ready: serving %s on %s (%d worker%s); logs in %s\n", options.model.c_str(),
               cluster.address().c_str(), num_workers, num_workers == 1 ? "" : "s",
               options.log_dir.c_str());
  std::fflush(stdout);
  if (answer_prompt) return AnswerPrompt(&cluster, request, signals);

  while (true) {
    if (const int signal_number = StopSignal(signals, kWatchPeriod)) {
      std::fprintf(stderr, "shardserve serve: signal %d: stopping the cluster\n", signal_number);
      StopCluster(&cluster);
      return 0;
    }
    if (CoordinatorDied(&cluster)) {
      // An interrupt from the terminal reaches the children too: then their exit is expected.
      if (StopSignal(signals, absl::ZeroDuration()) != 0) continue;
      StopCluster(&cluster);
      return 1;
    }
  }
}

}  // namespace

int ServeCommand() { return Serve(); }

}  // namespace shardserve
