#include "coordinator/test_plan.h"

#include "absl/strings/str_cat.h"

namespace shardserve {

TestPlan::TestPlan() { reply_.mutable_plan()->set_epoch(1); }

int32_t TestPlan::AddGroup(v1::PoolRole role, bool ready, int port) {
  absl::MutexLock lock(&mu_);
  const int32_t id = reply_.plan().groups_size();
  const std::string leader = absl::StrCat("leader-", id);
  v1::EngineGroup* group = reply_.mutable_plan()->add_groups();
  group->set_id(id);
  group->set_role(role);
  group->set_ready(ready);
  group->add_worker_ids(leader);
  group->mutable_layout()->set_tp_size(1);
  group->mutable_layout()->set_pp_size(1);
  group->mutable_layout()->set_ep_size(1);
  v1::WorkerInfo* worker = reply_.add_workers();
  worker->set_worker_id(leader);
  worker->set_host("127.0.0.1");
  worker->set_port(port);
  worker->set_role(role);
  reply_.add_worker_status()->set_alive(true);
  return id;
}

void TestPlan::SetReady(int32_t group_id, bool ready) {
  absl::MutexLock lock(&mu_);
  reply_.mutable_plan()->mutable_groups(group_id)->set_ready(ready);
}

void TestPlan::SetEpoch(int64_t epoch) {
  absl::MutexLock lock(&mu_);
  reply_.mutable_plan()->set_epoch(epoch);
}

v1::GetPlanReply TestPlan::Get() const {
  absl::MutexLock lock(&mu_);
  return reply_;
}

RequestRouter::PlanSource TestPlan::Source() {
  return [this] { return Get(); };
}

}  // namespace shardserve
