// A placement plan for tests, built group by group and changed while a router reads it: group i
// (ids in the order added) is led by "leader-<i>" at 127.0.0.1:<port>.
//
//   TestPlan plan;
//   const int32_t prefill = plan.AddGroup(v1::POOL_ROLE_PREFILL, /*ready=*/true, leader.Start());
//   RequestRouter router(plan.Source(), {});
//   plan.SetReady(prefill, false);
//
// Thread safety: every method may be called from any thread; Source() must not outlive the plan.
#ifndef SHARDSERVE_COORDINATOR_TEST_PLAN_H_
#define SHARDSERVE_COORDINATOR_TEST_PLAN_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/request_router.h"
#include "proto/shardserve/v1/cluster.pb.h"

namespace shardserve {

class TestPlan {
 public:
  TestPlan();

  // Adds a group of one worker whose WorkerService listens on `port`; returns its id.
  int32_t AddGroup(v1::PoolRole role, bool ready, int port);
  void SetReady(int32_t group_id, bool ready);
  void SetEpoch(int64_t epoch);

  v1::GetPlanReply Get() const;
  RequestRouter::PlanSource Source();

 private:
  mutable absl::Mutex mu_;
  v1::GetPlanReply reply_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_TEST_PLAN_H_
