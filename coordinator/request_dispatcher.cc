#include "coordinator/request_dispatcher.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

const RequestRouter::Candidate* Find(const std::vector<RequestRouter::Candidate>& groups,
                                     int32_t group_id) {
  for (const RequestRouter::Candidate& c : groups) {
    if (c.group_id == group_id) return &c;
  }
  return nullptr;
}

// UNAVAILABLE when `pool` has no ready group (saying why each is not), or none but
// `avoid_group_id` (-1: none avoided).
absl::Status CheckPoolReady(const std::vector<RequestRouter::Candidate>& groups,
                            int32_t avoid_group_id, absl::string_view pool) {
  std::vector<std::string> reasons;
  bool avoided_ready = false;
  for (const RequestRouter::Candidate& c : groups) {
    if (c.ready && c.group_id != avoid_group_id) return absl::OkStatus();
    if (c.ready) {
      avoided_ready = true;
    } else {
      reasons.push_back(
          absl::StrCat("group ", c.group_id, ": ", c.error.empty() ? "not ready yet" : c.error));
    }
  }
  if (avoided_ready) {
    return absl::UnavailableError(
        absl::StrCat("no ready ", pool, " group other than group ", avoid_group_id));
  }
  return absl::UnavailableError(absl::StrCat("no ready group in the ", pool, " pool (0 of ",
                                             groups.size(),
                                             " groups ready: ", absl::StrJoin(reasons, "; "), ")"));
}

}  // namespace

RequestDispatcher::Assignment::Assignment(RequestRouter::Route route) : route_(std::move(route)) {}

RequestDispatcher::Assignment::Assignment(RequestRouter::Route decode, RequestRouter::Route prefill,
                                          KvReservations::Handle reservation,
                                          DisaggRouter::Decision decision)
    : route_(std::move(decode)),
      prefill_group_id_(prefill.group_id()),
      prefill_leader_address_(prefill.leader_address()),
      reservation_(std::move(reservation)),
      decision_(decision) {
  prefill_slot_.emplace(std::move(prefill));
}

void RequestDispatcher::Assignment::PrepareRequest(v1::GenerateOnGroupRequest* request) const {
  if (!disaggregated()) {
    request->clear_remote_prefill();
    return;
  }
  v1::RemotePrefillTarget* target = request->mutable_remote_prefill();
  target->set_leader_address(prefill_leader_address_);
  target->set_group_id(prefill_group_id_);
}

RequestDispatcher::RequestDispatcher(RequestRouter* router, DisaggRouter* disagg_router,
                                     LoadMonitor* load_monitor, Options options)
    : router_(router),
      disagg_router_(disagg_router),
      load_monitor_(load_monitor),
      options_(options) {
  CHECK_GE(options_.block_size, 1);
}

std::vector<DisaggRouter::GroupState> RequestDispatcher::GroupStates(const v1::GetPlanReply& plan,
                                                                     v1::PoolRole role,
                                                                     int32_t avoid_group_id) {
  std::vector<DisaggRouter::GroupState> states;
  for (const RequestRouter::Candidate& c : RequestRouter::PoolGroups(plan, role)) {
    DisaggRouter::GroupState& g = states.emplace_back();
    g.group_id = c.group_id;
    g.ready = c.ready;
    g.in_flight = c.group_id == avoid_group_id ? disagg_router_->options().max_inflight_per_group
                                               : router_->Inflight(c.group_id);
    const std::optional<LoadMonitor::Report> report = load_monitor_->Latest(c.group_id);
    if (report.has_value()) {
      g.load.free_kv_blocks = report->load.free_kv_blocks();
      g.load.num_kv_blocks = report->load.num_kv_blocks();
      g.load.running_requests = report->load.running_requests();
      g.load.waiting_requests = report->load.waiting_requests();
    } else {
      g.load.free_kv_blocks = kUnknownKvBlocks;
      g.load.num_kv_blocks = kUnknownKvBlocks;
    }
    if (role == v1::POOL_ROLE_DECODE) {
      g.reserved_kv_blocks =
          reservations_.Reserved(c.group_id, report.has_value() ? report->sequence : 0);
    }
  }
  return states;
}

absl::StatusOr<RequestDispatcher::Assignment> RequestDispatcher::Pick(const Request& request,
                                                                      const Avoid& avoid) {
  const v1::GetPlanReply plan = router_->Plan();
  if (RequestRouter::ModeOf(plan) != RequestRouter::Mode::kDisaggregated) {
    ASSIGN_OR_RETURN(RequestRouter::Route route, router_->Pick(plan));
    return Assignment(std::move(route));
  }
  absl::MutexLock lock(&mu_);
  return PickDisaggregated(plan, request, avoid);
}

void RequestDispatcher::ForgetIndexesOnNewEpoch(const v1::GetPlanReply& plan) {
  if (plan.plan().epoch() == plan_epoch_) return;
  if (plan_epoch_ >= 0) {
    for (const v1::EngineGroup& group : plan.plan().groups()) {
      if (group.role() == v1::POOL_ROLE_PREFILL) disagg_router_->ForgetGroup(group.id());
    }
  }
  plan_epoch_ = plan.plan().epoch();
}

absl::StatusOr<RequestDispatcher::Assignment> RequestDispatcher::PickDisaggregated(
    const v1::GetPlanReply& plan, const Request& request, const Avoid& avoid) {
  ForgetIndexesOnNewEpoch(plan);
  const std::vector<RequestRouter::Candidate> prefill_groups =
      RequestRouter::PoolGroups(plan, v1::POOL_ROLE_PREFILL);
  const std::vector<RequestRouter::Candidate> decode_groups =
      RequestRouter::PoolGroups(plan, v1::POOL_ROLE_DECODE);
  RETURN_IF_ERROR(CheckPoolReady(prefill_groups, avoid.prefill_group_id, "prefill"));
  RETURN_IF_ERROR(CheckPoolReady(decode_groups, avoid.decode_group_id, "decode"));

  const std::vector<DisaggRouter::GroupState> prefill =
      GroupStates(plan, v1::POOL_ROLE_PREFILL, avoid.prefill_group_id);
  const std::vector<DisaggRouter::GroupState> decode =
      GroupStates(plan, v1::POOL_ROLE_DECODE, avoid.decode_group_id);
  // Read after the loads, so every report used above was issued at or before the mark and a
  // report newer than the mark is one that can count this request.
  const uint64_t mark = load_monitor_->last_issued_sequence();
  ASSIGN_OR_RETURN(
      DisaggRouter::Decision decision,
      disagg_router_->Route(prefill, decode,
                            {request.prompt_token_ids, request.max_tokens, options_.block_size}));

  const RequestRouter::Candidate* prefill_group = Find(prefill_groups, decision.prefill_group_id);
  const RequestRouter::Candidate* decode_group = Find(decode_groups, decision.decode_group_id);
  CHECK(prefill_group != nullptr && decode_group != nullptr);
  // Only a colocated Pick after a plan change can take these slots since the decision; then the
  // group is full here, RESOURCE_EXHAUSTED as for any full group.
  ASSIGN_OR_RETURN(RequestRouter::Route prefill_slot, router_->Hold(*prefill_group));
  ASSIGN_OR_RETURN(RequestRouter::Route decode_slot, router_->Hold(*decode_group));
  KvReservations::Handle reservation =
      reservations_.Reserve(decision.decode_group_id, decision.decode_blocks_needed, mark);
  return Assignment(std::move(decode_slot), std::move(prefill_slot), std::move(reservation),
                    decision);
}

}  // namespace shardserve
