// The placement planner: which registered worker holds which part of the model.
//
// Given the model's config, the layout operators ask for (how many engine groups per pool and
// each pool's TP x PP x EP), and the registered workers, it forms engine groups of
// tp_size * pp_size workers and gives every worker its ShardAssignment (computed by
// MakeShardSpec, model/shard_spec.h). The result is data (a v1::PlacementPlan) that the
// coordinator hands to workers and `shardserve status` renders.
//
//   ClusterLayout layout;
//   layout.decode.num_groups = 1;
//   layout.decode.layout.tp_size = 2;
//   layout.decode.layout.pp_size = 2;
//   ASSIGN_OR_RETURN(PlacementPlanner planner, PlacementPlanner::Create(config, layout));
//   ASSIGN_OR_RETURN(v1::PlacementPlan plan, planner.Plan(workers, /*epoch=*/1));
//   LOG(INFO) << PlacementPlanner::Render(plan);
//
// Rules, in this order:
//  - A worker serves only the pool its WorkerInfo.role names (PREFILL, DECODE or BOTH).
//  - Groups are listed prefill first, then decode, then both; within a pool, workers fill the
//    groups in registration order (the order of `workers`), group rank by group rank, so rank 0
//    (the leader) of each group is its earliest-registered worker. Group rank is stage-major:
//    rank = pp_rank * tp_size + tp_rank.
//  - Workers beyond what the layout needs are listed as spares.
//
// Refusals name the constraint: INVALID_ARGUMENT for a layout the model cannot take (what
// ValidateLayout says, prefixed by the pool) or malformed worker records; FAILED_PRECONDITION
// for a cluster that cannot host the layout (too few workers for a pool, workers holding
// different model files, a worker on another kind of device than its pool or group).
//
// Thread safety: a PlacementPlanner is immutable after Create; Plan may be called concurrently.
#ifndef SHARDSERVE_COORDINATOR_PLACEMENT_PLANNER_H_
#define SHARDSERVE_COORDINATOR_PLACEMENT_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model_config.h"
#include "model/shard_spec.h"
#include "proto/shardserve/v1/cluster.pb.h"

namespace shardserve {

// What one pool asks for.
struct PoolLayout {
  int num_groups = 0;
  ParallelLayout layout;
  // "cpu" or "cuda" to require that device kind of the pool's workers; empty accepts either,
  // as long as each group's workers share one kind.
  std::string device_kind;
};

// What the whole cluster asks for.
struct ClusterLayout {
  PoolLayout prefill;
  PoolLayout decode;
  PoolLayout both;
};

class PlacementPlanner {
 public:
  // Checks the layout against the model once, so a bad request fails at coordinator start.
  static absl::StatusOr<PlacementPlanner> Create(const ModelConfig& config,
                                                 const ClusterLayout& layout);

  // The plan for `workers` (in registration order), stamped with `epoch`. Pure: the same
  // inputs give the same plan.
  absl::StatusOr<v1::PlacementPlan> Plan(const std::vector<v1::WorkerInfo>& workers,
                                         int64_t epoch) const;

  // Workers the layout needs in each pool, and in all.
  int WorkersNeeded(v1::PoolRole role) const;
  int TotalWorkersNeeded() const;

  // One line for the model, then per group a header line and one line per rank with its
  // worker and ranges, then the spares. For logs and `shardserve status`.
  static std::string Render(const v1::PlacementPlan& plan);

 private:
  PlacementPlanner(const ModelConfig& config, const ClusterLayout& layout);

  const PoolLayout& Pool(v1::PoolRole role) const;

  ModelConfig config_;
  ClusterLayout layout_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_PLACEMENT_PLANNER_H_
