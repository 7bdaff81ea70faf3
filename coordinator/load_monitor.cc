#include "coordinator/load_monitor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace shardserve {

LoadMonitor::LoadMonitor(RequestRouter* router, Options options)
    : router_(router), options_(options), poller_([this] { Poll(); }) {
  CHECK_GT(options_.poll_interval, absl::ZeroDuration());
  CHECK_GT(options_.call_timeout, absl::ZeroDuration());
}

LoadMonitor::~LoadMonitor() {
  stop_.Notify();
  poller_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [group_id, call] : in_flight_) call->context.TryCancel();
  auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_.empty(); };
  mu_.Await(absl::Condition(&all_done));
  finished_.clear();
}

std::optional<LoadMonitor::Report> LoadMonitor::Latest(int32_t group_id) const {
  absl::MutexLock lock(&mu_);
  auto it = reports_.find(group_id);
  if (it == reports_.end()) return std::nullopt;
  return it->second;
}

std::string LoadMonitor::LastError(int32_t group_id) const {
  absl::MutexLock lock(&mu_);
  auto it = errors_.find(group_id);
  return it == errors_.end() ? "" : it->second;
}

uint64_t LoadMonitor::last_issued_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_issued_;
}

void LoadMonitor::Poll() {
  do {
    PollOnce();
  } while (!stop_.WaitForNotificationWithTimeout(options_.poll_interval));
}

void LoadMonitor::PollOnce() {
  const v1::GetPlanReply plan = router_->Plan();
  absl::flat_hash_map<int32_t, std::string> targets;  // group id -> leader address
  for (const v1::EngineGroup& group : plan.plan().groups()) {
    if (!group.ready() || !group.error().empty()) continue;
    std::string address = RequestRouter::LeaderAddress(plan, group);
    if (!address.empty()) targets[group.id()] = std::move(address);
  }

  std::vector<std::unique_ptr<Call>> reaped;  // freed outside the lock, after this block
  std::vector<Call*> to_start;
  {
    absl::MutexLock lock(&mu_);
    reaped.swap(finished_);
    auto gone = [&targets](int32_t id, const std::string& address) {
      auto it = targets.find(id);
      return it == targets.end() || it->second != address;
    };
    for (auto it = reports_.begin(); it != reports_.end();) {
      if (gone(it->first, it->second.leader_address)) {
        reports_.erase(it++);
      } else {
        ++it;
      }
    }
    for (auto it = errors_.begin(); it != errors_.end();) {
      if (!targets.contains(it->first)) {
        errors_.erase(it++);
      } else {
        ++it;
      }
    }
    polled_ = targets;
    for (const auto& [group_id, address] : targets) {
      if (in_flight_.contains(group_id)) continue;  // still out; its deadline bounds it
      auto call = std::make_unique<Call>();
      call->group_id = group_id;
      call->leader_address = address;
      call->sequence = ++last_issued_;
      call->stub = router_->StubFor(address);
      call->context.set_deadline(absl::ToChronoTime(absl::Now() + options_.call_timeout));
      to_start.push_back(call.get());
      in_flight_[group_id] = std::move(call);
    }
  }
  // Started outside the lock: a callback may run before GetLoad returns, and it takes the lock.
  for (Call* call : to_start) {
    call->stub->async()->GetLoad(&call->context, &call->request, &call->reply,
                                 [this, call](grpc::Status status) { OnDone(call, status); });
  }
}

void LoadMonitor::OnDone(Call* call, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(call->group_id);
  CHECK(it != in_flight_.end() && it->second.get() == call);
  auto polled = polled_.find(call->group_id);
  // A group that left the plan (or changed leader) while the call was out keeps nothing.
  if (polled != polled_.end() && polled->second == call->leader_address) {
    if (status.ok()) {
      Report& report = reports_[call->group_id];
      report.load = call->reply;
      report.received = absl::Now();
      report.sequence = call->sequence;
      report.leader_address = call->leader_address;
      errors_.erase(call->group_id);
    } else {
      errors_[call->group_id] =
          absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                       ": ", status.error_message());
      VLOG(1) << "GetLoad on group " << call->group_id << " (" << call->leader_address
              << "): " << errors_[call->group_id];
    }
  }
  // Freed by the poller (or the destructor), not here: gRPC still holds the call's objects
  // until this callback returns.
  finished_.push_back(std::move(it->second));
  in_flight_.erase(it);
}

}  // namespace shardserve
