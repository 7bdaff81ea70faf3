// The coordinator's view of the cluster: which workers registered, whether they are alive, the
// placement plan computed for them, and which ranks have reported ready.
//
//   ASSIGN_OR_RETURN(PlacementPlanner planner, PlacementPlanner::Create(config, layout));
//   WorkerRegistry registry(std::move(planner), options);
//   ASSIGN_OR_RETURN(v1::RegisterReply r, registry.Register(info));   // worker-1
//   registry.Sweep();  // periodically: declares silent workers dead
//
// Lifecycle of the plan: the registry computes the plan once, the first time the live workers
// satisfy the layout (PlacementPlanner::Plan succeeds), as epoch 1, and logs it. Workers that
// register later are listed as spares. Until then GetPlan's `problems` carries the planner's
// reason (for instance "need 2 workers ... have 1"); once `wait_for_workers` has passed it is
// logged as a refusal. A worker whose model fingerprint differs from the coordinator's is refused
// at Register (FAILED_PRECONDITION naming both fingerprints) and the refusal is kept for GetPlan.
//
// Health: a worker silent for `heartbeat_timeout` is declared dead by Sweep; its heartbeats are
// then answered NOT_FOUND, and its group is reported not ready with the reason in
// EngineGroup.error. A group is ready when every one of its workers is alive and has reported
// ready without error.
//
// Thread safety: every method may be called concurrently (gRPC handler threads and the sweeper).
// GetAssignment blocks up to its `wait`; Close() releases every blocked call.
#ifndef SHARDSERVE_COORDINATOR_WORKER_REGISTRY_H_
#define SHARDSERVE_COORDINATOR_WORKER_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/placement_planner.h"
#include "proto/shardserve/v1/cluster.pb.h"

namespace shardserve {

class WorkerRegistry {
 public:
  struct Options {
    // The model the coordinator serves (resolved path) and its ModelFingerprint.
    std::string model_path;
    std::string model_fingerprint;
    // A worker silent this long is dead; workers are asked to beat every quarter of it.
    absl::Duration heartbeat_timeout = absl::Seconds(5);
    // How long to wait for enough workers before the planner's refusal is logged as such.
    absl::Duration wait_for_workers = absl::Seconds(60);
  };

  WorkerRegistry(PlacementPlanner planner, Options options);

  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Records the worker and assigns its id ("worker-N"). INVALID_ARGUMENT for a record without
  // pool role or device; FAILED_PRECONDITION for a model fingerprint mismatch.
  absl::StatusOr<v1::RegisterReply> Register(const v1::WorkerInfo& info);

  // NOT_FOUND for an unknown worker or one already declared dead.
  absl::StatusOr<v1::HeartbeatReply> Heartbeat(const v1::HeartbeatRequest& request);

  // Waits up to `wait` for the plan, then returns the worker's assignment. DEADLINE_EXCEEDED
  // when no plan exists in time or the worker is a spare; NOT_FOUND for an unknown worker;
  // UNAVAILABLE after Close().
  absl::StatusOr<v1::GetAssignmentReply> GetAssignment(const std::string& worker_id,
                                                       absl::Duration wait);

  // NOT_FOUND for an unknown or dead worker; FAILED_PRECONDITION for a stale epoch or a worker
  // the plan does not place.
  absl::StatusOr<v1::ReportReadyReply> ReportReady(const v1::ReportReadyRequest& request);

  // The plan with each group's ready flag and error, the workers and their health, problems.
  v1::GetPlanReply GetPlan();

  // Declares workers dead whose last heartbeat is older than the timeout, retries planning when
  // no plan exists yet. Call a few times per heartbeat timeout.
  void Sweep();

  // How often workers should beat.
  absl::Duration heartbeat_interval() const { return options_.heartbeat_timeout / 4; }

  // Ends blocked and future GetAssignment calls with UNAVAILABLE. Idempotent.
  void Close();

 private:
  struct Record {
    v1::WorkerInfo info;
    absl::Time last_seen;
    bool alive = true;
    bool ready = false;
    std::string error;  // reported by the worker, or why it was declared dead
  };

  // Computes the plan when none exists and the live workers satisfy the layout.
  void TryPlanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The group (and rank in it) that places `worker_id`; nullptr for spares.
  const v1::EngineGroup* FindGroupLocked(const std::string& worker_id, int* rank) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // A copy of `group` with its ready flag and error filled in from the workers' health.
  v1::EngineGroup GroupStateLocked(const v1::EngineGroup& group) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void AddRefusalLocked(std::string message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PlacementPlanner planner_;
  const Options options_;
  const absl::Time start_;

  mutable absl::Mutex mu_;
  std::vector<Record> workers_ ABSL_GUARDED_BY(mu_);                     // registration order
  absl::flat_hash_map<std::string, size_t> index_ ABSL_GUARDED_BY(mu_);  // id -> workers_
  std::optional<v1::PlacementPlan> plan_ ABSL_GUARDED_BY(mu_);
  std::string planner_problem_ ABSL_GUARDED_BY(mu_);  // why the last planning attempt failed
  bool refusal_logged_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> refusals_ ABSL_GUARDED_BY(mu_);  // most recent last, bounded
  int next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_WORKER_REGISTRY_H_
