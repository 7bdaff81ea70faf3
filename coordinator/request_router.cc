#include "coordinator/request_router.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace shardserve {

RequestRouter::Route::Route(RequestRouter* router, int32_t group_id, std::string pool,
                            std::string leader_address,
                            std::shared_ptr<v1::WorkerService::StubInterface> stub)
    : router_(router),
      group_id_(group_id),
      pool_(std::move(pool)),
      leader_address_(std::move(leader_address)),
      stub_(std::move(stub)) {}

RequestRouter::Route::Route(Route&& other) noexcept
    : router_(other.router_),
      group_id_(other.group_id_),
      pool_(std::move(other.pool_)),
      leader_address_(std::move(other.leader_address_)),
      stub_(std::move(other.stub_)) {
  other.router_ = nullptr;
}

RequestRouter::Route& RequestRouter::Route::operator=(Route&& other) noexcept {
  if (this == &other) return *this;
  if (router_ != nullptr) router_->Release(group_id_);
  router_ = other.router_;
  group_id_ = other.group_id_;
  pool_ = std::move(other.pool_);
  leader_address_ = std::move(other.leader_address_);
  stub_ = std::move(other.stub_);
  other.router_ = nullptr;
  return *this;
}

RequestRouter::Route::~Route() {
  if (router_ != nullptr) router_->Release(group_id_);
}

RequestRouter::RequestRouter(PlanSource plan_source, Options options)
    : plan_source_(std::move(plan_source)), options_(options) {}

std::string RequestRouter::PoolName(v1::PoolRole role) {
  switch (role) {
    case v1::POOL_ROLE_PREFILL:
      return "prefill";
    case v1::POOL_ROLE_DECODE:
      return "decode";
    case v1::POOL_ROLE_BOTH:
      return "both";
    default:
      return "unspecified";
  }
}

std::string RequestRouter::LeaderAddress(const v1::GetPlanReply& plan,
                                         const v1::EngineGroup& group) {
  if (group.worker_ids_size() == 0) return "";
  const std::string& leader = group.worker_ids(0);
  for (const v1::WorkerInfo& worker : plan.workers()) {
    if (worker.worker_id() != leader) continue;
    if (worker.port() <= 0 || worker.host().empty()) return "";
    // IPv6 literals need brackets in a target.
    const bool ipv6 = worker.host().find(':') != std::string::npos;
    return ipv6 ? absl::StrCat("[", worker.host(), "]:", worker.port())
                : absl::StrCat(worker.host(), ":", worker.port());
  }
  return "";
}

RequestRouter::Mode RequestRouter::ModeOf(const v1::GetPlanReply& plan) {
  int num_prefill = 0;
  int num_decode = 0;
  for (const v1::EngineGroup& group : plan.plan().groups()) {
    if (group.role() == v1::POOL_ROLE_BOTH) return Mode::kColocated;
    num_prefill += group.role() == v1::POOL_ROLE_PREFILL;
    num_decode += group.role() == v1::POOL_ROLE_DECODE;
  }
  if (num_prefill > 0 && num_decode > 0) return Mode::kDisaggregated;
  if (num_decode > 0) return Mode::kDecodeOnly;
  if (num_prefill > 0) return Mode::kPrefillOnly;
  return Mode::kNoGroups;
}

