// A whole cluster on this machine: a shardserve-coordinator and its shardserve-worker processes,
// started as children of this process with their output in log files, watched, and stopped.
// `shardserve serve` runs one.
//
//   LocalClusterOptions options;
//   options.coordinator_binary = ".../shardserve-coordinator";
//   options.worker_binary = ".../shardserve-worker";
//   options.model = "smollm2";
//   options.coordinator_flags = {"--tp=2"};
//   options.worker_pools = {"both", "both"};  // one entry per worker
//   options.log_dir = "/tmp/logs";
//   LocalCluster cluster(options);
//   absl::Status started = cluster.Start(absl::Now() + absl::Minutes(5), [] { return false; });
//   ... serve clients at cluster.address(); call PollExits() now and then ...
//   cluster.Stop();
//
// Start waits for the coordinator's "listening on HOST:PORT" line (so port 0 works), then starts
// the workers and polls ClusterService.GetPlan until every engine group is ready. Children get
// SIGKILL when this process dies (PR_SET_PDEATHSIG), so none outlives it even when it is killed.
//
// Thread safety: use from one thread, which must live as long as the cluster (see
// common/child_processes.h).
#ifndef SHARDSERVE_TOOLS_LOCAL_CLUSTER_H_
#define SHARDSERVE_TOOLS_LOCAL_CLUSTER_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/child_processes.h"

namespace shardserve {

struct LocalClusterOptions {
  std::string coordinator_binary;
  std::string worker_binary;
  // The coordinator's --model; workers load the model the coordinator resolved.
  std::string model;
  // More coordinator flags (the layout), passed as they are.
  std::vector<std::string> coordinator_flags;
  // The coordinator's port on 127.0.0.1; 0 picks a free one.
  int port = 0;
  // One entry per worker: its --pool ("prefill", "decode" or "both").
  std::vector<std::string> worker_pools;
  int threads_per_worker = 1;
  // More worker flags, passed as they are (e.g. --kv_cache_bytes=N).
  std::vector<std::string> worker_flags;
  // When > 0: the coordinator gets --metrics_port=metrics_port and worker i
  // --metrics_port=metrics_port + 1 + i.
  int metrics_port = 0;
  // Where the children's logs go (<name>.<n>.log); must exist.
  std::string log_dir;
};

class LocalCluster {
 public:
  // A child that ended: `name` is "coordinator" or "worker-<pool>-<i>"; `code` its exit code
  // (128 + signal when killed).
  struct Exit {
    pid_t pid = 0;
    std::string name;
    bool coordinator = false;
    int code = 0;
    std::string log_path;
  };

  explicit LocalCluster(LocalClusterOptions options);
  // Stops whatever still runs.
  ~LocalCluster();

  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Starts the children and waits until every group is ready. Errors: NOT_FOUND for a binary
  // that is missing; FAILED_PRECONDITION when a child exits first (its name, exit code and the
  // last lines of its log; failed_exit_code() holds the code) or a group reports an error;
  // DEADLINE_EXCEEDED at `deadline` (with the coordinator's reasons); CANCELLED as soon as
  // `interrupted` returns true (polled every few milliseconds). Children keep running after an
  // error until Stop.
  absl::Status Start(absl::Time deadline, const std::function<bool()>& interrupted);

  // 127.0.0.1:PORT of the coordinator, once Start has seen it listen.
  const std::string& address() const { return address_; }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  // The exit code of the child whose exit failed Start; 0 otherwise.
  int failed_exit_code() const { return failed_exit_code_; }
  // Every child started: the coordinator first, then the workers.
  std::vector<pid_t> pids() const;

  // The children that ended since the last call (reaped), without waiting.
  std::vector<Exit> PollExits();

  // Ends every child: SIGTERM to the workers (so each leader stops its group), up to `grace` for
  // them, then SIGTERM to the coordinator and any straggler, up to `grace` more, then SIGKILL;
  // all reaped. Returns the children not yet returned by PollExits that ended with a non-zero
  // code (SIGKILLed ones included). Idempotent.
  std::vector<Exit> Stop(absl::Duration grace = absl::Seconds(5));

  // The last `lines` lines of a log file.
  static std::string LogTail(const std::string& path, int lines);

 private:
  struct Child {
    pid_t pid = 0;
    std::string name;
    bool coordinator = false;
    bool reported = false;  // returned by PollExits or Stop already
  };

  // The coordinator, then the workers.
  std::vector<Child*> AllChildren();
  absl::Status WaitForListening(absl::Time deadline, const std::function<bool()>& interrupted);
  absl::Status WaitForReady(absl::Time deadline, const std::function<bool()>& interrupted);
  // FAILED_PRECONDITION describing the first child that ended, if one did.
  absl::Status CheckNoneExited();
  Exit ExitOf(const Child& child, int code) const;

  const LocalClusterOptions options_;
  ChildProcesses children_;
  Child coordinator_;
  std::vector<Child> workers_;
  std::string address_;
  int failed_exit_code_ = 0;
  bool stopped_ = false;
};

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_LOCAL_CLUSTER_H_
