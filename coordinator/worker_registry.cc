#include "coordinator/worker_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace shardserve {

namespace {

// Refused registrations kept for GetPlan; older ones are dropped.
constexpr size_t kMaxRefusals = 16;

std::string Short(const std::string& fingerprint) { return fingerprint.substr(0, 12); }

std::string Seconds(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d), "s"); }

}  // namespace

WorkerRegistry::WorkerRegistry(PlacementPlanner planner, Options options)
    : planner_(std::move(planner)), options_(std::move(options)), start_(absl::Now()) {}

absl::StatusOr<v1::RegisterReply> WorkerRegistry::Register(const v1::WorkerInfo& info) {
  if (info.role() != v1::POOL_ROLE_PREFILL && info.role() != v1::POOL_ROLE_DECODE &&
      info.role() != v1::POOL_ROLE_BOTH) {
    return absl::InvalidArgumentError("a worker must name its pool (prefill, decode or both)");
  }
  if (info.device().empty()) return absl::InvalidArgumentError("a worker must name its device");
  absl::MutexLock lock(&mu_);
  if (info.model_fingerprint() != options_.model_fingerprint) {
    std::string message = absl::StrCat(
        "refused worker at ", info.host(), " (", info.device(),
        "): model fingerprint mismatch: ", "it holds ", info.model_path(), " (fingerprint ",
        Short(info.model_fingerprint()), "), the coordinator serves ", options_.model_path,
        " (fingerprint ", Short(options_.model_fingerprint), ")");
    LOG(WARNING) << message;
    AddRefusalLocked(message);
    return absl::FailedPreconditionError(message);
  }
  Record record;
  record.info = info;
  record.info.set_worker_id(absl::StrCat("worker-", next_id_++));
  record.last_seen = absl::Now();
  const std::string id = record.info.worker_id();
  LOG(INFO) << "registered " << id << " at " << info.host() << " pool "
            << v1::PoolRole_Name(info.role()) << " device " << info.device();
  index_[id] = workers_.size();
  workers_.push_back(std::move(record));
  if (plan_.has_value()) {
    plan_->add_spare_worker_ids(id);
  } else {
    TryPlanLocked();
  }
  v1::RegisterReply reply;
  reply.set_worker_id(id);
  reply.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(heartbeat_interval()));
  return reply;
}

absl::StatusOr<v1::HeartbeatReply> WorkerRegistry::Heartbeat(const v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(request.worker_id());
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown worker '", request.worker_id(), "'"));
  }
  Record& record = workers_[it->second];
  if (!record.alive) {
    return absl::NotFoundError(
        absl::StrCat(request.worker_id(), " was declared dead: ", record.error));
  }
  record.last_seen = absl::Now();
  if (request.resident_bytes() > 0) record.info.set_resident_bytes(request.resident_bytes());
  v1::HeartbeatReply reply;
  reply.set_plan_epoch(plan_.has_value() ? plan_->epoch() : 0);
  return reply;
}

absl::StatusOr<v1::GetAssignmentReply> WorkerRegistry::GetAssignment(const std::string& worker_id,
                                                                     absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  absl::MutexLock lock(&mu_);
  if (!index_.contains(worker_id)) {
    return absl::NotFoundError(absl::StrCat("unknown worker '", worker_id, "'"));
  }
  auto planned_or_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || plan_.has_value();
  };
  mu_.AwaitWithDeadline(absl::Condition(&planned_or_closed), deadline);
  if (closed_) return absl::UnavailableError("the coordinator is shutting down");
  if (!plan_.has_value()) {
    return absl::DeadlineExceededError(absl::StrCat("no placement plan yet: ", planner_problem_));
  }
  int rank = 0;
  const v1::EngineGroup* group = FindGroupLocked(worker_id, &rank);
  if (group == nullptr) {
    // Spares idle until a new plan uses them; make the poll last its full wait so they do not spin.
    mu_.AwaitWithDeadline(absl::Condition(&closed_), deadline);
    return absl::DeadlineExceededError(
        absl::StrCat(worker_id, " is a spare in plan epoch ", plan_->epoch()));
  }
  v1::GetAssignmentReply reply;
  *reply.mutable_assignment() = group->shards(rank);
  *reply.mutable_group() = GroupStateLocked(*group);
  for (const std::string& peer : group->worker_ids()) {
    *reply.add_peers() = workers_[index_.at(peer)].info;
  }
  reply.set_plan_epoch(plan_->epoch());
  return reply;
}

absl::StatusOr<v1::ReportReadyReply> WorkerRegistry::ReportReady(
    const v1::ReportReadyRequest& request) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(request.worker_id());
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown worker '", request.worker_id(), "'"));
  }
  Record& record = workers_[it->second];
  if (!record.alive) {
    return absl::NotFoundError(
        absl::StrCat(request.worker_id(), " was declared dead: ", record.error));
  }
  if (!plan_.has_value() || request.plan_epoch() != plan_->epoch()) {
    return absl::FailedPreconditionError(
        absl::StrCat("report for plan epoch ", request.plan_epoch(), ", the current epoch is ",
                     plan_.has_value() ? plan_->epoch() : 0));
  }
  int rank = 0;
  const v1::EngineGroup* group = FindGroupLocked(request.worker_id(), &rank);
  if (group == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(request.worker_id(), " has no place in plan epoch ", plan_->epoch()));
  }
  record.ready = request.error().empty();
  record.error = request.error();
  if (request.resident_bytes() > 0) record.info.set_resident_bytes(request.resident_bytes());
  if (record.ready) {
    LOG(INFO) << request.worker_id() << " (group " << group->id() << " rank " << rank
              << ") is ready, " << request.resident_bytes() << " bytes of weights";
  } else {
    LOG(WARNING) << request.worker_id() << " (group " << group->id() << " rank " << rank
                 << ") failed: " << request.error();
  }
  v1::EngineGroup state = GroupStateLocked(*group);
  if (state.ready()) LOG(INFO) << "group " << group->id() << " is ready";
  v1::ReportReadyReply reply;
  reply.set_group_ready(state.ready());
  return reply;
}