std::vector<RequestRouter::Candidate> RequestRouter::PoolGroups(const v1::GetPlanReply& plan,
                                                                v1::PoolRole role) {
  std::vector<Candidate> out;
  for (const v1::EngineGroup& group : plan.plan().groups()) {
    if (group.role() != role) continue;
    Candidate c;
    c.group_id = group.id();
    c.role = group.role();
    c.leader_address = LeaderAddress(plan, group);
    c.error = group.error();
    c.ready = group.ready() && group.error().empty();
    if (c.ready && c.leader_address.empty()) {
      c.ready = false;
      c.error = absl::StrCat("the leader ", group.worker_ids_size() > 0 ? group.worker_ids(0) : "",
                             " registered no WorkerService port");
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<RequestRouter::Candidate> RequestRouter::Candidates(const v1::GetPlanReply& plan) {
  switch (ModeOf(plan)) {
    case Mode::kColocated:
      return PoolGroups(plan, v1::POOL_ROLE_BOTH);
    case Mode::kDecodeOnly:
      return PoolGroups(plan, v1::POOL_ROLE_DECODE);
    default:
      return {};
  }
}

bool RequestRouter::CanServe(const v1::GetPlanReply& plan) {
  auto any_ready = [](const std::vector<Candidate>& groups) {
    for (const Candidate& c : groups) {
      if (c.ready) return true;
    }
    return false;
  };
  if (ModeOf(plan) == Mode::kDisaggregated) {
    return any_ready(PoolGroups(plan, v1::POOL_ROLE_PREFILL)) &&
           any_ready(PoolGroups(plan, v1::POOL_ROLE_DECODE));
  }
  return any_ready(Candidates(plan));
}

bool RequestRouter::HasReadyGroup() const { return CanServe(plan_source_()); }

int RequestRouter::Inflight(int32_t group_id) const {
  absl::MutexLock lock(&mu_);
  auto it = inflight_.find(group_id);
  return it == inflight_.end() ? 0 : it->second;
}

std::shared_ptr<v1::WorkerService::StubInterface> RequestRouter::StubFor(
    const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<v1::WorkerService::StubInterface>& stub = stubs_[address];
  if (stub == nullptr) {
    stub = v1::WorkerService::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  return stub;
}

absl::StatusOr<RequestRouter::Route> RequestRouter::Pick() { return Pick(plan_source_()); }

absl::StatusOr<RequestRouter::Route> RequestRouter::Pick(const v1::GetPlanReply& plan) {
  switch (ModeOf(plan)) {
    case Mode::kDisaggregated:
      return absl::FailedPreconditionError(
          "the plan disaggregates prefill and decode: RequestDispatcher routes its requests");
    case Mode::kPrefillOnly:
      return absl::UnavailableError(absl::StrCat(
          "the plan has ", plan.plan().groups_size(),
          " prefill groups and no decode or both group: nothing can generate tokens (a prefill "
          "group only computes prompts for a decode group)"));
    default:
      break;
  }
  const std::vector<Candidate> candidates = Candidates(plan);
  std::vector<const Candidate*> ready;
  std::vector<std::string> reasons;
  for (const Candidate& c : candidates) {
    if (c.ready) {
      ready.push_back(&c);
    } else {
      reasons.push_back(
          absl::StrCat("group ", c.group_id, ": ", c.error.empty() ? "not ready yet" : c.error));
    }
  }
  if (ready.empty()) {
    std::string why;
    if (!plan.has_plan()) {
      why = plan.problems().empty()
                ? "no placement plan yet"
                : absl::StrCat("no placement plan yet: ", absl::StrJoin(plan.problems(), "; "));
    } else {
      why = absl::StrJoin(reasons, "; ");
    }
    return absl::UnavailableError(absl::StrCat("no engine group is ready; 0 of ", candidates.size(),
                                               " groups ready (", why, ")"));
  }

  const Candidate* best = nullptr;
  {
    absl::MutexLock lock(&mu_);
    const size_t start = next_start_++ % ready.size();
    int best_load = options_.max_inflight_per_group;
    for (size_t i = 0; i < ready.size(); ++i) {
      const Candidate* c = ready[(start + i) % ready.size()];
      const auto it = inflight_.find(c->group_id);
      const int load = it == inflight_.end() ? 0 : it->second;
      if (load < best_load) {
        best = c;
        best_load = load;
      }
    }
    if (best == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("every ready engine group (", ready.size(), ") has max_inflight_per_group=",
                       options_.max_inflight_per_group, " requests in flight; retry later"));
    }
    ++inflight_[best->group_id];
  }
  return Route(this, best->group_id, PoolName(best->role), best->leader_address,
               StubFor(best->leader_address));
}

absl::StatusOr<RequestRouter::Route> RequestRouter::Hold(const Candidate& group) {
  if (!group.ready) {
    return absl::UnavailableError(
        absl::StrCat("engine group ", group.group_id, " is not ready",
                     group.error.empty() ? "" : absl::StrCat(": ", group.error)));
  }
  {
    absl::MutexLock lock(&mu_);
    const auto it = inflight_.find(group.group_id);
    const int load = it == inflight_.end() ? 0 : it->second;
    if (load >= options_.max_inflight_per_group) {
      return absl::ResourceExhaustedError(
          absl::StrCat("engine group ", group.group_id, " (", PoolName(group.role),
                       ") has max_inflight_per_group=", options_.max_inflight_per_group,
                       " requests in flight; retry later"));
    }
    ++inflight_[group.group_id];
  }
  return Route(this, group.group_id, PoolName(group.role), group.leader_address,
               StubFor(group.leader_address));
}

void RequestRouter::Release(int32_t group_id) {
  absl::MutexLock lock(&mu_);
  auto it = inflight_.find(group_id);
  if (it == inflight_.end()) return;
  if (--it->second <= 0) inflight_.erase(it);
}

}  // namespace shardserve