v1::GetPlanReply WorkerRegistry::GetPlan() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  v1::GetPlanReply reply;
  reply.set_model_path(options_.model_path);
  reply.set_model_fingerprint(options_.model_fingerprint);
  if (plan_.has_value()) {
    v1::PlacementPlan* plan = reply.mutable_plan();
    *plan = *plan_;
    for (v1::EngineGroup& group : *plan->mutable_groups()) {
      group = GroupStateLocked(group);
      if (!group.error().empty()) {
        reply.add_problems(absl::StrCat("group ", group.id(), " failed: ", group.error()));
      }
    }
  } else {
    const bool waited = now - start_ >= options_.wait_for_workers;
    reply.add_problems(
        absl::StrCat(waited ? absl::StrCat("no plan after waiting ",
                                           Seconds(options_.wait_for_workers), " for workers: ")
                            : "waiting for workers: ",
                     planner_problem_));
  }
  for (const std::string& refusal : refusals_) reply.add_problems(refusal);
  for (const Record& record : workers_) {
    *reply.add_workers() = record.info;
    v1::WorkerStatus* status = reply.add_worker_status();
    status->set_worker_id(record.info.worker_id());
    status->set_alive(record.alive);
    status->set_ready(record.ready && record.alive);
    status->set_error(record.error);
    status->set_ms_since_heartbeat(absl::ToInt64Milliseconds(now - record.last_seen));
  }
  return reply;
}

void WorkerRegistry::Sweep() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (Record& record : workers_) {
    if (!record.alive || now - record.last_seen <= options_.heartbeat_timeout) continue;
    record.alive = false;
    record.ready = false;
    record.error = absl::StrCat("missed heartbeats for ", Seconds(now - record.last_seen),
                                " (timeout ", Seconds(options_.heartbeat_timeout), ")");
    int rank = 0;
    const v1::EngineGroup* group =
        plan_.has_value() ? FindGroupLocked(record.info.worker_id(), &rank) : nullptr;
    LOG(WARNING) << record.info.worker_id() << " at " << record.info.host()
                 << " is dead: " << record.error
                 << (group != nullptr ? absl::StrCat("; group ", group->id(), " has failed")
                                      : std::string());
  }
  if (!plan_.has_value()) {
    TryPlanLocked();
    if (!plan_.has_value() && !refusal_logged_ && now - start_ >= options_.wait_for_workers) {
      refusal_logged_ = true;
      LOG(WARNING) << "no plan after waiting " << Seconds(options_.wait_for_workers)
                   << " for workers: " << planner_problem_;
    }
  }
}

void WorkerRegistry::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

void WorkerRegistry::TryPlanLocked() {
  if (plan_.has_value()) return;
  std::vector<v1::WorkerInfo> live;
  for (const Record& record : workers_) {
    if (record.alive) live.push_back(record.info);
  }
  absl::StatusOr<v1::PlacementPlan> plan = planner_.Plan(live, /*epoch=*/1);
  if (!plan.ok()) {
    planner_problem_ = std::string(plan.status().message());
    return;
  }
  planner_problem_.clear();
  plan_ = *std::move(plan);
  LOG(INFO) << "placement plan computed:\n" << PlacementPlanner::Render(*plan_);
}

const v1::EngineGroup* WorkerRegistry::FindGroupLocked(const std::string& worker_id,
                                                       int* rank) const {
  for (const v1::EngineGroup& group : plan_->groups()) {
    for (int r = 0; r < group.worker_ids_size(); ++r) {
      if (group.worker_ids(r) == worker_id) {
        *rank = r;
        return &group;
      }
    }
  }
  return nullptr;
}

v1::EngineGroup WorkerRegistry::GroupStateLocked(const v1::EngineGroup& group) const {
  v1::EngineGroup state = group;
  bool ready = true;
  std::string error;
  for (int r = 0; r < group.worker_ids_size(); ++r) {
    const Record& record = workers_[index_.at(group.worker_ids(r))];
    ready = ready && record.alive && record.ready;
    if (!record.error.empty() && error.empty()) {
      error = absl::StrCat(record.info.worker_id(), " (rank ", r, ") ",
                           record.alive ? "reported: " : "", record.error);
    }
  }
  state.set_ready(ready && error.empty());
  state.set_error(error);
  return state;
}

void WorkerRegistry::AddRefusalLocked(std::string message) {
  refusals_.push_back(std::move(message));
  if (refusals_.size() > kMaxRefusals) refusals_.erase(refusals_.begin());
}

}  // namespace shardserve
